"""The CLI shell: instant help, version, one-line errors, --debug tracebacks."""

from __future__ import annotations

import subprocess
import sys

from scope.cli import main


def test_help_lists_commands_and_imports_nothing_heavy():
    code = (
        "import sys; from scope.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'cv2', 'h5py', 'pymmcore_plus', 'pycromanager', "
        "'skimage', 'scipy') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in out.stdout
    for command in ("scan", "calibrate", "profiles", "info"):
        assert command in out.stdout


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("scope ")


def test_expected_error_is_one_red_line(capsys):
    assert main(["profiles", "show", "no-such-profile"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown profile 'no-such-profile'")
    assert len(err.splitlines()) == 1


def test_debug_shows_the_traceback():
    out = subprocess.run(
        [sys.executable, "-m", "scope", "--debug", "profiles", "show", "no-such-profile"],
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0
    assert "Traceback" in out.stderr and "ProfileError" in out.stderr


def test_profiles_show_table(capsys):
    assert main(["profiles", "show", "pls43", "--stack", "le8"]) == 0
    out = capsys.readouterr().out
    assert "4 images" in out and "pls_00" in out


def test_info_on_a_non_scope_file_is_clear(tmp_path, capsys):
    path = tmp_path / "x.txt"
    path.write_text("hello")
    assert main(["info", str(path)]) == 1
    assert "is not an HDF5 file scope knows" in capsys.readouterr().err
