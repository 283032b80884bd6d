#!/usr/bin/env bash
# Run on a CUDA machine that already has jax (CUDA), flax, optax and torch (CUDA) installed, from the
# repository root: writes the GPU parity report under parity/reports/ (and copies it to $OUT if set).
#   bash scripts/gpu_audit.sh
set -uo pipefail
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD"
dest=parity/reports
mkdir -p "$dest"
python -m parity.cli check --device cuda --precision strict --dtype float32 --json "$dest/check-cuda-strict-float32.json"
python -m parity.cli check --device cuda --precision strict --dtype float64 --json "$dest/check-cuda-strict-float64.json"
python -m parity.cli audit --device cuda --out "$dest"                   # framework defaults, no switches
python -m parity.cli audit --device cuda --deterministic --out "$dest"   # with the documented switches
python -m pytest -q -m gpu -p no:cacheprovider 2>&1 | tail -20 | tee "$dest/pytest-gpu.txt"
if [ -n "${OUT:-}" ]; then cp -r "$dest" "$OUT/"; fi
