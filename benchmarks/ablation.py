"""The method's claim on the simulator: PLS images beat brightfield alone (thesis §4.1).

Renders a dataset from the simulated microscope (``training.simulated``: several virtual
slides, split by slide), trains one model per stack preset with the same budget (network
width, blocks, epochs, batch, seed) and evaluates each on the test split. Writes a markdown
table (``--out``, default ``docs/ablation.md``) in the layout of REFERENCE.md's ablation
table. The thesis found (validation, maePNET, 100x target): full-nohe SSIM 0.8660 against
brightfield 0.8065.

Examples::

    python benchmarks/ablation.py                       # full-nohe vs brightfield, ~10 min
    python benchmarks/ablation.py --precision bf16 \
        --stacks full-nohe le36-nohe le18 le8 brightfield  # docs/ablation.md, ~25 min
    python benchmarks/ablation.py --device cuda --cells-per-slide 400 --epochs 60 \\
        --features 0 --blocks 4                                   # thesis widths
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stacks", nargs="+", default=["full-nohe", "brightfield"])
    ap.add_argument("--slides", type=int, default=5, help="virtual slides (split by slide)")
    ap.add_argument("--cells-per-slide", type=int, default=40)
    ap.add_argument("--crop", type=int, default=64)
    ap.add_argument("--target", default="highres", choices=["20x", "highres"])
    ap.add_argument("--preset", default="maeNET", help="loss preset (maePNET needs VGG weights)")
    ap.add_argument("--features", type=int, default=32, help="generator width (0: thesis)")
    ap.add_argument("--blocks", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=25)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=Path("bench-output/ablation"))
    ap.add_argument("--dataset", type=Path, help="reuse this dataset instead of rendering one")
    ap.add_argument("--out", type=Path, default=Path("docs/ablation.md"))
    args = ap.parse_args(argv)

    import hardware_profiles as hp
    from training import evaluate, simulate_dataset, train
    from training.models import RRDBGenerator, count_parameters
    from training.run import read_metrics

    args.work.mkdir(parents=True, exist_ok=True)
    data = args.dataset
    rendered = "given with --dataset"
    if data is None:
        data = args.work / "ablation.dataset.h5"
        if data.exists():
            rendered = "rendered by an earlier run of this script"
        else:
            t0 = time.perf_counter()
            slides = [f"ablation-{k}" for k in range(args.slides)]
            simulate_dataset(
                data,
                slides=slides,
                cells_per_slide=args.cells_per_slide,
                crop_size=args.crop,
                seed=args.seed,
                highres=args.target == "highres",
                on_cell=lambda d, n: print(f"\rrendering cells {d}/{n}", end="", flush=True),
            )
            print()
            rendered = f"rendering took {time.perf_counter() - t0:.0f} s"
    table = hp.load("pls43").channel_table()
    rows = []
    for stack in args.stacks:
        run = args.work / f"run-{stack}"
        n_img = len(hp.select_channels(table, stack))
        cfg = {
            "dataset": data,
            "out": run,
            "preset": args.preset,
            "stack": stack,
            "target": args.target,
            "blocks": args.blocks,
            "features": args.features or None,
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "device": args.device,
            "precision": args.precision,
            "seed": args.seed,
            "patience": args.epochs,
        }
        if not run.exists():
            train(cfg, progress=True)
        history = read_metrics(run / "metrics.csv")
        train_s = sum(r["seconds"] for r in history)
        metrics = evaluate(run, split="test", device=args.device, progress=False)
        summary = json.loads((metrics["dir"] / "summary.json").read_text())
        params = count_parameters(
            RRDBGenerator(3 * n_img, features=args.features or None, blocks=args.blocks)
        )
        best_val = min(r["val_loss"] for r in history)
        rows.append((stack, n_img, params, best_val, summary, train_s))
    lines = [
        "# Ablation on the simulator: which images does the network need?",
        "",
        f"Dataset: {data.name} — rendered by `training.simulated.simulate_dataset` from "
        f"{args.slides} virtual `pls43` slides × {args.cells_per_slide} white blood cells, "
        f"{args.crop}x{args.crop} crops, {args.target} target, split by slide "
        f"({rendered}). Same budget for every stack: preset "
        f"{args.preset}, RRDB {args.blocks} blocks, width "
        f"{args.features or '= input channels'}, {args.epochs} epochs, batch "
        f"{args.batch_size}, lr {args.lr:g}, seed {args.seed}. Test-split metrics of the "
        "best-validation epoch (`scope evaluate`).",
        "",
        "| stack | images | parameters | best val loss | test SSIM | PSNR (dB) | MAE | "
        "training (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for stack, n_img, params, val, s, secs in rows:
        m = s["mean"]
        lines.append(
            f"| {stack} | {n_img} | {params:,} | {val:.5f} | {m['ssim']:.4f} | "
            f"{m['psnr']:.2f} | {m['mae']:.4f} | {secs:.0f} |"
        )
    by = {r[0]: r[4]["mean"]["ssim"] for r in rows}
    if "full-nohe" in by and "brightfield" in by:
        delta = by["full-nohe"] - by["brightfield"]
        verdict = "beats" if delta > 0 else "does NOT beat"
        lines += [
            "",
            f"full-nohe {verdict} brightfield by {delta:+.4f} test SSIM (thesis, validation: "
            "0.8660 vs 0.8065, +0.0595).",
        ]
    lines.append("")
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
