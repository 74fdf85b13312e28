"""Illuminate boards as they are: replies as the firmware prints them, 8- and 16-bit boards."""

from __future__ import annotations

import pytest
import serial
from typer.testing import CliRunner

import hardware_profiles
from acquisition.led_array import (
    LedArray,
    LedArrayError,
    classify_line,
    parse_positions,
    parse_props,
    parse_values,
    to_level,
    to_raw,
)
from acquisition.led_protocol import Garbled
from acquisition.simulator.firmware import IlluminateEmulator
from scope.cli import app

PROFILE = hardware_profiles.load("pls43")

# Recorded as ledarray.cpp prints them (sci-microscopy/illuminate): pprops ends "\n}" with no
# newline, so the terminator follows on the same line.
PPROPS_16BIT = (
    b'{\n    "device_name" : "sci.dome.r2",\n    "led_count" : 3,\n'
    b'    "color_channels" : ["r", "g", "b"],\n'
    b'    "color_channel_center_wavelengths" : {"r" : 0.625, "g" : 0.520, "b" : 0.470},\n'
    b'    "trigger_input_count" : 2,\n    "trigger_output_count" : 2,\n    "bit_depth" : 16,\n'
    b'    "serial_number" : 12,\n    "color_channel_count" : 3,\n    "part_number" : 4,\n'
    b'    "mac_address" : "04:e9:e5:0b:1c:2d",\n    "interface_version" : 2.31\n}-==-\n'
)
PVALS_RANGE_16BIT = (  # pvals.0.2 on a 3-LED board: the last row of a range keeps its comma
    b'{\n    "led_values" : {\n        "0" : [65535,65535,65535], \n'
    b'        "1" : [0,0,0], \n    }\n}\n-==-\n'
)


def _lines(reply: bytes) -> list[str]:
    """Payload lines of a recorded reply, as the driver's reader classifies them."""
    out = []
    for raw in reply.split(b"\n")[:-1]:
        kind, text = classify_line(raw)
        if text or kind == "payload":
            out.append(text)
        if kind == "end":
            break
    return out


def test_recorded_pprops_with_the_terminator_on_its_last_line():
    props = parse_props(_lines(PPROPS_16BIT))
    assert props["bit_depth"] == 16 and props["led_count"] == 3
    assert props["interface_version"] == 2.31


def test_crlf_line_endings_are_read_the_same():
    assert _lines(PPROPS_16BIT.replace(b"\n", b"\r\n")) == _lines(PPROPS_16BIT)


def test_recorded_pvals_range_with_trailing_comma_falls_back_to_rows():
    values = parse_values(_lines(PVALS_RANGE_16BIT), bit_depth=16)
    assert values == {0: 65535, 1: 0}
    assert to_level(65535, 16) == 255 and to_raw(255, 16) == 65535 and to_raw(7, 16) == 7 * 257


def test_values_are_json_whatever_the_layout():
    one_line = ['{"led_values":{"0":[0],"1":[257],"2":[65535]}}']
    assert parse_values(one_line, 16) == {0: 0, 1: 257, 2: 65535}
    # an 8-bit board's value above 255 is a garbled digit: dropped, not read as lit
    assert parse_values(['{"led_values":{"0":[0],"1":[300]}}'], 8) == {0: 0}


def test_positions_compact_and_damaged():
    compact = ['{"led_position_list_cartesian":{"0":[0.0,5.26,50.0],"1":[-4.55,-2.63,50.0]}}']
    assert parse_positions(compact) == {0: (0.0, 5.26, 50.0), 1: (-4.55, -2.63, 50.0)}
    damaged = ["{", '    "led_position_list_cartesian" : {', '        "0" : [0.00, 5.26, 50.00],']
    damaged += ['        "1" : [-4.5#, -2.63, 50.00]', "    }", "}"]
    assert parse_positions(damaged) == {0: (0.0, 5.26, 50.0)}


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        (b"-==-", "end"),
        (b"}-==-", "end"),
        (b"ERROR[16]: Invalid command.", "error"),
        (b"ERROR: Wrong number of arguments.", "error"),
        (b"SB.12", "payload"),
    ],
)
def test_line_kinds(raw, kind):
    assert classify_line(raw)[0] == kind


@pytest.mark.parametrize("raw", [b"-=-=-", b"}-=X-", b"ERRoR[16]: x", b"-==--==-"])
def test_damaged_terminators_and_error_lines_are_garbled(raw):
    with pytest.raises(Garbled):
        classify_line(raw)


def test_emulator_prints_as_the_firmware_does():
    with IlluminateEmulator.from_profile(PROFILE, bit_depth=16) as emu:
        link = serial.Serial(emu.port, 115200, timeout=0.5)
        link.write(b"pprops\n")
        reply = link.read_until(b"-==-\n")
        assert reply.endswith(b'    "interface_version" : 2.1\n}-==-\n')
        link.write(b"l.3\n")
        assert link.read_until(b"-==-\n") == b"-==-\n"
        link.write(b"pvals.2.4\n")
        reply = link.read_until(b"-==-\n")
        assert b'        "2" : [0], \n        "3" : [65535], \n    }\n}\n-==-\n' in reply
        link.write(b"pledpos.0.1\n")
        assert link.read_until(b"-==-\n").endswith(b"[0.00, 5.26, 50.00]\n    }\n}-==-\n")
        link.close()


@pytest.mark.parametrize("bit_depth", [8, 16])
@pytest.mark.parametrize("printing", ["firmware", "compact"])
def test_scope_led_test_passes_on_each_board(bit_depth, printing):
    """`scope led test` against each board kind, on the emulator's serial port."""
    with IlluminateEmulator.from_profile(PROFILE, bit_depth=bit_depth, printing=printing) as emu:
        # no --dwell-ms wait: how long each pattern stays lit is for the operator's eyes
        args = ["led", "test", "--port", emu.port, "--profile", "pls43", "--stack", "le18"]
        result = CliRunner().invoke(
            app,
            [*args, "--dwell-ms", "0"],
            env={"COLUMNS": "160"},
        )
        assert result.exit_code == 0, result.output
        assert f"read back exactly as requested ({bit_depth}-bit board)" in result.output
        assert emu.lit() == {}
        assert "pvals" in emu.command_log


@pytest.mark.parametrize("bit_depth", [8, 16])
def test_port_sim_opens_the_built_in_emulator(bit_depth):
    runner = CliRunner()
    args = ["led", "test", "--port", "sim", "--profile", "pls43", "--stack", "le8"]
    args += ["--dwell-ms", "0", "--sim-bit-depth", str(bit_depth), "--no-verify"]
    result = runner.invoke(app, args, env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "built-in emulator" in result.output
    info = runner.invoke(app, ["led", "info", "--port", "sim"], env={"COLUMNS": "160"})
    assert info.exit_code == 0, info.output
    assert "Illuminate 2.1" in info.output and "50 mm" in info.output


def test_no_verify_sends_no_read_back_while_lighting():
    with IlluminateEmulator.from_profile(PROFILE, bit_depth=16) as emu:
        with LedArray.open(emu.port, verify=False) as array:
            array.light([5, 6], 80)
        assert emu.command_log.count("pvals") == 0 and emu.lit() == {5: 80, 6: 80}


def test_unknown_bit_depth_is_refused_in_one_line():
    class OneBit(IlluminateEmulator):
        def _cmd_pprops(self, args):
            reply = super()._cmd_pprops(args)
            reply.raw = reply.raw.replace('"bit_depth" : 8', '"bit_depth" : 1')
            return reply

    with OneBit(PROFILE.led_array.leds) as emu, pytest.raises(LedArrayError) as err:
        LedArray.open(emu.port)
    assert "bit_depth 1" in str(err.value) and "\n" not in str(err.value)
