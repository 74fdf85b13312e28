"""`scope scan` end to end on the simulator: passes, resume after SIGKILL, faults, backends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from acquisition.progress import NullProgress
from acquisition.rig import SimOptions, open_sim
from acquisition.scan import ScanError, plan_scan, run_scan
from acquisition.scanfile import ScanFile, fields_dir
from scope.cli import main

SENSOR = "256x160"
SENSOR_WH = (256, 160)
DENSE = Path(__file__).with_name("data") / "dense-smear.yaml"  # many WBCs per small field


def scan_args(out: Path, pass_: str = "unstained", *extra: str) -> list[str]:
    return [
        "scan",
        "--slide",
        "s1",
        "--pass",
        pass_,
        "--profile",
        "pls43",
        "--out",
        str(out),
        "--sim-sensor",
        SENSOR,
        "--seed",
        "3",
        "--yes",
        "--sim-config",
        str(DENSE),
        *extra,
    ]


@pytest.fixture(scope="module")
def reference_scan(tmp_path_factory):
    """An uninterrupted 2x2 le8 scan: what every interrupted or faulty scan must equal."""
    out = tmp_path_factory.mktemp("ref")
    assert main(scan_args(out, "unstained", "--grid", "2x2", "--stack", "le8")) == 0
    with ScanFile(out / "s1.unstained.scan.h5") as sf:
        return out, sf.images[()], sf.positions.copy()


def test_unstained_stained_highres_sequence(reference_scan, tmp_path):
    out, _, positions = reference_scan
    with ScanFile(out / "s1.unstained.scan.h5") as sf:
        assert sf.complete and sf.images.shape == (4, 4, 160, 256, 3)
        assert list(sf.channels["kind"]) == ["brightfield", "pls", "pls", "pls"]
        assert len(sf.frames) == 16
        assert sf.attrs["pixel_size_um"] == pytest.approx(0.293)
        truth = sf.truth()
        assert truth is not None and truth["slide_to_stage"].shape == (2, 3)
        # every frame's metadata: exposure as set, stage read back at the field
        f0 = sf.frames[sf.frames["position"] == 0]
        assert np.allclose(f0["stage_x_um"], positions["x_um"][0])
    # the stained pass images the unstained pass's positions, brightfield only
    assert main(scan_args(out, "stained")) == 0
    with ScanFile(out / "s1.stained.scan.h5") as st:
        assert st.complete and len(st.channels) == 1
        assert np.allclose(st.positions["x_um"], positions["x_um"])
        st_truth = st.truth()
        wbc = [
            c
            for c in st_truth["cells"]
            if c["type"] in ("neutrophil", "lymphocyte", "monocyte", "eosinophil", "basophil")
        ]
        assert wbc, "the simulator should place white blood cells in four fields"
        a = st_truth["slide_to_stage"]
    # the highres pass relocates cells from a cells CSV (stained-pass stage µm)
    cells = tmp_path / "cells.csv"
    rows = ["cell_id,slide,x_um,y_um"]
    for c in wbc[:2]:
        sx, sy = a @ np.array([c["x_um"], c["y_um"], 1.0])
        rows.append(f"{c['id']},s1,{sx:.3f},{sy:.3f}")
    cells.write_text("\n".join(rows) + "\n")
    assert main(scan_args(out, "highres", "--cells", str(cells))) == 0
    with ScanFile(out / "s1.highres.scan.h5") as hr:
        assert hr.complete and hr.n_positions == len(rows) - 1
        assert hr.attrs["objective_magnification"] == 100
        ratio = hr.truth()["magnification_ratio"]
        assert 4.9 < ratio < 5.1


def test_same_slide_and_seed_image_the_same_sample(reference_scan, tmp_path):
    _, images, _ = reference_scan
    assert main(scan_args(tmp_path, "unstained", "--grid", "2x2", "--stack", "le8")) == 0
    with ScanFile(tmp_path / "s1.unstained.scan.h5") as sf:
        assert np.array_equal(sf.images[()], images)


def _spawn_scan(out: Path, *extra: str, grid: str = "2x2", stack: str = "le8") -> subprocess.Popen:
    args = [
        sys.executable,
        "-m",
        "scope",
        *scan_args(out, "unstained", "--grid", grid, "--stack", stack, *extra),
    ]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow  # kills a real scan process at many moments (~50 s)
def test_resume_after_sigkill_at_random_moments(tmp_path):
    """kill -9 at random moments (start-up, mid-field, mid-commit), resume until done."""
    ref = tmp_path / "ref"
    assert main(scan_args(ref, "unstained", "--grid", "3x3", "--stack", "le18")) == 0
    with ScanFile(ref / "s1.unstained.scan.h5") as sf:
        images = sf.images[()]
    rng = np.random.default_rng(7)
    out = tmp_path / "killed"
    kills = 0
    for _attempt in range(8):
        proc = _spawn_scan(out, "--resume", grid="3x3", stack="le18")
        time.sleep(float(rng.uniform(0.8, 2.4)))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.communicate()
        if (out / "s1.unstained.scan.h5").exists():
            with ScanFile(out / "s1.unstained.scan.h5") as sf:  # plain h5py opens it
                assert len(sf.frames) == len(sf.done) * 14  # one row per stored image
        if proc.returncode == 0:
            break
    assert kills >= 2, f"only {kills} kills landed before the scan finished"
    proc = _spawn_scan(out, "--resume", grid="3x3", stack="le18")
    _, err = proc.communicate()
    assert proc.returncode == 0, err
    with ScanFile(out / "s1.unstained.scan.h5") as sf:
        assert sf.complete
        assert len(sf.frames) == 9 * 14
        assert sorted(zip(sf.frames["position"], sf.frames["channel"], strict=True)) == [
            (p, c) for p in range(9) for c in range(14)
        ]
        assert np.array_equal(sf.images[()], images)
    assert not list(fields_dir(out / "s1.unstained.scan.h5").glob("*.partial"))


@pytest.mark.slow  # interrupts a real scan subprocess
def test_ctrl_c_abandons_the_field_and_resume_finishes(reference_scan, tmp_path):
    _, images, _ = reference_scan
    proc = _spawn_scan(tmp_path)
    path = tmp_path / "s1.unstained.scan.h5"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (
        fields_dir(path).exists() and any(fields_dir(path).glob("field_*"))
    ):
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    err = proc.communicate()[1]
    if proc.returncode == 0:
        pytest.skip("the scan finished before Ctrl-C arrived")  # machine far faster than CI
    assert proc.returncode == 130
    assert "--resume" in err.strip().splitlines()[-1]
    assert (
        main(scan_args(tmp_path, "unstained", "--grid", "2x2", "--stack", "le8", "--resume")) == 0
    )
    with ScanFile(path) as sf:
        assert sf.complete and np.array_equal(sf.images[()], images)


def test_existing_scan_is_not_overwritten(reference_scan, capsys):
    out, _, _ = reference_scan
    assert main(scan_args(out, "unstained", "--grid", "2x2", "--stack", "le8")) == 1
    assert "already exists; pass --resume" in capsys.readouterr().err


def test_resume_with_other_positions_is_refused(reference_scan, tmp_path, capsys):
    out, _, _ = reference_scan
    assert main(scan_args(out, "unstained", "--grid", "3x2", "--stack", "le8", "--resume")) == 1
    assert "positions differ" in capsys.readouterr().err


def test_not_enough_disk_is_refused_before_imaging(tmp_path, capsys):
    code = main(
        [
            "scan",
            "--slide",
            "big",
            "--pass",
            "unstained",
            "--profile",
            "pls43",
            "--out",
            str(tmp_path),
            "--grid",
            "300x300",
            "--yes",
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "not enough disk space" in err and "safety margin" in err
    assert not (tmp_path / "big.unstained.scan.h5").exists()  # a refusal leaves no file
    assert not list(fields_dir(tmp_path / "big.unstained.scan.h5").glob("field_*"))


@pytest.mark.slow  # a whole faulty scan
def test_faults_complete_the_scan_with_no_wrong_led_frame(reference_scan, tmp_path):
    """Dropped and garbled serial bytes and camera timeouts: every frame is still right."""
    _, images, _ = reference_scan
    cfg = tmp_path / "faults.yaml"
    cfg.write_text(
        DENSE.read_text()
        + "serial: {drop_probability: 0.01, garble_probability: 0.005, seed: 5}\n"
        + "devices: {camera_timeout_probability: 0.1, seed: 5}\n"
    )
    args = scan_args(tmp_path, "unstained", "--grid", "2x2", "--stack", "le8")
    args[args.index("--sim-config") + 1] = str(cfg)
    assert main(args) == 0
    with ScanFile(tmp_path / "s1.unstained.scan.h5") as sf:
        assert sf.complete
        assert np.array_equal(sf.images[()], images)


def test_wrong_profile_is_one_clear_error(tmp_path, capsys):
    assert (
        main(
            [
                "scan",
                "--slide",
                "s",
                "--pass",
                "unstained",
                "--profile",
                "pls44",
                "--out",
                str(tmp_path),
                "--grid",
                "1x1",
                "--yes",
            ]
        )
        == 1
    )
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown profile 'pls44'") and len(err.splitlines()) == 1


@pytest.fixture
def py_device_config(pls43, tmp_path):
    """A Micro-Manager .cfg declaring the simulator's camera and stages as `#py` devices."""
    from acquisition.simulator.devices import SimSession, register_session, unregister_session
    from acquisition.simulator.firmware import IlluminateEmulator
    from acquisition.simulator.microscope import SimulatedMicroscope

    firmware = IlluminateEmulator(pls43.led_array.leds)
    firmware.start()
    session = SimSession(
        microscope=SimulatedMicroscope(pls43, slide="s1", seed=3),
        firmware=firmware,
        sensor_wh=SENSOR_WH,
    )
    register_session("cfgtest", session)
    cfg = tmp_path / "sim-rig.cfg"
    lines = []
    for label, cls in (("Camera", "SimCamera"), ("XY", "SimXYStage"), ("Z", "SimZStage")):
        lines += [
            f"#py pyDevice,{label},acquisition.simulator.devices,{cls}",
            f"#py Property,{label},Session,cfgtest",
        ]
    lines += [
        "#py Property,Core,Initialize,1",
        "#py Property,Core,Camera,Camera",
        "#py Property,Core,XYStage,XY",
        "#py Property,Core,Focus,Z",
    ]
    cfg.write_text("\n".join(lines) + "\n")
    yield cfg, firmware
    unregister_session("cfgtest")
    firmware.close()


def test_mmcore_backend_with_python_device_config(py_device_config, reference_scan, tmp_path):
    cfg, firmware = py_device_config
    args = [
        "scan",
        "--slide",
        "s1",
        "--pass",
        "unstained",
        "--profile",
        "pls43",
        "--out",
        str(tmp_path),
        "--grid",
        "2x2",
        "--stack",
        "le8",
        "--yes",
        "--backend",
        "mmcore",
        "--mm-config",
        str(cfg),
        "--led-port",
        firmware.port,
    ]
    assert main(args) == 0
    with ScanFile(tmp_path / "s1.unstained.scan.h5") as sf:
        assert sf.complete and sf.attrs["backend"] == "mmcore"
        assert sf.images.shape == (4, 4, SENSOR_WH[1], SENSOR_WH[0], 3)
        assert sf.truth() is None  # a real backend carries no simulator truth


def test_wrong_led_port_is_one_clear_error(py_device_config, tmp_path, capsys):
    cfg, _ = py_device_config
    assert (
        main(
            [
                "scan",
                "--slide",
                "s",
                "--pass",
                "unstained",
                "--profile",
                "pls43",
                "--out",
                str(tmp_path),
                "--grid",
                "1x1",
                "--yes",
                "--backend",
                "mmcore",
                "--mm-config",
                str(cfg),
                "--led-port",
                "/dev/ttyNOPE9",
            ]
        )
        == 1
    )
    err = capsys.readouterr().err.strip()
    assert "/dev/ttyNOPE9" in err and len(err.splitlines()) == 1


def test_micromanager_backend_adapter_through_a_snake_case_core(pls43, reference_scan, tmp_path):
    """pycromanager's Core: MMCore in snake_case, colour as 1-D packed 32-bit BGRA."""
    from acquisition.micromanager import MicroManagerRig
    from acquisition.rig import Rig

    _, images, _ = reference_scan

    class PycromanagerLikeCore:
        def __init__(self, core):
            self._core = core

        def __getattr__(self, name):
            camel = name.split("_")[0] + "".join(p.title() for p in name.split("_")[1:])
            camel = camel.replace("Xy", "XY")
            return getattr(self._core, camel)

        def snap_image(self):
            self._core.snapImage()

        def get_image(self):
            rgb = self._core.getImage()
            bgra = np.concatenate([rgb[..., ::-1], np.zeros((*rgb.shape[:2], 1), np.uint8)], 2)
            return np.ascontiguousarray(bgra).view(np.int32).ravel()

        def get_number_of_components(self):
            return 4

    sim_rig = open_sim(
        pls43, SimOptions(slide="s1", seed=3, sensor_wh=SENSOR_WH, config=_dense_config())
    )
    with sim_rig:
        rig = Rig(
            mm=MicroManagerRig(PycromanagerLikeCore(sim_rig.mm.raw_core), camera=pls43.camera),
            leds=sim_rig.leds,
            profile=pls43,
            backend="micromanager",
            sim=sim_rig.sim,
            hooks=sim_rig.hooks,
        )
        rig.prepare_pass("unstained")  # the "operator" focuses
        plan = plan_scan(
            slide="s1",
            pass_="unstained",
            profile=pls43,
            out=tmp_path,
            frame_wh=rig.mm.frame_size,
            stack="le8",
            grid="2x2",
            z_um=rig.mm.read_stage().z_um,
        )
        run_scan(plan, rig)
    with ScanFile(tmp_path / "s1.unstained.scan.h5") as sf:
        assert np.array_equal(sf.images[()], images)


def _dense_config():
    from acquisition.simulator.options import load_sim_options

    return load_sim_options(DENSE)["config"]


def test_geometry_mismatch_is_refused(pls43, tmp_path):
    from hardware_profiles import Led

    moved = [
        Led(id=led.id, x_mm=led.x_mm + (1.0 if led.id == 7 else 0.0), y_mm=led.y_mm, z_mm=led.z_mm)
        for led in pls43.led_array.leds
    ]
    from acquisition.led_array import LedArrayError

    with pytest.raises(LedArrayError, match="7"):
        open_sim(pls43, SimOptions(sensor_wh=SENSOR_WH, firmware_leds=moved))


@pytest.mark.slow  # focuses a tilted slide field by field (~90 s)
class RecordingProgress(NullProgress):
    """A progress that records what the engine reports."""

    def __init__(self) -> None:
        self.starts: list[tuple] = []
        self.advances: list[tuple] = []
        self.notes: list[str] = []

    def start(self, key, total, *, label=None, done=0):
        self.starts.append((key, total, done))

    def advance(self, key, n=1, *, info=None):
        self.advances.append((key, n, info))

    def note(self, text, *, warning=False):
        self.notes.append(text)


@pytest.mark.slow  # a focus map over a tilted slide: ~30 s, the longest of the fast subset
def test_focus_map_recovers_the_tilted_surface(pls43, tmp_path):
    from acquisition.simulator.config import SimConfig

    config = SimConfig(surface_tilt_um_per_mm=4.0, surface_curvature_um=1.0, focus_offset_um=3.0)
    with open_sim(
        pls43, SimOptions(slide="tilt", seed=1, sensor_wh=(256, 160), config=config)
    ) as rig:
        plan = plan_scan(
            slide="tilt",
            pass_="unstained",
            profile=pls43,
            out=tmp_path,
            frame_wh=rig.mm.frame_size,
            stack="brightfield",
            focus="map",
            region="-500,-300,500,300",
        )  # fields spread over ~1 x 0.6 mm
        plan.positions = plan.positions[::4]  # every 4th field is enough for the test
        progress = RecordingProgress()
        summary = run_scan(plan, rig, progress=progress)
        truth_z = np.array(
            [rig.sim.microscope.focus_z_um("unstained", x, y) for x, y, _ in plan.positions]
        )
    with ScanFile(summary.path) as sf:
        z = sf.positions["z_um"]
    dof = 0.55 / 0.4**2  # λ/NA² at 550 nm
    assert np.abs(z - truth_z).max() <= dof / 2, (z, truth_z)
    assert np.ptp(truth_z) > dof, "the test slide should need focusing"
    # the reference fields are reported on their own bar before the fields and images
    from acquisition.focus import FOCUS_BAR

    (key, n_refs, _), *_ = progress.starts
    assert key == FOCUS_BAR and n_refs >= 3
    assert sum(a[0] == FOCUS_BAR for a in progress.advances) == n_refs
    assert any(n.startswith(f"focus map from {n_refs} reference fields") for n in progress.notes)


def test_highres_needs_cells(pls43, tmp_path):
    with pytest.raises(ScanError, match="--cells"):
        plan_scan(slide="s", pass_="highres", profile=pls43, out=tmp_path, frame_wh=SENSOR_WH)


def test_stained_needs_the_unstained_scan(tmp_path, capsys):
    assert main(scan_args(tmp_path, "stained")) == 1
    assert "does not exist (scan --pass unstained first" in capsys.readouterr().err


@pytest.mark.skipif(os.name != "posix", reason="pty")
def test_realtime_mode_sleeps_for_exposure(pls43, tmp_path):
    with open_sim(pls43, SimOptions(sensor_wh=(64, 64), realtime=True)) as rig:
        rig.mm.set_exposure(120.0)
        t0 = time.perf_counter()
        rig.mm.snap()
        assert time.perf_counter() - t0 >= 0.12


def test_engine_calls_the_rigs_hooks_whatever_the_backend(pls43, tmp_path):
    """The engine prepares the pass and asks for truth through the rig's hooks, never the
    simulator: hooks a backend provides are called; a rig without hooks gets no truth."""
    calls: list[tuple] = []

    class Recorder:
        def __init__(self, inner):
            self.inner = inner

        def prepare_pass(self, pass_):
            calls.append(("prepare", pass_))
            self.inner.prepare_pass(pass_)

        def scan_truth(self, pass_, centres, width, height):
            calls.append(("truth", pass_, len(centres), width, height))
            return self.inner.scan_truth(pass_, centres, width, height)

    def plan(rig, out):
        return plan_scan(
            slide="s1", pass_="unstained", profile=pls43, out=out, frame_wh=rig.mm.frame_size,
            stack="brightfield", grid="2x1", z_um=0.0,
        )  # fmt: skip

    with open_sim(pls43, SimOptions(slide="s1", seed=3, sensor_wh=SENSOR_WH)) as rig:
        rig.hooks = Recorder(rig.hooks)
        run_scan(plan(rig, tmp_path / "a"), rig)
        assert calls == [("prepare", "unstained"), ("truth", "unstained", 2, *SENSOR_WH)]
        with ScanFile(tmp_path / "a" / "s1.unstained.scan.h5") as sf:
            assert sf.truth() is not None
        rig.hooks = None  # a backend without hooks: same images, no truth
        run_scan(plan(rig, tmp_path / "b"), rig)
        with ScanFile(tmp_path / "b" / "s1.unstained.scan.h5") as sf:
            assert sf.complete and sf.truth() is None


def test_engine_reports_through_the_progress_protocol(pls43, tmp_path):
    """Bars of fields and images with their totals, one advance per frame and per field,
    the MB/s detail on the images bar, and notes as plain lines."""
    from acquisition.progress import Progress
    from acquisition.scan import FIELDS_BAR, IMAGES_BAR

    progress = RecordingProgress()
    assert isinstance(progress, Progress)
    with open_sim(pls43, SimOptions(slide="s1", seed=3, sensor_wh=SENSOR_WH)) as rig:
        plan = plan_scan(
            slide="s1", pass_="unstained", profile=pls43, out=tmp_path,
            frame_wh=rig.mm.frame_size, stack="le8", grid="2x1", z_um=0.0,
        )  # fmt: skip
        summary = run_scan(plan, rig, progress=progress)
    n_channels = len(plan.profile.stack)
    assert progress.starts == [(FIELDS_BAR, 2, 0), (IMAGES_BAR, 2 * n_channels, 0)]
    images = [a for a in progress.advances if a[0] == IMAGES_BAR]
    fields = [a for a in progress.advances if a[0] == FIELDS_BAR]
    assert len(images) == summary.n_images == 2 * n_channels and len(fields) == 2
    assert all(n == 1 and info.endswith(" MB/s") for _, n, info in images)
    assert any("the camera delivers 256x160 frames" in note for note in progress.notes)
