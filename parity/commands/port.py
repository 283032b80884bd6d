"""`parity port TORCH_FILE.py:NAME --input-shape ... --out DIR`: write the Flax NNX port of a torch
model and prove it (parity/port/api.py). Exit 0 ported and proven, 1 incomplete or not proven, 2 bad
input."""
from __future__ import annotations

import json

import numpy as np

from parity.commands.common import input_shape
from parity.console import UsageError, esc, writable_dir

EXIT_PROVEN, EXIT_NOT_PROVEN = 0, 1


def add_parser(sub) -> None:
    p = sub.add_parser("port", help="write the Flax NNX port of a torch model, its weights, and its proof",
                       description="Trace TORCH (FILE.py:NAME: a model class, a factory or a model), write one "
                                   "nnx.Module class per torch class into OUT (importing jax and flax only), "
                                   "convert the weights to safetensors, then prove the port with the comparer: "
                                   "every layer, output and gradient in float32 and float64, training for "
                                   "--steps Adam steps, and one training step timed in each framework "
                                   "(OUT/PROOF.md). Exit 0 proven, 1 incomplete or not proven, 2 bad input.")
    p.add_argument("torch_target", metavar="TORCH", help="FILE.py:NAME of the torch model")
    p.add_argument("--input-shape", action="append", required=True, metavar="N,C,H,W",
                   help="shape of one example input in torch's layout (repeat for several inputs)")
    p.add_argument("--input-int", type=int, metavar="HIGH",
                   help="integer inputs drawn from [0, HIGH) (token ids) instead of N(0, 1) floats")
    p.add_argument("--args", metavar="JSON", default="{}", help="constructor keyword arguments of NAME")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the port, its weights and PROOF.md")
    p.add_argument("--steps", type=int, default=20, metavar="N",
                   help="training steps of the proof, an integer >= 0 (default 20; 0: no training check)")
    p.add_argument("--no-timing", action="store_true", help="leave out the timed training step")
    p.add_argument("--seed", type=int, default=0, help="seed of the example inputs, an integer >= 0 (default 0)")
    p.set_defaults(run=run)


def run(args, out, err) -> int:
    shapes = [input_shape(s) for s in args.input_shape]
    if args.input_int is not None and args.input_int < 1:
        raise UsageError(f"--input-int must be >= 1, got {args.input_int}")
    if args.steps < 0:
        raise UsageError(f"--steps must be >= 0, got {args.steps}")
    if args.seed < 0:
        raise UsageError(f"--seed must be >= 0, got {args.seed}")
    try:
        ctor = json.loads(args.args)
    except json.JSONDecodeError as e:
        raise UsageError(f"--args: not valid JSON ({e.msg} at character {e.pos})") from None
    if not isinstance(ctor, dict):
        raise UsageError(f"--args: expected a JSON object, got {type(ctor).__name__}")
    folder = writable_dir(args.out, "--out")

    from parity.port import port
    from parity.porting import PortingError, load
    notes: list[str] = []
    try:
        model = load.build(load.load_target(args.torch_target), ctor, "torch", notes, load.rel_target(args.torch_target))
    except PortingError as e:
        raise UsageError(str(e)) from None
    rng = np.random.default_rng(args.seed)
    xs = tuple(rng.integers(0, args.input_int, s) if args.input_int is not None
               else rng.standard_normal(s).astype(np.float32) for s in shapes)
    for n in notes:
        out.print(esc(n), highlight=False)
    try:
        result = port(model, xs, folder, steps=args.steps, timing=not args.no_timing,
                      on_stage=lambda text: err.print(f"[dim]{esc(text)} …[/dim]"))
    except PortingError as e:
        raise UsageError(str(e)) from None
    for p in result.problems:
        out.print(esc(f"cannot port: {p['where']}: {p['what']} — {p['why']}"), highlight=False)
    out.print(esc(result.summary()), highlight=False)
    for key in ("float32", "float64", "training"):
        if key in result.proof:
            out.print(esc(f"{key}: {result.proof[key]['summary']}"), highlight=False)
    out.print(esc(f"wrote {folder}/: {result.file.name}, weights.safetensors, load_weights.py, PROOF.md, proof.json"
                  if result.complete else f"wrote {folder}/: {result.file.name} (incomplete), PROOF.md, proof.json"),
              highlight=False)
    return EXIT_PROVEN if result.passed else EXIT_NOT_PROVEN
