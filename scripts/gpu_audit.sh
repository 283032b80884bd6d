#!/usr/bin/env bash
# Run on a CUDA machine that already has jax (CUDA), flax, optax and torch (CUDA) installed, from the
# repository root; nothing is installed. Writes every report under gpu-out/ (git-ignored: copy what
# you mean to commit into parity/reports/cuda/ and benchmarks/results/cuda/ by hand), and copies
# gpu-out/ to $OUT if that is set.
#   bash scripts/gpu_audit.sh [check|audit|tests|bench|all]     (default: all; one step fits in
#                                                                a 10-minute slot, all may not)
# Exit status: 0 when every step it ran succeeded, else the number of failed steps (each listed).
set -uo pipefail
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD"
step=${1:-all}
case "$step" in check|audit|tests|bench|all) ;; *) echo "usage: $0 [check|audit|tests|bench|all]" >&2; exit 2;; esac
dest=gpu-out
mkdir -p "$dest"
failed=()
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$dest/gpu.txt" 2>&1 || failed+=("nvidia-smi")
want() { [ "$step" = all ] || [ "$step" = "$1" ]; }
# runs a command, keeps its output in $dest/<name>.txt, and records a failure by name
record() { local name=$1; shift; "$@" 2>&1 | tee "$dest/$name.txt"; [ "${PIPESTATUS[0]}" -eq 0 ] || failed+=("$name"); }
if want check; then
  record check-cuda-strict python -m parity.cli check --device cuda --precision strict --dtype float32 float64 --json "$dest/check-cuda-strict.json"
  record check-cuda-defaults python -m parity.cli check --device cuda --precision defaults --dtype float32 --json "$dest/check-cuda-defaults.json"
fi
if want audit; then
  record audit python -m parity.cli audit --device cuda --out "$dest"                                   # framework defaults
  record audit-deterministic python -m parity.cli audit --device cuda --deterministic --out "$dest"     # the documented switches
fi
if want tests; then
  record pytest-gpu python -m pytest -q -m gpu -p no:cacheprovider
fi
if want bench; then
  record bench python -m parity.cli bench --full --device cuda --repeat-runs 2 --out "$dest/bench"
fi
if [ -n "${OUT:-}" ]; then
  cp -r "$dest" "$OUT/"
fi
if [ ${#failed[@]} -gt 0 ]; then
  echo "gpu_audit: failed steps: ${failed[*]}" >&2
fi
exit ${#failed[@]}
