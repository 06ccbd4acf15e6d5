#!/usr/bin/env bash
# What only a CUDA machine can tell: run this once on one, in under 5 minutes, and commit nothing but
# the numbers it reports (README "Speed", docs/speed.md).
#
#   scripts/gpu_check.sh OUTDIR
#
# 1. the CUDA tests (pytest -m cuda: tests/test_cuda.py), 2. seconds per reverse step of the shipped
# model at 256, 512, 1024 and 2048 px output in fp32, fp16 and bf16 with the peak GPU memory of each,
# 3. a 200-step training run on the GPU (100 encoder + 100 noise-predictor steps).  Writes
# OUTDIR/gpu_check.json (and the logs beside it); exit 0 only when every part ran and passed.
# Without a usable GPU it stops at once with one error: line (exit 2).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $# -ne 1 || -z "$1" ]]; then
    echo "error: usage: scripts/gpu_check.sh OUTDIR (the folder the JSON report is written to)" >&2
    exit 2
fi
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# checked here, before any folder is made, so a machine without a GPU leaves nothing behind
if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "error: no CUDA GPU is visible to PyTorch (torch.cuda.is_available() is false); gpu_check.sh needs one" >&2
    exit 2
fi
exec "$PY" scripts/gpu_check.py "$1"
