#!/usr/bin/env bash
# Run on a CUDA machine that already has jax (CUDA), flax, optax and torch (CUDA) installed, from the
# repository root; nothing is installed. Writes the GPU parity report under parity/reports/ and the
# GPU benchmark under benchmarks/results/cuda/ (and copies both to $OUT if set).
#   bash scripts/gpu_audit.sh [check|audit|tests|bench|all]     (default: all; one step fits in
#                                                                a 10-minute slot, all may not)
set -uo pipefail
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD"
step=${1:-all}
dest=parity/reports
mkdir -p "$dest"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$dest/gpu.txt" 2>&1
run() { [ "$step" = all ] || [ "$step" = "$1" ]; }
if run check; then
  python -m parity.cli check --device cuda --precision strict --dtype float32 float64 --json "$dest/check-cuda-strict.json" | tee "$dest/check-cuda-strict.txt"
  python -m parity.cli check --device cuda --precision defaults --dtype float32 --json "$dest/check-cuda-defaults.json" | tee "$dest/check-cuda-defaults.txt"
fi
if run audit; then
  python -m parity.cli audit --device cuda --out "$dest"                   # framework defaults, no switches
  python -m parity.cli audit --device cuda --deterministic --out "$dest"   # with the documented switches
fi
if run tests; then
  python -m pytest -q -m gpu -p no:cacheprovider 2>&1 | tail -20 | tee "$dest/pytest-gpu.txt"
fi
if run bench; then
  python -m parity.cli bench --full --device cuda --repeat-runs 2 --out benchmarks/results/cuda
fi
if [ -n "${OUT:-}" ]; then
  cp -r "$dest" "$OUT/"
  [ -d benchmarks/results/cuda ] && cp -r benchmarks/results/cuda "$OUT/"
fi
exit 0
