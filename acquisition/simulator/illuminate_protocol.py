"""The Illuminate LED-array firmware's serial protocol: tokens, numbers, errors, replies.

What a command line and its reply look like, apart from any device state (the firmware's
commands are in :mod:`.illuminate_firmware`, the pty device in :mod:`.firmware`): arguments
split by ``.`` with empty tokens skipped, strict decimal numbers, the firmware's error table
(``ERROR[<code>]: <text>``) and the ``-==-`` terminator.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

TERMINATOR = "-==-"
#: Bytes of one command line the firmware's input buffer holds (line ending excluded).
INPUT_BUFFER_BYTES = 64

# Codes are indices into the firmware's error table (commandrouting.cpp).
ERROR_ARGUMENT_COUNT = 2
ERROR_INVALID_ARGUMENT = 8
ERROR_ARGUMENT_RANGE = 10
ERROR_INVALID_COMMAND = 16
ERROR_MEMORY = 17
ERROR_TEXT = {
    ERROR_ARGUMENT_COUNT: "Wrong number of arguments.",
    ERROR_INVALID_ARGUMENT: "Invalid argument.",
    ERROR_ARGUMENT_RANGE: "Invalid argument range.",
    ERROR_INVALID_COMMAND: "Invalid command.",
    ERROR_MEMORY: "Not enough memory for operation.",
}

DIGITS = re.compile(r"[0-9]+")
VERSION = re.compile(r"[0-9]+(\.[0-9]+)*")
NAMED_LEVELS = {"max": 255, "min": 1, "half": 127, "quarter": 63}
POWER_ON_BRIGHTNESS = 255
WAVELENGTHS_NM = {"w": 550.0, "r": 625.0, "g": 525.0, "b": 470.0}


class CommandError(Exception):
    """A command the firmware rejects: becomes an ``ERROR[code]: ...`` reply line."""

    def __init__(self, code: int, detail: str = "") -> None:
        super().__init__(code, detail)
        self.code = code
        self.detail = detail


@dataclass
class Reply:
    """Payload lines of a reply in machine (short) and human (long) mode.

    ``raw``, when given, is the exact text the firmware prints before the terminator (its
    JSON printers end some replies without a newline, so ``-==-`` follows on the same line).
    """

    short: list[str]
    long: list[str] | None = None
    raw: str | None = None


#: How the emulator prints its JSON replies.
PRINTING_STYLES = ("firmware", "compact")


def number(token: str, *, what: str, maximum: int) -> int:
    if not DIGITS.fullmatch(token):
        raise CommandError(ERROR_INVALID_ARGUMENT, f"{what} {token!r} is not a number")
    value = int(token)
    if value > maximum:
        raise CommandError(ERROR_ARGUMENT_RANGE, f"{what} {value} exceeds {maximum}")
    return value


def split_command(text: str) -> list[str]:
    """A command line's tokens: split by ``.``, empty tokens skipped (``l..3`` is ``l.3``)."""
    return [t for t in text.split(".") if t]


def error_line(code: int, detail: str = "") -> str:
    """The firmware's error line ``ERROR[<code>]: <text>[: <detail>]``."""
    text = ERROR_TEXT[code]
    message = f"{text.rstrip('.')}: {detail}" if detail else text
    return f"ERROR[{code}]: {message}"
