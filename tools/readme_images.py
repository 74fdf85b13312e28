"""Make the README's two pictures from a ``scope demo`` output folder (small JPEGs).

    python tools/readme_images.py demo-output

``docs/images/demo-field.jpg``: the left half of field 0 of the first slide under an oblique
LED, a darkfield LED, stained virtually by the PLS model, and chemically stained (the rescan
resampled onto the same pixels with the registration transform). ``demo-predictions.jpg``:
the report's test cells per white-cell type (brightfield | PLS | brightfield model |
chemical stain).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("demo", type=Path, help="a scope demo output folder")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    args = ap.parse_args()

    from scope.demo_report import aligned_chemical_stain

    class _Demo:  # what aligned_chemical_stain reads
        scans = args.demo / "scans"
        data = args.demo / "data"

    report = args.demo / "report"
    unstained = sorted((args.demo / "scans").glob("*.unstained.scan.h5"))
    slide = unstained[0].name.split(".")[0]
    oblique = next(report.glob("field0_pls_*.png"))
    dark = next(report.glob("field0_df_*.png"))
    virtual = next((args.demo / "stained").glob("field_00000.png"))
    panels = [cv2.imread(str(p)) for p in (oblique, dark, virtual)]
    panels.append(np.ascontiguousarray(aligned_chemical_stain(_Demo, slide, 0)[..., ::-1]))
    h, w = panels[0].shape[:2]
    half = [p[:, : w // 2] for p in panels]
    gap = np.full((h, 4, 3), 255, np.uint8)
    row = np.hstack([x for p in half for x in (p, gap)][:-1])
    args.out.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out / "demo-field.jpg"), row, [cv2.IMWRITE_JPEG_QUALITY, 85])
    cells = cv2.imread(str(report / "cells_by_type.png"))
    cv2.imwrite(str(args.out / "demo-predictions.jpg"), cells, [cv2.IMWRITE_JPEG_QUALITY, 85])
    for name in ("demo-field.jpg", "demo-predictions.jpg"):
        print(args.out / name, (args.out / name).stat().st_size // 1024, "KB")


if __name__ == "__main__":
    main()
