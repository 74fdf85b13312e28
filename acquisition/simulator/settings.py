"""The base of every option set of the simulator: a frozen pydantic model whose errors are
one :class:`SimulatorError` line naming the key (in code ``ClassName.key``, in a
``--sim-config`` section ``section.key``).
"""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ConfigDict, ValidationError

from hardware_profiles.errors import ScopeError


class SimulatorError(ScopeError, ValueError):
    """The simulated microscope was asked for something it cannot do (bad pass, LED, size)."""


def one_line_error(model: str, err: ValidationError) -> str:
    """The first problem of a pydantic validation error as one line naming the key."""
    e = err.errors()[0]
    key = ".".join(str(part) for part in (model, *e["loc"]))
    msg = e["msg"].removeprefix("Value error, ")
    if e["type"] == "value_error":  # our own checks name the key themselves
        return msg
    if e["type"] == "extra_forbidden":
        return f"{key} is not a setting; see the knobs in docs/simulator.md."
    return f"{key}: {msg[:1].lower()}{msg[1:]}; got {e['input']!r}."


class Settings(BaseModel):
    """A frozen settings model whose errors are one :class:`SimulatorError` line.

    Every option set of the simulator is one (:class:`SimConfig`, :class:`Faults`, the serial
    link's and the devices' faults), so code and ``--sim-config`` YAML share its checks.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as err:
            raise SimulatorError(one_line_error(type(self).__name__, err)) from None

    @classmethod
    def from_section(cls, data: Any, section: str) -> Self:
        """The settings of a ``--sim-config`` section; an error names the key as
        ``section.key`` (the YAML's spelling) instead of ``ClassName.key``."""
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise SimulatorError(f"{section} must be a mapping of settings; got {data!r}.")
        try:
            return cls(**data)
        except SimulatorError as err:
            message = str(err).removeprefix(f"{cls.__name__}.")
            raise SimulatorError(
                f"{section}.{message}" if message != str(err) else message
            ) from None
