#!/usr/bin/env bash
# GPU benchmarks of the thesis network, in under 5 minutes, on a machine with only Python and
# torch: stain per 1920x1200 field in each variant (eager, compiled, channel counts padded to
# multiples of 8, CUDA graph), training samples/s at batches 20, 128 and 256, the loader
# alone, and a GPU-vs-CPU correctness check of every stain variant (exit 1 when one fails).
# Writes docs/bench/gpu.md (this run on top, the runs already there kept below it, rewritten
# after each stage so a run cut short keeps its rows) and rebuilds docs/benchmarks.md from
# docs/bench/ (stdlib only).
#
#     bash benchmarks/gpu.sh                 # cuda, every variant
#     bash benchmarks/gpu.sh --no-compile    # without the compiled variants (if compiling is slow)
#     bash benchmarks/gpu.sh --device cpu --quick   # the script's own check, on a CPU
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
LIMIT="${GPU_BENCH_LIMIT_S:-280}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT="docs/bench/gpu.md"
KEEP=(--keep-earlier)
case " $* " in *" --quick "*) OUT="${GPU_BENCH_OUT:-$(mktemp -d)/gpu.md}"; KEEP=() ;; esac
rc=0
timeout "$LIMIT" "$PY" benchmarks/gpu_bench.py --out "$OUT" ${KEEP[@]+"${KEEP[@]}"} "$@" || rc=$?
if [ "$OUT" = "docs/bench/gpu.md" ] && [ -f "$OUT" ]; then
    "$PY" benchmarks/run_all.py --stitch
fi
if [ "$rc" -eq 124 ]; then
    echo "error: the GPU benchmark ran past ${LIMIT} s (its rows so far are in $OUT," \
        "marked incomplete); run again with --no-compile" >&2
    exit 1
fi
exit "$rc"
