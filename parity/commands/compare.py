"""`parity compare`: load a torch model and its Flax NNX port, convert the weights, compare every
layer, the outputs and the gradients, and name the first layer where they part."""
from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence

import numpy as np

from parity import names
from parity.commands.common import add_device, add_precision, check_device
from parity.console import EXIT_FAIL, EXIT_OK, UsageError, esc, progress, write_json_atomic, writable_file

# The most memory the random inputs of one comparison may take, as a share of this machine's physical
# memory: every layer's input and output is kept on both sides, with gradients, so a comparison needs
# many times its inputs' size; beyond this it could only end in an out-of-memory kill.
INPUT_MEMORY_SHARE = 8  # at most 1/8 of physical memory


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
    p.add_argument("--lr", type=float, default=0.01,
                   help="SGD learning rate for --steps, a finite number > 0 (default 0.01)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs, an integer >= 0 (default 0)")
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


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None


def _size(n: float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:,.3g} {unit}"
    return f"{n:,.0f} bytes"


def _check_input_size(texts, shapes, high, dtypes, memory=None) -> None:
    """Refuse inputs whose bytes exceed 1/INPUT_MEMORY_SHARE of physical memory (before any work)."""
    memory = _physical_memory() if memory is None else memory
    if not memory:
        return
    itemsize = 8 if high is not None else max(np.dtype(d).itemsize for d in dtypes)
    kind = "int64" if high is not None else max(dtypes, key=lambda d: np.dtype(d).itemsize)
    total = sum(math.prod(s) for s in shapes) * itemsize  # Python ints: no overflow
    if total > memory / INPUT_MEMORY_SHARE:
        raise UsageError(f"--input-shape {' '.join(texts)}: {_size(total)} of {kind} input, more than 1/"
                         f"{INPUT_MEMORY_SHARE} of this machine's {_size(memory)} of memory (a comparison keeps "
                         f"every layer's input and output on both sides); give a smaller shape")


def _check_numbers(args) -> None:
    """--lr, --seed, --steps and --input-int, in the words of `parity train` (parity/train_config.py)."""
    if not (math.isfinite(args.lr) and args.lr > 0):
        raise UsageError(f"--lr must be a finite number > 0; got {args.lr!r}")
    if args.seed < 0:
        raise UsageError(f"--seed must be an integer >= 0; got {args.seed}")
    if args.steps < 0:
        raise UsageError(f"--steps must be an integer >= 0; got {args.steps}")
    if args.input_int is not None and not 1 <= args.input_int <= 2**63:
        raise UsageError(f"--input-int must be an integer in [1, 2**63] (int64 token ids); got {args.input_int}")


# What the comparer advises in its Python spelling, and the same advice on the command line (the flag,
# or that only the Python API offers it). Each key is text of parity/porting/ (tests check that it is).
CLI_SPELLING = {
    "pass train=True to compare training-mode passes": "pass --train to compare training-mode passes",
    "; pass weights={torch_name: flax_path, ...} to pair them yourself":
        "; to pair them yourself, use the Python API: parity.compare(..., weights={torch_name: flax_path, ...}) "
        "(no command-line flag does this)",
    "pass flax_kwargs={'rngs': nnx.Rngs(0)}":
        "only the Python API can give it: parity.compare(..., flax_kwargs={'rngs': nnx.Rngs(0)}) (no "
        "command-line flag does this)",
    "pass them in torch_kwargs": "only the Python API can pass them: parity.compare(..., torch_kwargs={...}) (no "
                                 "command-line flag does this; --args holds constructor arguments)",
    "pass them in flax_kwargs": "only the Python API can pass them: parity.compare(..., flax_kwargs={...}) (no "
                                "command-line flag does this; --args holds constructor arguments)",
    "(taken from layout='nhwc'; the data cannot tell)": "(taken from --layout nhwc; the data cannot tell)",
    "(taken from layout='nchw'; the data cannot tell)": "(taken from --layout nchw; the data cannot tell)",
}


def cli_spelling(text: str) -> str:
    """`text` with the comparer's Python-API advice in its command-line spelling."""
    for python, cli in CLI_SPELLING.items():
        text = text.replace(python, cli)
    return text


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
    shapes = [_shape(s) for s in args.input_shape]
    _check_numbers(args)
    dtypes = list(dict.fromkeys(args.dtype))
    _check_input_size(args.input_shape, shapes, args.input_int, dtypes)
    t_args, f_args = _args(args.args)
    check_device(args.device)
    json_path = writable_file(args.json, "--json") if args.json is not None else None

    from parity.porting import PortingError, compare, compare_training, load
    notes: list[str] = []
    try:
        t_obj, f_obj = load.load_target(args.torch_target), load.load_target(args.flax_target)
        t_model = load.build(t_obj, t_args, "torch", notes, load.rel_target(args.torch_target))
        f_model = load.build(f_obj, f_args, "flax", notes, load.rel_target(args.flax_target),
                             abstract=args.weights == "torch->flax")
    except PortingError as e:
        raise UsageError(cli_spelling(str(e))) from None
    if args.steps:
        _check_trainable(t_model, f_model, args)
    for n in notes:
        out.print(esc(n), highlight=False)
    reports, trainings, ok = [], [], True
    try:
        for dtype in dtypes:
            x = _inputs(shapes, args.input_int, np.random.default_rng(args.seed), dtype)
            r = compare(t_model, f_model, x, dtype=dtype, device=args.device, mode=args.precision,
                        weights=args.weights, layout=args.layout, train=args.train)
            r.notes = [cli_spelling(n) for n in r.notes]
            reports.append(r)
            out.print(r.table())
            for line in r.lines():
                out.print(esc(line), highlight=False, soft_wrap=True)
            out.print(_verdict(cli_spelling(r.summary())), highlight=False, soft_wrap=True)
            ok &= r.passed
            if args.steps:
                t = _train(t_model, f_model, shapes, args, dtype, r, err, compare_training)
                t.notes = [cli_spelling(n) for n in t.notes]
                trainings.append(t)
                out.print(t.table(every=max(1, args.steps // 20)))
                for line in t.lines():
                    out.print(esc(line), highlight=False, soft_wrap=True)
                out.print(_verdict(t.summary()), highlight=False, soft_wrap=True)
                ok &= t.passed
    except PortingError as e:
        raise UsageError(cli_spelling(str(e))) from None
    if json_path:
        from parity.report import environment
        write_json_atomic({"environment": environment(), "passed": ok, "models": notes,
                           "compare": [r.to_dict() for r in reports],
                           "training": [t.to_dict() for t in trainings]}, json_path)
        out.print(f"wrote {esc(json_path)}", highlight=False)
    return EXIT_OK if ok else EXIT_FAIL


def _check_trainable(t_model, f_model, args) -> None:
    """--steps needs parameters on both sides (checked before anything runs)."""
    from flax import nnx
    import jax
    for side, model, has in (("torch", t_model, next(t_model.parameters(), None) is not None),
                             ("Flax", f_model, bool(jax.tree.leaves(nnx.state(f_model, nnx.Param))))):
        if not has:
            raise UsageError(f"--steps {args.steps}: the {side} model ({type(model).__name__}) has no parameters, "
                             f"so there is nothing to train; leave --steps out")


class _Batches(Sequence):
    """The `--steps` batches, each made when it is used (a long run never holds them all): batch k's
    inputs and MSE targets (N(0, 1), the output's shape) from its own generator, seeded by (--seed, k)."""

    def __init__(self, shapes, high, seed: int, dtype: str, out_shape, steps: int):
        self.shapes, self.high, self.seed, self.dtype = shapes, high, seed, dtype
        self.out_shape, self.steps = out_shape, steps

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, k: int):
        if not 0 <= k < self.steps:
            raise IndexError(k)
        rng = np.random.default_rng([self.seed, 1, k])
        x = _inputs(self.shapes, self.high, rng, self.dtype)
        return (x if len(x) > 1 else x[0]), rng.standard_normal(self.out_shape).astype(self.dtype)


def _train(t_model, f_model, shapes, args, dtype, report, err, compare_training):
    """compare_training on `--steps` random batches (made as they are used): MSE to random targets of
    the output's shape, plain SGD (torch.optim.SGD ⇔ optax.sgd) at --lr; a progress bar on stderr."""
    import optax
    import torch

    from parity.porting import PortingError

    if len(report.outputs) != 1:
        raise PortingError(f"--steps {args.steps}: the models return {len(report.outputs)} outputs; training "
                           f"compares models with one output")
    batches = _Batches(shapes, args.input_int, args.seed, dtype, tuple(report.outputs[0].shape), args.steps)
    with progress(err) as prog:
        task = prog.add_task(f"training {args.steps} steps, {dtype}", total=args.steps)
        return compare_training(t_model, f_model, batches, lambda ps: torch.optim.SGD(ps, lr=args.lr),
                                optax.sgd(args.lr), args.steps, loss="mse", dtype=dtype, device=args.device,
                                mode=args.precision, weights=args.weights, layout=args.layout, train=args.train,
                                on_step=lambda k: prog.update(task, completed=k))
