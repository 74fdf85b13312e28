"""The README's tour and docs/getting-started.md, executed line by line so the docs cannot drift.

Every ``bash`` block line of the README's "A tour of the commands" and of the getting-started
page runs, in order, in a fresh folder, through ``bash`` with ``scope`` on the PATH (this
checkout's code). Only the install lines (``git clone``, ``make demo``, ``source
.venv/...``) are skipped: CI's ``make test`` and tests/test_demo.py cover them. The simulator
runs small frames of a dense smear through two environment overrides (``SCOPE_SIM_SENSOR``,
``SCOPE_SIM_CONFIG``, docs/simulator.md), so the commands stay exactly as printed.

Also checked against the code: the README's disk figure for the tour's scan, the exposure
table of docs/simulator.md, the sample error of docs/profiles.md, the ``--z-um`` default of
docs/scanning.md.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

#: the end-to-end runs: `make test-fast` leaves them out, `make test` (CI) runs them
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
INSTALL_LINES = ("git clone ", "make demo", "make test", "source .venv/bin/activate")
SIM_CONFIG = "wbc_per_field: 60\nmax_translation_um: 20\n"


def bash_lines(markdown: str, *, section: str | None = None) -> list[str]:
    """Command lines of the ``bash`` blocks (of one ``## section``), continuations joined."""
    if section is not None:
        start = markdown.index(f"## {section}")
        nxt = markdown.find("\n## ", start + 3)
        markdown = markdown[start : nxt if nxt > 0 else None]
    lines: list[str] = []
    for block in re.findall(r"^[ \t]*```bash\n(.*?)^[ \t]*```", markdown, re.M | re.S):
        pending = ""
        for raw in block.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.endswith("\\"):
                pending += line[:-1] + " "
                continue
            lines.append(pending + line)
            pending = ""
    return lines


def _env(tmp: Path) -> dict[str, str]:
    shim = tmp / ".bin"
    shim.mkdir(exist_ok=True)
    scope = shim / "scope"
    scope.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m scope "$@"\n', encoding="utf-8")
    scope.chmod(0o755)
    cfg = tmp / ".sim.yaml"
    cfg.write_text(SIM_CONFIG, encoding="utf-8")
    env = dict(os.environ)
    env.update(
        PATH=f"{shim}{os.pathsep}{env.get('PATH', '')}",
        PYTHONPATH=f"{ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}",
        SCOPE_SIM_SENSOR="640x400",
        SCOPE_SIM_CONFIG=str(cfg),
        COLUMNS="120",
    )
    return env


def run_lines(lines: list[str], cwd: Path) -> None:
    """Each line in ``bash`` (variables set by earlier lines carried along); stop at a failure."""
    env = _env(cwd)
    assignments: list[str] = []
    for line in lines:
        if line.startswith(INSTALL_LINES):
            continue
        script = "\n".join([*assignments, line])
        done = subprocess.run(
            ["bash", "-c", script],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, (
            f"documented command failed: {line}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        )
        if re.match(r"^[A-Z_]+=", line):
            assignments.append(line)


def test_readme_tour_runs_as_written(tmp_path):
    lines = bash_lines(
        (ROOT / "README.md").read_text(encoding="utf-8"), section="A tour of the commands"
    )
    assert any(line.startswith("scope train") for line in lines)
    assert all(
        "--yes" in line for line in lines if line.startswith(("scope scan", "scope calibrate"))
    )
    run_lines(lines, tmp_path)
    assert list((tmp_path / "stained").glob("field_*.png"))
    assert (tmp_path / "runs" / "first" / "eval" / "test" / "summary.json").is_file()


def test_getting_started_runs_as_written(tmp_path):
    lines = bash_lines((ROOT / "docs" / "getting-started.md").read_text(encoding="utf-8"))
    assert any(line.startswith("scope calibrate") for line in lines)
    # the page runs from the clone: its profile folder is where the page says
    (tmp_path / "hardware_profiles").symlink_to(ROOT / "hardware_profiles")
    run_lines(lines, tmp_path)
    assert list((tmp_path / "virtual").glob("field_*.png"))


def test_readme_disk_figure_matches_the_estimate():
    import hardware_profiles as hp
    from acquisition.scan import estimate_scan_bytes, plan_scan

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    claimed = float(re.search(r"The 2x2 unstained scan above .*? about ([\d.]+) GB", text, re.S)[1])
    prof = hp.load("pls43")
    sensor = (prof.camera.sensor_width_px, prof.camera.sensor_height_px)
    plan = plan_scan(
        slide="S1",
        pass_="unstained",
        profile=prof,
        out=Path("scans"),
        frame_wh=sensor,
        stack="full-nohe",
        grid="2x2",
        z_um=0.0,
    )
    assert estimate_scan_bytes(plan, sensor) / 1e9 == pytest.approx(claimed, abs=0.05)


def test_simulator_exposure_table_matches_the_profile():
    import hardware_profiles as hp

    text = (ROOT / "docs" / "simulator.md").read_text(encoding="utf-8")
    table = hp.load("pls43").channel_table()
    for theta, ms, gain in re.findall(
        r"^\| darkfield low \| (\d+)° \| ([\d.]+) ms, gain ([\d.]+) \|", text, re.M
    ):
        rows = [
            r
            for r in table
            if str(r["kind"]) == "darkfield"
            and str(r["exposure_level"]) == "low"
            and round(float(r["theta_deg"])) == int(theta)
        ]
        assert rows, theta
        assert {(float(r["exposure_ms"]), float(r["gain"])) for r in rows} == {
            (float(ms), float(gain))
        }, theta


def test_profiles_sample_error_is_what_scope_prints(tmp_path):
    text = (ROOT / "docs" / "profiles.md").read_text(encoding="utf-8")
    sample = re.search(r"^(error: invalid profile 'my-scope\.yaml'.*)$", text, re.M)[1]
    yaml = (ROOT / "hardware_profiles" / "profiles" / "pls43.yaml").read_text(encoding="utf-8")
    i = yaml.index("- name: pls_20\n  leds: [20]")
    (tmp_path / "my-scope.yaml").write_text(
        yaml[:i] + yaml[i:].replace("leds: [20]", "leds: [6]", 1), encoding="utf-8"
    )
    done = subprocess.run(
        [sys.executable, "-m", "scope", "profiles", "show", "my-scope.yaml"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "400"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert sample in " ".join(done.stderr.split())


def test_scanning_doc_states_the_z_default():
    text = (ROOT / "docs" / "scanning.md").read_text(encoding="utf-8")
    row = re.search(r"^\| `--z-um Z` \|(.*)$", text, re.M)[1]
    assert "current stage Z" in row
    help_text = (ROOT / "scope" / "commands" / "scan.py").read_text(encoding="utf-8")
    assert "default: the current stage Z" in help_text


def test_help_shows_no_type_beside_flags():
    done = subprocess.run(
        [sys.executable, "-m", "scope", "scan", "--help"],
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "160"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0
    assert "--yes" in done.stdout and "<bool>" not in done.stdout
    assert "<str>" in done.stdout  # options that take a value keep their type


def test_split_summaries_say_how_and_why():
    from registration.splits import describe_mode

    assert describe_mode("blocks", 1) == (
        "split by blocks within each slide; 1 slide, by-slide splits need 5"
    )
    assert "3 slides" in describe_mode("blocks", 3)
    assert describe_mode("slide", 6).startswith("split by slide")
