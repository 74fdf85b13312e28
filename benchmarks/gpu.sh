#!/usr/bin/env bash
# GPU benchmarks of the thesis network, in under 5 minutes, on a machine with only Python and
# torch: stain per 1920x1200 field, training samples/s, the loader alone, and a GPU-vs-CPU
# correctness check (exit 1 when it fails). Writes docs/bench/gpu.md and rebuilds
# docs/benchmarks.md from docs/bench/ (stdlib only).
#
#     bash benchmarks/gpu.sh                 # cuda, eager and torch.compile
#     bash benchmarks/gpu.sh --no-compile    # eager only (if compilation is too slow)
#     bash benchmarks/gpu.sh --device cpu --quick   # the script's own check, on a CPU
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
LIMIT="${GPU_BENCH_LIMIT_S:-280}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT="docs/bench/gpu.md"
case " $* " in *" --quick "*) OUT="${GPU_BENCH_OUT:-$(mktemp -d)/gpu.md}" ;; esac
rc=0
timeout "$LIMIT" "$PY" benchmarks/gpu_bench.py --out "$OUT" "$@" || rc=$?
if [ "$rc" -eq 124 ]; then
    echo "error: the GPU benchmark ran past ${LIMIT} s; run again with --no-compile" >&2
    exit 1
fi
if [ "$OUT" = "docs/bench/gpu.md" ] && [ -f "$OUT" ]; then
    "$PY" benchmarks/run_all.py --stitch
fi
exit "$rc"
