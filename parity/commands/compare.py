"""`parity compare`: load a torch model and its Flax NNX port, convert the weights, compare every
layer, the outputs and the gradients, and name the first layer where they part."""
from __future__ import annotations

import json

import numpy as np

from parity import names
from parity.commands.common import add_device, add_precision, check_device
from parity.console import EXIT_FAIL, EXIT_OK, UsageError, esc, write_json_atomic, writable_file


def add_parser(sub) -> None:
    p = sub.add_parser("compare", help="compare your torch model with your Flax NNX port, layer by layer",
                       description="Load TORCH and FLAX (FILE.py:NAME, a model class, a factory or a model; "
                                   "a Flax class or factory with an `rngs` parameter gets rngs=nnx.Rngs(0)), "
                                   "convert the weights, compare every layer's output, the outputs and the "
                                   "gradients on random inputs, and name the first layer where they part. "
                                   "Exit 0 same, 1 different, 2 bad input.")
    p.add_argument("torch_target", metavar="TORCH", help="FILE.py:NAME of the torch model")
    p.add_argument("flax_target", metavar="FLAX", help="FILE.py:NAME of the Flax NNX model")
    p.add_argument("--input-shape", action="append", required=True, metavar="N,C,H,W",
                   help="shape of one input in torch's layout (repeat for several inputs); 4-D float inputs "
                        "reach the Flax model as NHWC unless --layout nchw")
    p.add_argument("--input-int", type=int, metavar="HIGH",
                   help="integer inputs drawn from [0, HIGH) (token ids) instead of N(0, 1) floats")
    p.add_argument("--args", metavar="JSON", default="{}",
                   help='constructor keyword arguments for both, or {"torch": {...}, "flax": {...}}')
    p.add_argument("--dtype", choices=names.DTYPES, nargs="+", default=["float32"],
                   help="one or both (default: float32)")
    add_device(p)
    add_precision(p)
    p.add_argument("--layout", choices=("nhwc", "nchw"), default="nhwc",
                   help="nhwc: the Flax model takes 4-D inputs as NHWC (default); nchw: as torch does")
    p.add_argument("--weights", choices=("torch->flax", "flax->torch"), default="torch->flax",
                   help="which model's weights are converted into the other (default torch->flax)")
    p.add_argument("--train", action="store_true",
                   help="compare training-mode passes (BatchNorm batch statistics, shared Dropout masks); "
                        "default: eval mode")
    p.add_argument("--steps", type=int, default=0, metavar="N",
                   help="also train both for N SGD steps on random batches (MSE to random targets) and "
                        "compare the loss curves and parameters")
    p.add_argument("--lr", type=float, default=0.01, help="SGD learning rate for --steps (default 0.01)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    p.add_argument("--json", metavar="PATH", help="also write the reports to this JSON file")
    p.set_defaults(run=run)


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in text.split(","))
    except ValueError:
        shape = ()
    if not shape or any(s < 1 for s in shape):
        raise UsageError(f"--input-shape {text!r}: expected comma-separated positive integers, e.g. 8,3,32,32")
    return shape


def _args(text: str) -> tuple[dict, dict]:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(f"--args: not valid JSON ({e.msg} at character {e.pos})") from None
    if not isinstance(obj, dict):
        raise UsageError(f"--args: expected a JSON object, got {type(obj).__name__}")
    if set(obj) == {"torch", "flax"} and all(isinstance(v, dict) for v in obj.values()):
        return obj["torch"], obj["flax"]
    return obj, obj


def _verdict(summary: str) -> str:
    """The summary line with its verdict word coloured."""
    text = esc(summary)
    for word, style in ((": SAME —", "green"), (": DIFFERENT —", "bold red")):
        text = text.replace(word, f": [{style}]{word[2:-2]}[/] —", 1)
    return text


def _inputs(shapes, high, rng, dtype="float32"):
    if high is not None:
        return tuple(rng.integers(0, high, s) for s in shapes)
    return tuple(rng.standard_normal(s).astype(dtype) for s in shapes)


def run(args, out, err) -> int:
    from parity.porting import PortingError, compare, compare_training, load

    shapes = [_shape(s) for s in args.input_shape]
    if args.input_int is not None and args.input_int < 1:
        raise UsageError(f"--input-int {args.input_int}: must be >= 1")
    if args.steps < 0:
        raise UsageError(f"--steps {args.steps}: must be >= 0")
    t_args, f_args = _args(args.args)
    check_device(args.device)
    json_path = writable_file(args.json, "--json") if args.json is not None else None
    notes: list[str] = []
    try:
        t_obj, f_obj = load.load_target(args.torch_target), load.load_target(args.flax_target)
        t_model = load.build(t_obj, t_args, "torch", notes, load.rel_target(args.torch_target))
        f_model = load.build(f_obj, f_args, "flax", notes, load.rel_target(args.flax_target),
                             abstract=args.weights == "torch->flax")
    except PortingError as e:
        raise UsageError(str(e)) from None
    for n in notes:
        out.print(esc(n), highlight=False)
    dtypes = list(dict.fromkeys(args.dtype))
    reports, trainings, ok = [], [], True
    try:
        for dtype in dtypes:
            x = _inputs(shapes, args.input_int, np.random.default_rng(args.seed), dtype)
            r = compare(t_model, f_model, x, dtype=dtype, device=args.device, mode=args.precision,
                        weights=args.weights, layout=args.layout, train=args.train)
            reports.append(r)
            out.print(r.table())
            for line in r.lines():
                out.print(esc(line), highlight=False, soft_wrap=True)
            out.print(_verdict(r.summary()), highlight=False, soft_wrap=True)
            ok &= r.passed
            if args.steps:
                t = _train(t_model, f_model, shapes, args, dtype, compare_training)
                trainings.append(t)
                out.print(t.table(every=max(1, args.steps // 20)))
                for line in t.lines():
                    out.print(esc(line), highlight=False, soft_wrap=True)
                out.print(_verdict(t.summary()), highlight=False, soft_wrap=True)
                ok &= t.passed
    except PortingError as e:
        raise UsageError(str(e)) from None
    if json_path:
        from parity.report import environment
        write_json_atomic({"environment": environment(), "passed": ok, "models": notes,
                           "compare": [r.to_dict() for r in reports],
                           "training": [t.to_dict() for t in trainings]}, json_path)
        out.print(f"wrote {esc(json_path)}", highlight=False)
    return EXIT_OK if ok else EXIT_FAIL


def _train(t_model, f_model, shapes, args, dtype, compare_training):
    """compare_training on `--steps` random batches: MSE to random targets of the output's shape,
    plain SGD (torch.optim.SGD ⇔ optax.sgd) at --lr."""
    import copy

    import optax
    import torch

    from parity.porting.core import _flat_torch

    rng = np.random.default_rng(args.seed + 1)
    xs = [_inputs(shapes, args.input_int, rng, dtype) for _ in range(args.steps)]
    probe = copy.deepcopy(t_model).to(getattr(torch, dtype)).eval()
    with torch.no_grad():  # the output's shape: the comparison above already ran this forward pass
        out_shape = tuple(_flat_torch(probe(*[torch.as_tensor(a) for a in xs[0]]))[0].shape)
    batches = [(x if len(x) > 1 else x[0], rng.standard_normal(out_shape).astype(dtype)) for x in xs]
    return compare_training(t_model, f_model, batches, lambda ps: torch.optim.SGD(ps, lr=args.lr),
                            optax.sgd(args.lr), args.steps, loss="mse", dtype=dtype, device=args.device,
                            mode=args.precision, weights=args.weights, layout=args.layout, train=args.train)
