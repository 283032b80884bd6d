"""`python -m parity.distributed.batchnorm [--dtype float32] [--steps 20] [--stock-bn]`: the BatchNorm
case of docs/traps.md, trap 31, as a table. A conv → BatchNorm → ReLU → pool → linear model trained
on digits from the same weights on the same batches: on one device in each framework, torch DDP
with per-rank and with global statistics, JAX sharded and JAX per device (2 ranks/devices)."""
from __future__ import annotations

import argparse
import sys

from parity.distributed import compare


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m parity.distributed.batchnorm", description=__doc__)
    p.add_argument("--dtype", choices=("float32", "float64"), default="float64")
    p.add_argument("--steps", type=int, default=20, help="steps (one teacher-forcing segment at most: 20)")
    p.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd")
    p.add_argument("--stock-bn", action="store_true", help="torch.nn.BatchNorm2d instead of the project's")
    p.add_argument("--world", type=int, default=2, help="ranks / devices")
    args = p.parse_args(argv)
    try:
        res = compare.batchnorm_case(world=args.world, steps=args.steps, dtype=args.dtype, optimizer=args.optimizer,
                                     stock_bn=args.stock_bn)
    except ValueError as e:
        print(f"parity.distributed.batchnorm: error: {e}", file=sys.stderr)
        return 2
    print(f"conv → BatchNorm2d → ReLU → max-pool → linear on digits, batch {res['batch_size']} over "
          f"{res['world']} ranks/devices, {res['optimizer']}, {res['steps']} steps, {res['dtype']}")
    print(f"{'run':56s} {'against':30s} {'max |Δloss|':>12s} {'ulps':>10s} {'Δ running var':>14s}  verdict")
    for r in res["rows"]:
        print(f"{r['run']:56s} {r['against']:30s} {r['max_abs_diff']:12.3g} {r['worst_ulps']:10.3g} "
              f"{r['running_var_max_abs_diff']:14.3g}  {'agree' if r['agree'] else 'DIFFER'} "
              f"(bound {r['bound_ulps']:g} ulps of 1 + |loss|)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
