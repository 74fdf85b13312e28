"""`scope demo --quick`: the whole pipeline on the simulator, and a report whose every image
exists and decodes (the CI-safe check; docs/benchmarks.md notes the browser check)."""

from __future__ import annotations

from html.parser import HTMLParser

import cv2
import pytest

from scope.cli import main

#: the end-to-end runs: `make test-fast` leaves them out, `make test` (CI) runs them
pytestmark = pytest.mark.slow


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs)["src"])


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo-output"
    assert main(["demo", "--quick", "--out", str(out), "--device", "cpu"]) == 0
    return out


def test_demo_report_images_all_exist_and_decode(demo_dir):
    page = (demo_dir / "report.html").read_text(encoding="utf-8")
    parser = _Images()
    parser.feed(page)
    assert len(parser.sources) >= 10
    for src in parser.sources:
        image = cv2.imread(str(demo_dir / src), cv2.IMREAD_UNCHANGED)
        assert image is not None, f"{src} is missing or does not decode"
        assert image.shape[0] > 16 and image.shape[1] > 16
        assert image.std() > 1.0, f"{src} is blank"
    assert "brightfield-only baseline" in page
    # the virtual and the chemical stain of the same cells, side by side, aligned
    assert "report/virtual_vs_chemical.png" in parser.sources
    assert "report/cells_by_type.png" in parser.sources
    # the comparison with its uncertainty
    assert "95 % bootstrap interval" in page
    assert "same field" not in page  # the chemical stain is shifted: never captioned so


def test_demo_leaves_every_stage_file(demo_dir):
    for pattern in (
        "scans/demo-1.unstained.scan.h5",
        "scans/demo-3.highres.scan.h5",
        "data/demo.dataset.h5",
        "data/demo-2.cells.csv",
        "runs/pls/checkpoints/best.pt",
        "runs/brightfield/metrics.csv",
        "runs/pls/eval/test/summary.json",
    ):
        assert list(demo_dir.glob(pattern)), pattern
    assert list((demo_dir / "stained").glob("*.png"))


def test_demo_replaces_only_its_own_output(demo_dir, tmp_path, capsys):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.docx").write_text("precious")
    assert main(["demo", "--quick", "--out", str(foreign)]) == 1
    assert "was not written by scope demo" in capsys.readouterr().err
    assert (foreign / "thesis.docx").read_text() == "precious"
