"""The LED array as a Micro-Manager device, the backend rule, the z rule, simulated data marked.

The device is a Python device that behaves as the ``IlluminateLedArray`` adapter (a Shutter
with ``IlluminationPattern``/``ManualLedList``/``SerialCommand``...), loaded into
pymmcore-plus's UniMMCore and speaking to the firmware emulator over its pty.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from pymmcore_plus.experimental.unicore import SLMDevice, UniMMCore, pymm_property
from typer.testing import CliRunner

import hardware_profiles
from acquisition.led_array import LedArrayError
from acquisition.mm_led import DeviceLedArray
from acquisition.rig import SimOptions, open_rig, open_sim, resolve_connection
from acquisition.scan import plan_scan, run_scan
from acquisition.scanfile import ScanFile, simulated_note
from acquisition.simulator.firmware import IlluminateEmulator
from acquisition.simulator.mm_led_device import IlluminateLedArrayDevice
from hardware_profiles.errors import ScopeError
from scope.cli import app, main

PROFILE = hardware_profiles.load("pls43")
SENSOR_WH = (128, 80)


def _core() -> UniMMCore:
    mm = Path(tempfile.gettempdir()) / "scope-empty-mm"
    mm.mkdir(exist_ok=True)
    return UniMMCore(mm_path=str(mm))


@pytest.fixture(params=[8, 16])
def device(request):
    with IlluminateEmulator.from_profile(
        PROFILE, bit_depth=request.param, input_buffer_bytes=16384
    ) as emu:
        core = _core()
        core.loadPyDevice("LedArray", IlluminateLedArrayDevice())
        core.setProperty("LedArray", "Port", emu.port)
        core.initializeAllDevices()
        yield core, emu
        core.unloadAllDevices()


def test_device_lights_exactly_the_list_and_opens_the_shutter(device):
    core, emu = device
    leds = DeviceLedArray(core, "LedArray")
    leds.check_geometry(PROFILE)
    leds.light([5, 6, 7], 120)
    assert emu.lit() == {5: 120, 6: 120, 7: 120} and leds.lit() == {5: 120, 6: 120, 7: 120}
    assert core.getShutterOpen("LedArray")
    assert core.getProperty("LedArray", "IlluminationPattern") == "Manual LED Indicies"
    assert core.getProperty("LedArray", "ManualLedList") == "5.6.7"
    assert "l.5.6.7" in emu.command_log
    leds.clear()
    assert emu.lit() == {}


def test_device_verify_catches_a_pattern_that_did_not_take(device):
    core, emu = device
    leds = DeviceLedArray(core, "LedArray", retries=0)
    original = emu._cmd_led
    emu._commands["l"] = lambda args: original(args[:1])  # the board drops all but one LED
    with pytest.raises(LedArrayError, match=r"did not read back as set"):
        leds.light([5, 6], 90)


def test_an_older_slm_adapter_is_refused_in_one_line():
    class OldIlluminateSLM(SLMDevice):
        def __init__(self):
            super().__init__()

        @pymm_property(name="NativeBitDepth", is_read_only=True)
        def native_bit_depth(self) -> int:
            return 16

        @pymm_property(name="ManualLedList")
        def led_list(self) -> str:
            return "0.1.2"

        def get_width(self):
            return 1

        def get_height(self):
            return 1

        def get_bytes_per_pixel(self):
            return 1

        def get_number_of_components(self):
            return 1

        def set_image(self, pixels):
            pass

        def display_image(self):
            pass

        def set_exposure(self, interval_ms):
            pass

        def get_exposure(self):
            return 0.0

        def shape(self):
            return (1, 1)

        def dtype(self):
            return np.uint8

    core = _core()
    try:
        core.loadPyDevice("LedArray", OldIlluminateSLM())
        core.initializeAllDevices()
        with pytest.raises(LedArrayError) as err:
            DeviceLedArray(core, "LedArray")
    finally:
        core.unloadAllDevices()
    message = str(err.value)
    assert "\n" not in message and "SLMDevice" in message and "older IlluminateLedArray" in message


def test_a_scan_through_the_device_records_each_channels_leds_at_snap_time(tmp_path):
    rig = open_sim(PROFILE, SimOptions(sensor_wh=SENSOR_WH, led_device=True))
    with rig:
        assert isinstance(rig.leds, DeviceLedArray)
        rig.prepare_pass("unstained")
        plan = plan_scan(
            slide="s1",
            pass_="unstained",
            profile=PROFILE,
            out=tmp_path,
            frame_wh=rig.mm.frame_size,
            stack="le8",
            grid="2x1",
            z_um=rig.mm.read_stage().z_um,
        )
        run_scan(plan, rig)
        log = rig.sim.snap_log
    expected = [dict.fromkeys(ch.leds, ch.brightness) for ch in plan.profile.stack]
    assert (
        log == expected * 2
    )  # two fields, each channel exactly its LEDs while the frame was taken


def _py_config(tmp_path: Path, port: str) -> Path:
    cfg = tmp_path / "lab.cfg"
    cfg.write_text(
        "#py pyDevice,LedArray,acquisition.simulator.mm_led_device,IlluminateLedArrayDevice\n"
        f"#py Property,LedArray,Port,{port}\n"
        "#py Property,Core,Initialize,1\n"
    )
    return cfg


def test_scope_led_test_through_a_micromanager_config(tmp_path):
    with IlluminateEmulator.from_profile(PROFILE, bit_depth=16, input_buffer_bytes=16384) as emu:
        cfg = _py_config(tmp_path, emu.port)
        args = ["led", "test", "--profile", "pls43", "--stack", "le18", "--dwell-ms", "0"]
        args += ["--backend", "mmcore", "--mm-config", str(cfg), "--led-device", "LedArray"]
        result = CliRunner().invoke(app, args, env={"COLUMNS": "160"})
        assert result.exit_code == 0, result.output
        assert "Micro-Manager device 'LedArray'" in result.output
        assert "read back exactly as requested (16-bit board)" in result.output


# -- the backend rule ---------------------------------------------------------------------
def _with_connection(**conn) -> hardware_profiles.HardwareProfile:
    return PROFILE.model_copy(update={"connection": PROFILE.connection.model_copy(update=conn)})


def test_shipped_profiles_say_sim():
    for name in hardware_profiles.list_profiles():
        assert hardware_profiles.load(name).connection.backend == "sim"


def test_backend_comes_from_the_profile_and_the_option_overrides_it():
    prof = _with_connection(backend="mmcore", mm_config="lab.cfg", led_device="LedArray")
    assert resolve_connection(prof).backend == "mmcore"
    assert resolve_connection(prof, backend="sim").backend == "sim"
    assert resolve_connection(prof, backend="micromanager").led_device == "LedArray"


@pytest.mark.parametrize(
    ("stored", "given", "match"),
    [
        ({}, {}, "needs the LED array: --led-port PORT"),
        ({}, {"led_port": "/dev/ttyACM0", "led_device": "LedArray"}, "not both"),
        ({"led_device": "LedArray"}, {"led_port": "/dev/ttyACM0"}, "profile 'pls43' stores"),
        ({"led_port": "/dev/ttyACM0"}, {"led_device": "LedArray"}, "not both"),
    ],
)
def test_led_port_and_device_are_exclusive(stored, given, match):
    prof = _with_connection(**stored)
    with pytest.raises(ScopeError, match=match) as err:
        resolve_connection(prof, backend="micromanager", **given)
    assert "\n" not in str(err.value)


def test_hardware_led_options_never_yield_a_simulated_scan():
    """A real port or device given to a sim profile is a forgotten --backend, not a sim run."""
    with pytest.raises(ScopeError, match=r"backend is sim \(profile 'pls43'\)"):
        resolve_connection(PROFILE, led_port="/dev/ttyACM0")
    with pytest.raises(ScopeError, match=r"--led-device LedArray reach a real LED array"):
        resolve_connection(PROFILE, backend="sim", led_device="LedArray")
    assert resolve_connection(PROFILE).backend == "sim"


def test_mmcore_needs_a_config():
    with pytest.raises(ScopeError, match="--mm-config"):
        resolve_connection(PROFILE, backend="mmcore", led_port="/dev/ttyACM0")


def test_micromanager_through_pycromanagers_own_core(tmp_path):
    """pycromanager's Core() returns the in-process Python core its start_headless makes.

    That core is pymmcore's (compiled adapters only, none without a Micro-Manager
    installation), so the path is exercised up to the first device: one clear error.
    """
    import mmpycorex.launcher as launcher

    launcher.create_core_instance(mm_app_path=str(tmp_path), config_file=None, python_backend=True)
    try:
        with pytest.raises(ScopeError, match="defines no camera device"):
            open_rig("micromanager", PROFILE, led_port="/dev/ttyNOPE0")
        result = CliRunner().invoke(
            app, ["led", "info", "--backend", "micromanager", "--led-device", "LedArray"]
        )
        assert "no such device in the Micro-Manager configuration" in str(result.exception)
    finally:
        launcher.terminate_core_instances()


# -- the z rule and simulated data ---------------------------------------------------------
def test_positions_without_z_take_the_operators_focus(tmp_path):
    csv = tmp_path / "pos.csv"
    csv.write_text("x_um,y_um\n0,0\n300,0\n")
    mixed = tmp_path / "mixed.csv"
    mixed.write_text("x_um,y_um,z_um\n0,0,12.5\n300,0,\n")
    kw = dict(slide="s", pass_="unstained", profile=PROFILE, out=tmp_path, frame_wh=(128, 80))
    plan = plan_scan(positions_csv=csv, z_um=-37.25, **kw)
    assert plan.positions[:, 2].tolist() == [-37.25, -37.25]
    plan = plan_scan(positions_csv=mixed, z_um=-37.25, **kw)
    assert plan.positions[:, 2].tolist() == [12.5, -37.25]
    with pytest.raises(ScopeError, match="no focus drive"):
        plan_scan(positions_csv=csv, z_um=float("nan"), **kw)


def test_a_csv_scan_without_z_images_at_the_stage_z(tmp_path):
    csv = tmp_path / "pos.csv"
    csv.write_text("x_um,y_um\n0,0\n")
    args = ["scan", "--slide", "s1", "--pass", "unstained", "--profile", "pls43"]
    args += ["--out", str(tmp_path), "--positions", str(csv), "--stack", "brightfield"]
    args += ["--sim-sensor", "128x80", "--yes"]
    assert main(args) == 0
    with ScanFile(tmp_path / "s1.unstained.scan.h5") as sf:
        z = float(sf.positions["z_um"][0])
        assert z != 0.0  # the simulator's "operator" focused away from 0
        assert sf.simulated and sf.attrs["simulated"] and sf.attrs["backend"] == "sim"
    note = simulated_note(tmp_path / "s1.unstained.scan.h5")
    assert note is not None and "SIMULATED" in note
    info = CliRunner().invoke(app, ["info", str(tmp_path / "s1.unstained.scan.h5")])
    assert info.exit_code == 0 and "SIMULATED" in info.output


def test_scope_scan_with_led_device_from_a_micromanager_config(tmp_path):
    """`scope scan --backend mmcore --mm-config lab.cfg --led-device LedArray` end to end."""
    from acquisition.simulator.devices import SimSession, register_session, unregister_session
    from acquisition.simulator.microscope import SimulatedMicroscope

    firmware = IlluminateEmulator.from_profile(PROFILE, bit_depth=16, input_buffer_bytes=16384)
    firmware.start()
    session = SimSession(
        microscope=SimulatedMicroscope(PROFILE, slide="s1", seed=3),
        firmware=firmware,
        sensor_wh=SENSOR_WH,
    )
    register_session("ledcfg", session)
    try:
        cfg = tmp_path / "lab.cfg"
        lines = []
        for label, cls in (("Camera", "SimCamera"), ("XY", "SimXYStage"), ("Z", "SimZStage")):
            lines += [
                f"#py pyDevice,{label},acquisition.simulator.devices,{cls}",
                f"#py Property,{label},Session,ledcfg",
            ]
        lines += [
            "#py pyDevice,LedArray,acquisition.simulator.mm_led_device,IlluminateLedArrayDevice",
            f"#py Property,LedArray,Port,{firmware.port}",
            "#py Property,Core,Initialize,1",
            "#py Property,Core,Camera,Camera",
            "#py Property,Core,XYStage,XY",
            "#py Property,Core,Focus,Z",
        ]
        cfg.write_text("\n".join(lines) + "\n")
        args = ["scan", "--slide", "s1", "--pass", "unstained", "--profile", "pls43"]
        args += ["--out", str(tmp_path), "--grid", "1x1", "--stack", "le8", "--yes"]
        args += ["--backend", "mmcore", "--mm-config", str(cfg), "--led-device", "LedArray"]
        assert main(args) == 0
        with ScanFile(tmp_path / "s1.unstained.scan.h5") as sf:
            assert sf.complete and sf.attrs["backend"] == "mmcore" and not sf.simulated
            channels = [[int(i) for i in str(leds).split(",")] for leds in sf.channels["leds"]]
        assert session.snap_log == [dict.fromkeys(leds, 255) for leds in channels]
    finally:
        unregister_session("ledcfg")
        firmware.close()


@pytest.mark.parametrize(
    ("stored", "given", "reads_back"),
    [(True, None, True), (False, None, False), (True, False, False), (False, True, True)],
)
def test_verify_comes_from_the_profile_and_the_option_overrides_it(stored, given, reads_back):
    prof = PROFILE.model_copy(
        update={"led_array": PROFILE.led_array.model_copy(update={"verify": stored})}
    )
    with open_rig(None, prof, sim=SimOptions(sensor_wh=SENSOR_WH), verify=given) as rig:
        before = rig.sim.firmware.command_log.count("pvals")
        rig.leds.light([3, 4], 200)
        assert rig.sim.firmware.lit() == {3: 200, 4: 200}
        assert (rig.sim.firmware.command_log.count("pvals") > before) == reads_back


def test_a_dataset_made_from_simulated_scans_says_so(tmp_path):
    import json

    import h5py

    for simulated in (True, False):
        path = tmp_path / f"{simulated}.dataset.h5"
        with h5py.File(path, "w") as f:
            f.attrs["provenance"] = json.dumps({"simulated": simulated})
        assert (simulated_note(path) is not None) == simulated
