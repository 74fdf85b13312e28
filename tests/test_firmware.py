"""Protocol conformance of the Illuminate firmware emulator, byte for byte over a real pty."""

from __future__ import annotations

import json
import math
import time

import pytest
import serial

import hardware_profiles
from acquisition.simulator.firmware import IlluminateEmulator, SerialFaults
from hardware_profiles.schema import Led

PROFILE = hardware_profiles.load("pls43")
LEDS = PROFILE.led_array.leds


def _open(emu: IlluminateEmulator) -> serial.Serial:
    return serial.Serial(emu.port, 115200, timeout=2.0)


def _reply(link: serial.Serial, *, terminated_errors: bool = False) -> list[str]:
    """Lines of one reply up to and including ``-==-`` (or a 2.x error line)."""
    lines = []
    while True:
        raw = link.readline()
        assert raw.endswith(b"\n"), f"reply stopped after {lines!r} + {raw!r}"
        line = raw.decode("ascii").rstrip("\n")
        lines.append(line)
        if line.endswith("-==-") or (line.startswith("ERROR") and not terminated_errors):
            return lines


def _json(reply: list[str]) -> dict:
    """A JSON reply: its lines without the terminator (which may end the last line)."""
    return json.loads("\n".join(reply).removesuffix("-==-"))


def _ask(link: serial.Serial, cmd: str, **kwargs) -> list[str]:
    link.write(cmd.encode("ascii") + b"\n")
    return _reply(link, **kwargs)


@pytest.fixture
def emu():
    with IlluminateEmulator.from_profile(PROFILE) as emulator:
        yield emulator


@pytest.fixture
def link(emu):
    port = _open(emu)
    yield port
    port.close()


def test_version_about_and_output_modes(emu, link):
    assert _ask(link, "version") == ["2.1", "-==-"]
    about = _ask(link, "about")
    assert "scope-sim-array LED Array Controller" in about[1]
    assert "Illuminate r2.1" in about[2]
    assert _ask(link, "sb") == ["Current brightness value is 255.", "-==-"]
    assert _ask(link, "machine") == ["Command output set to machine-readable", "-==-"]
    assert _ask(link, "sb") == ["SB.255", "-==-"]
    assert _ask(link, "ac") == ["AC.1", "-==-"]
    assert _ask(link, "na") == ["NA.40", "-==-"]
    assert _ask(link, "human") == ["Command output set to human-readable", "-==-"]
    assert _ask(link, "ac") == ["Auto clear mode: 1", "-==-"]
    assert emu.command_log == ["version", "about", "sb", "machine", "sb", "ac", "na", "human", "ac"]


def test_led_lists_autoclear_and_clear(emu, link):
    assert _ask(link, "l.3.17") == ["-==-"]
    assert emu.lit() == {3: 255, 17: 255}
    _ask(link, "l.5")  # autoclear on: the previous pattern goes dark first
    assert emu.lit() == {5: 255}
    _ask(link, "machine")
    assert _ask(link, "ac.0") == ["AC.0", "-==-"]
    _ask(link, "led.6")  # long command name; autoclear off: accumulates
    assert emu.lit() == {5: 255, 6: 255}
    _ask(link, "l..7.")  # empty tokens are skipped, as by the firmware
    assert emu.lit() == {5: 255, 6: 255, 7: 255}
    _ask(link, "x")
    assert emu.lit() == {}
    _ask(link, "l")  # a bare `l` lights the first LED, as the firmware does
    assert emu.lit() == {0: 255}


def test_brightness_and_colour_scale_led_values(emu, link):
    _ask(link, "machine")
    assert _ask(link, "sb.100") == ["SB.100", "-==-"]
    _ask(link, "l.1")
    assert emu.lit() == {1: 100}
    # a white array has one channel: sc follows the brightest component
    assert _ask(link, "sc.10.200.30") == ["CO.200", "-==-"]
    _ask(link, "l.2")
    assert emu.lit() == {2: math.ceil(200 * 100 / 255)}
    assert _ask(link, "sb.max") == ["SB.255", "-==-"]


def test_na_patterns_follow_led_angles(emu, link):
    sin_theta = {led.id: math.sin(math.radians(led.theta_deg)) for led in LEDS}
    _ask(link, "bf")
    inside = {i for i, s in sin_theta.items() if s <= 0.4}
    assert set(emu.lit()) == inside
    assert inside == set(PROFILE.stack[0].leds)  # the profile's brightfield channel
    _ask(link, "df")
    assert set(emu.lit()) == {i for i, s in sin_theta.items() if s >= 0.4}
    _ask(link, "machine")
    assert _ask(link, "na.7") == ["NA.70", "-==-"]  # one digit means tenths, as in firmware
    _ask(link, "bf")
    assert set(emu.lit()) == {i for i, s in sin_theta.items() if s <= 0.7}
    _ask(link, "ff")
    assert set(emu.lit()) == set(sin_theta)


def test_pledpos_pprops_and_pvals_are_multiline_json(emu, link):
    reply = _ask(link, "pledpos")
    # as ledarray.cpp: "    }\n}" with no newline, so the terminator ends the last line
    assert reply[-1] == "}-==-" and len(reply) == len(LEDS) + 4  # one LED per line
    table = _json(reply)["led_position_list_cartesian"]
    assert [int(k) for k in table] == [led.id for led in LEDS]
    for led in LEDS:
        assert table[str(led.id)] == [round(led.x_mm, 2), round(led.y_mm, 2), round(led.z_mm, 2)]
    assert '        "1" : [-4.55, -2.63, 50.00],' in reply  # firmware's %.2f, two decimals

    reply = _ask(link, "pprops")
    assert reply[-1] == "}-==-"
    props = _json(reply)
    assert props["led_count"] == 43 and props["bit_depth"] == 8
    assert props["color_channels"] == ["w"] and props["color_channel_count"] == 1
    assert props["device_name"] == "scope-sim-array"

    _ask(link, "sb.42")
    _ask(link, "l.0.42")
    reply = _ask(link, "pvals")
    assert reply[-2:] == ["}", "-==-"] and '        "0" : [42], ' in reply
    values = _json(reply)["led_values"]
    assert {int(k): v for k, v in values.items() if v != [0]} == {0: [42], 42: [42]}
    assert len(values) == 43
    partial = _json(_ask(link, "pvals.40.43"))["led_values"]
    assert partial == {"40": [0], "41": [0], "42": [42]}

    # moving the array moves every z, as the firmware's setArrayDistance does
    _ask(link, "sad.60")
    shifted = _json(_ask(link, "pledpos"))["led_position_list_cartesian"]
    assert shifted["10"][2] == pytest.approx(27.23 + 10.0)


@pytest.mark.parametrize(
    ("cmd", "code", "text"),
    [
        ("foo", 16, "unknown command 'foo'"),
        ("l.3x", 8, "LED '3x' is not a number"),
        ("l.3.43", 10, "LED 43 is not on this array"),
        ("sb.300", 10, "brightness 300 exceeds 255"),
        ("ac.2", 8, "autoclear '2' is not 0 or 1"),
        ("x.1", 2, "expected no arguments"),
        ("na.0", 10, "outside (0, 1]"),
    ],
)
def test_errors_change_nothing(emu, link, cmd, code, text):
    _ask(link, "l.9")
    reply = _ask(link, cmd)
    assert len(reply) == 1 and reply[0].startswith(f"ERROR[{code}]: ")
    assert text in reply[0]
    assert emu.lit() == {9: 255}
    assert _ask(link, "version") == ["2.1", "-==-"]  # nothing stale in between


@pytest.mark.parametrize(("version", "terminated"), [("2.1", False), ("1.12", True)])
def test_error_style_depends_on_major_version(version, terminated):
    with IlluminateEmulator(LEDS, firmware_version=version) as emu:
        link = _open(emu)
        link.write(b"nope\n")
        expected = b"ERROR[16]: Invalid command: unknown command 'nope'\n"
        expected += b"-==-\n" if terminated else b""
        assert link.read(len(expected)) == expected
        assert _ask(link, "version") == [version, "-==-"]
        link.close()


def test_input_buffer_holds_64_bytes(emu, link):
    fits = "l" + ".1" * 30 + ".12"
    assert len(fits) == 64
    assert _ask(link, fits) == ["-==-"]
    assert emu.lit() == {1: 255, 12: 255}
    too_long = fits + "3"
    reply = _ask(link, too_long)
    assert reply == [
        "ERROR[17]: Not enough memory for operation: command longer than the 64-byte input buffer"
    ]
    assert emu.lit() == {1: 255, 12: 255}
    assert _ask(link, "version") == ["2.1", "-==-"]
    assert emu.command_log[-2] == fits + "..."


def test_rgb_arrays_report_three_channels():
    leds = [Led(id=i, x_mm=2.0 * i, y_mm=0.0, z_mm=40.0, color="rgb") for i in range(4)]
    with IlluminateEmulator(leds) as emu:
        link = _open(emu)
        _ask(link, "machine")
        assert _ask(link, "sc") == ["CO.85.85.85", "-==-"]  # power-on colour, as the firmware
        assert _ask(link, "sc.255.0.128") == ["CO.255.0.128", "-==-"]
        _ask(link, "l.2")
        values = json.loads("\n".join(_ask(link, "pvals")[:-1]))["led_values"]
        assert values["2"] == [255, 0, 128]
        assert emu.lit() == {2: 255}
        link.close()


def test_faults_are_seeded_and_deterministic():
    commands = [f"l.{i}.{i + 1}" for i in range(30)]
    logs = []
    for _ in range(2):
        with IlluminateEmulator(LEDS, faults=SerialFaults(drop_probability=0.2, seed=7)) as emu:
            link = _open(emu)
            link.write("".join(c + "\n" for c in commands).encode())
            seen, deadline = -1, time.monotonic() + 5
            while seen != len(emu.command_log) and time.monotonic() < deadline:
                seen = len(emu.command_log)  # wait until the log stops growing
                time.sleep(0.1)
            logs.append(list(emu.command_log))
            link.close()
    assert logs[0] == logs[1]
    assert logs[0] != commands  # bytes were lost
    assert 0 < sum(map(len, logs[0])) < sum(map(len, commands))


def test_garbled_and_delayed_replies():
    faults = SerialFaults(garble_probability=1.0, reply_delay_s=0.15, seed=1)
    with IlluminateEmulator(LEDS, faults=faults) as emu:
        link = _open(emu)
        start = time.monotonic()
        link.write(b"version\n")
        reply = link.read(len(b"2.1\n-==-\n"))
        assert time.monotonic() - start >= 0.15
        assert len(reply) == 9
        assert all(a != b for a, b in zip(reply, b"2.1\n-==-\n", strict=True))
        emu.faults = SerialFaults()
        link.reset_input_buffer()
        assert _ask(link, "ver") == ["2.1", "-==-"]
        link.close()


def test_configuration_is_validated():
    with pytest.raises(ValueError, match=r"SerialFaults.drop_probability: input should be less"):
        SerialFaults(drop_probability=1.5)
    with pytest.raises(ValueError, match="unique"):
        IlluminateEmulator([LEDS[0], LEDS[0]])
    with pytest.raises(ValueError, match="at least one LED"):
        IlluminateEmulator([])
    with pytest.raises(ValueError, match="firmware_version"):
        IlluminateEmulator(LEDS, firmware_version="v2")
    with pytest.raises(RuntimeError, match="start"):
        _ = IlluminateEmulator(LEDS).port
