"""`scope calibrate` recovers the simulator's ideal exposures (its response is known)."""

from __future__ import annotations

import pytest

import hardware_profiles as hp
from acquisition.calibrate import CalibrationTargets, calibrate_profile
from acquisition.focus import focus_here
from acquisition.progress import NullProgress
from acquisition.rig import SimOptions, open_sim
from scope.cli import main

SENSOR = (256, 160)


class Notes(NullProgress):
    def __init__(self) -> None:
        self.lines: list[str] = []

    def note(self, text: str, *, warning: bool = False) -> None:
        self.lines.append(text)


def test_calibration_recovers_ideal_exposures(pls43):
    names = {"brightfield", "pls_00", "pls_12", "df_06_low", "df_06_high", "df_10_low"}
    targets = CalibrationTargets()
    with open_sim(pls43, SimOptions(slide="cal", seed=2, sensor_wh=SENSOR)) as rig:
        focus_here(rig, pls43.stack[0])
        notes = Notes()
        new, results = calibrate_profile(rig, pls43, targets=targets, only=names, progress=notes)
        micro = rig.sim.microscope
        z = rig.mm.read_stage().z_um
        assert abs(z - micro.focus_z_um("unstained", 0.0, 0.0)) < 1.0
        assert {r.name for r in results} == names
        assert notes.lines == [
            f"  {r.name}: {r.exposure_ms:.3g} ms, gain {r.gain:.3g}" for r in results
        ]
        for r in results:
            ch = next(c for c in pls43.stack if c.name == r.name)
            high = r.exposure_level == "high"
            ideal = micro.ideal_exposure_ms(
                pass_="unstained",
                x_um=0.0,
                y_um=0.0,
                leds=dict.fromkeys(ch.leds, ch.brightness),
                gain=r.gain,
                level=255.0 if high else targets.level,
                percentile=100 - targets.high_saturation_percent if high else targets.percentile,
                width=SENSOR[0],
                height=SENSOR[1],
                z_um=z,  # where it calibrated: a single LED's highlights move with focus
            )
            assert r.exposure_ms == pytest.approx(ideal, rel=0.10), r
            if not high:
                assert r.saturated_percent < 0.5
    untouched = next(c for c in new.stack if c.name == "df_40_low")
    assert untouched == next(c for c in pls43.stack if c.name == "df_40_low")


def test_calibrate_cli_writes_a_loadable_profile(tmp_path, capsys):
    out = tmp_path / "cal.yaml"
    assert (
        main(
            [
                "calibrate",
                "--profile",
                "pls43",
                "--out",
                str(out),
                "--stack",
                "le8",
                "--sim-sensor",
                "192x128",
                "--yes",
            ]
        )
        == 0
    )
    cal = hp.load(out)
    assert cal.stack[0].exposure_ms != hp.load("pls43").stack[0].exposure_ms
    assert "calibration" in capsys.readouterr().out


def test_calibrate_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "cal.yaml"
    out.write_text("precious")
    assert main(["calibrate", "--profile", "pls43", "--out", str(out)]) == 1
    assert "exists" in capsys.readouterr().err
    assert out.read_text() == "precious"
