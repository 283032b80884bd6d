"""`parity compare`: load a torch model and its Flax NNX port, convert the weights, compare every
layer, the outputs and the gradients, and name the first layer where they part.

The flags reach `parity.porting.compare` (parity/porting/core.py) as follows; each is checked before
any work, and bad input exits 2 with one line naming the flag:

* `--args JSON`: the constructor's keyword arguments (of the class or factory FILE.py:NAME names),
  for both or as {"torch": {...}, "flax": {...}};
* `--torch-kwargs JSON`, `--flax-kwargs JSON`: the keyword arguments of each model's call
  (`torch_kwargs=`, `flax_kwargs=`), JSON values as they are, with one exception: a Flax "rngs"
  given as a seed (`{"rngs": 0}`) or as an object of streams (`{"rngs": {"params": 0, "dropout":
  1}}`) becomes nnx.Rngs(0) or nnx.Rngs(params=0, dropout=1), made afresh for each comparison (the
  same spelling holds for "rngs" in --args' Flax side);
* `--map JSON_OR_FILE`: `weights=` as a {torch layer or parameter: Flax path, or [Flax path,
  layout]} mapping, layout "T", "conv" or "same" (parity/porting/pairing.py), converted in the
  direction --weights names;
* `--kinds FILE.py`: imported (quietly, as the model files: parity/porting/load.py) after the models
  are loaded and before they are compared, so that its `parity.porting.register_kind(Kind(...))`
  calls take effect; it may import the model files by their plain names and gets the modules
  already loaded. The kinds it registers are dropped again when the run ends;
* `--rule scaled|fixed`: `rule=` (parity/porting/verdict.py); by default scaled in float32, fixed in
  float64 (the scaled rule needs float32);
* `--cache-dir DIR`, `--no-cache`: JAX's persistent compilation cache, on by default in the folder
  `parity report` uses (parity/parallel.py); a cached program is the same program, loaded instead
  of compiled.

A small model runs torch on one thread (SMALL_INPUT_ELEMENTS, SMALL_PARAMETERS), and the garbage
collector pauses while the frameworks are imported (`_Collections`): docs/measurements.md has what
each saves.

Notes are printed once per run: what a second dtype or the training comparison would repeat is
left out (the JSON report keeps every report's notes whole), a setting that differs in the same way
on several layers is one line naming them all, and the first divergent layer's settings are left to
the summary line, which lists them.
"""
from __future__ import annotations

import contextlib
import copy
import gc
import json
import math
import os
from pathlib import Path

import numpy as np

from parity import names, parallel
from parity.commands import common
from parity.commands.common import add_cache, add_device, add_precision, check_device, input_shape
from parity.console import (EXIT_FAIL, EXIT_OK, UsageError, esc, progress, writable_file,
                            write_json_atomic)

# The most memory the random inputs of one comparison may take, as a share of this machine's physical
# memory: every layer's input and output is kept on both sides, with gradients, so a comparison needs
# many times its inputs' size; beyond this it could only end in an out-of-memory kill.
INPUT_MEMORY_SHARE = 8  # at most 1/8 of physical memory
RULES = ("scaled", "fixed")  # parity/porting/verdict.py's RULES (a test checks that they agree)
MAP_LAYOUTS = ("T", "conv", "same")  # parity/porting/pairing.py's layout names (a test checks that they agree)
NOTE_LAYERS_SHOWN = 6  # layers named in one note line before "and N more"
# A model this small runs torch on one thread: its ops are too small to share out, and where the
# cores are busy, every op waiting for the second thread cost a small CNN's passes 0.1–0.2 s each
# against under a millisecond (docs/measurements.md); with one thread torch's numbers also do not
# depend on the machine's core count or load. Larger models keep torch's own thread count.
SMALL_INPUT_ELEMENTS = 2**16  # all inputs together
SMALL_PARAMETERS = 2**22
_FROZEN = False  # gc.freeze() done in this process


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
                   help='constructor keyword arguments (of the class or factory NAME) for both, or {"torch": '
                        '{...}, "flax": {...}}; the arguments of the models\' calls go in --torch-kwargs and '
                        '--flax-kwargs')
    p.add_argument("--torch-kwargs", metavar="JSON",
                   help='keyword arguments of the torch model\'s forward, a JSON object passed as it is, e.g. '
                        '\'{"causal": true}\'')
    p.add_argument("--flax-kwargs", metavar="JSON",
                   help='keyword arguments of the Flax model\'s __call__, a JSON object passed as it is, except '
                        '"rngs": a seed ({"rngs": 0}) becomes nnx.Rngs(0), an object of streams ({"rngs": '
                        '{"params": 0, "dropout": 1}}) nnx.Rngs(params=0, dropout=1)')
    p.add_argument("--map", metavar="JSON_OR_FILE",
                   help='pair layers or parameters yourself: a JSON object, or a file holding one, {"torch layer '
                        'or parameter": "flax.path", ...}; a value may be ["flax.path", LAYOUT] for a parameter, '
                        'LAYOUT T (transposed), conv (torch (O, I, *k) ⇄ Flax (*k, I, O)) or same. Whatever it '
                        'leaves out is paired automatically')
    p.add_argument("--kinds", metavar="FILE.py", action="append", default=[],
                   help="a Python file that registers your own layers' kinds (parity.porting.register_kind(Kind("
                        "...))), imported after the models are loaded and before they are compared; it may import "
                        "the model files by name (repeat for several files)")
    p.add_argument("--rule", choices=RULES,
                   help="how each tensor is judged: scaled (the default in float32): no worse than 8x torch "
                        "float32's own error against a float64 run of the torch model; fixed (the default, and "
                        "the only rule, in float64): the rtol and atol of parity/tolerances.py")
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
    add_cache(p)
    p.set_defaults(run=run)


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


def _no_duplicates(flag: str):
    def hook(pairs):
        seen = set()
        for k, _ in pairs:
            if k in seen:
                raise UsageError(f"{flag}: key {json.dumps(k)} is given twice")
            seen.add(k)
        return dict(pairs)
    return hook


def _json_object(text: str, flag: str, source: str | None = None) -> dict:
    """`text` as a JSON object, else UsageError naming `flag` (and `source`, the file it came from)."""
    where = f"{flag} {source}" if source else flag
    try:
        obj = json.loads(text, object_pairs_hook=_no_duplicates(where))
    except json.JSONDecodeError as e:
        raise UsageError(f"{where}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
    except RecursionError:
        raise UsageError(f"{where}: not valid JSON (nested too deeply)") from None
    if not isinstance(obj, dict):
        raise UsageError(f"{where}: expected a JSON object {{...}}, got {type(obj).__name__}")
    return obj


def _rngs_problem(value) -> str | None:
    """Why `value` cannot spell an nnx.Rngs (parity.porting.load.is_rngs_spec, repeated here so that
    the check needs no framework), or None."""
    def seed(v):
        return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**63
    if seed(value):
        return None
    if isinstance(value, dict) and value and all(isinstance(k, str) and k and seed(v) for k, v in value.items()):
        return None
    return (f"\"rngs\" must be a seed, an integer in [0, 2**63) ({{\"rngs\": 0}} gives nnx.Rngs(0)), or an object "
            f"of streams and their seeds ({{\"rngs\": {{\"params\": 0, \"dropout\": 1}}}}); got {json.dumps(value)}")


def _call_kwargs(text: str | None, flag: str, side: str) -> dict:
    """--torch-kwargs or --flax-kwargs: a JSON object of keyword arguments (checked up front)."""
    if text is None:
        return {}
    obj = _json_object(text, flag)
    for k in obj:
        if not k.isidentifier():
            raise UsageError(f"{flag}: key {json.dumps(k)} is not a Python keyword argument name")
    if side == "flax" and obj.get("rngs") is not None and (problem := _rngs_problem(obj["rngs"])):
        raise UsageError(f"{flag}: {problem}")
    return obj


def _map(text: str | None) -> dict | None:
    """--map: a JSON object (or a file holding one) {torch name: Flax path or [Flax path, layout]}, as
    the `weights=` mapping of parity.porting.compare; each entry checked here, before any work."""
    if text is None:
        return None
    source = None
    if text.lstrip()[:1] not in ("{", "[", '"') and Path(text).is_file():
        try:
            body = Path(text).read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"--map {text}: cannot read it ({type(e).__name__}: {e})") from None
        text, source = body, text
    elif text.lstrip()[:1] not in ("{", "["):
        try:
            json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            raise UsageError(f"--map {text}: neither a JSON object nor a file that exists") from None
    obj = _json_object(text, "--map", source)
    where = f"--map {source}" if source else "--map"
    if not obj:
        raise UsageError(f"{where}: an empty object pairs nothing; give {{\"torch name\": \"flax.path\", ...}} or "
                         f"leave --map out")
    out = {}
    for k, v in obj.items():
        entry = f"{where}: entry {json.dumps(k)}"
        if not k.strip():
            raise UsageError(f"{entry}: the torch layer or parameter name is empty")
        if isinstance(v, str) and v.strip():
            out[k] = v
        elif isinstance(v, list) and len(v) == 2 and isinstance(v[0], str) and v[0].strip() \
                and isinstance(v[1], str) and v[1] in MAP_LAYOUTS:
            out[k] = (v[0], v[1])
        elif isinstance(v, list) and len(v) == 2 and isinstance(v[0], str) and v[0].strip():
            raise UsageError(f"{entry}: layout {json.dumps(v[1])} is none of {', '.join(MAP_LAYOUTS)}")
        else:
            raise UsageError(f"{entry}: expected a Flax path (\"fc.kernel\") or [Flax path, layout] with layout "
                             f"{', '.join(MAP_LAYOUTS)}; got {json.dumps(v)}")
    return out


def _kinds_files(paths: list[str]) -> list[str]:
    """--kinds: Python files that exist (checked up front; importing them comes later)."""
    for path in paths:
        p = Path(path)
        if not p.exists():
            raise UsageError(f"--kinds {path}: no such file")
        if not p.is_file() or p.suffix != ".py":
            raise UsageError(f"--kinds {path}: expected a Python file (.py)")
    return list(dict.fromkeys(paths))


def _check_rule(args, dtypes) -> None:
    if args.rule == "scaled" and dtypes != ["float32"]:
        raise UsageError(f"--rule scaled judges float32 against a float64 run of the torch model; --dtype "
                         f"{' '.join(dtypes)} includes {', '.join(d for d in dtypes if d != 'float32')}, which only "
                         f"the fixed rule judges: leave --rule out (each dtype gets its own default) or compare "
                         f"float32 alone")


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


# What the comparer advises in its Python spelling, and the same advice on the command line. Each key
# is text of parity/porting/ (tests check that it is: tests/test_compare_hostile.py for CLI_SPELLING,
# tests/test_compare_cli_reach.py for PAIRING_SPELLING, text of parity/porting/pairing.py).
CLI_SPELLING = {
    "pass train=True to compare training-mode passes": "pass --train to compare training-mode passes",
    "; pass weights={torch_name: flax_path, ...} to pair them yourself":
        "; pass --map '{\"torch_name\": \"flax.path\", ...}' to pair them yourself",
    "pass flax_kwargs={'rngs': nnx.Rngs(0)}": "pass --flax-kwargs '{\"rngs\": 0}' (it becomes nnx.Rngs(0))",
    "pass them in torch_kwargs": "pass them with --torch-kwargs JSON (--args holds constructor arguments)",
    "pass them in flax_kwargs": "pass them with --flax-kwargs JSON (--args holds constructor arguments)",
    "(taken from layout='nhwc'; the data cannot tell)": "(taken from --layout nhwc; the data cannot tell)",
    "(taken from layout='nchw'; the data cannot tell)": "(taken from --layout nchw; the data cannot tell)",
}
PAIRING_SPELLING = {
    "(parity.porting.register_kind), or pass weights= naming its parameters":
        "(parity.porting.register_kind, in a file given to --kinds), or pass --map naming its parameters",
}


def cli_spelling(text: str) -> str:
    """`text` with the comparer's Python-API advice in its command-line spelling."""
    for python, cli in {**CLI_SPELLING, **PAIRING_SPELLING}.items():
        text = text.replace(python, cli)
    return text


def _verdict(summary: str) -> str:
    """The summary line with its verdict word coloured."""
    text = esc(summary)
    for word, style in ((": SAME —", "green"), (": DIFFERENT —", "bold red")):
        text = text.replace(word, f": [{style}]{word[2:-2]}[/] —", 1)
    return text


def run(args, out, err) -> int:
    shapes = [input_shape(s) for s in args.input_shape]
    _check_numbers(args)
    dtypes = list(dict.fromkeys(args.dtype))
    _check_input_size(args.input_shape, shapes, args.input_int, dtypes)
    t_args, f_args = _args(args.args)
    if f_args.get("rngs") is not None and (problem := _rngs_problem(f_args["rngs"])):
        raise UsageError(f"--args: the Flax side's {problem}")
    t_call = _call_kwargs(args.torch_kwargs, "--torch-kwargs", "torch")
    f_call = _call_kwargs(args.flax_kwargs, "--flax-kwargs", "flax")
    mapping = _map(args.map)
    if mapping is not None and args.steps and args.weights == "flax->torch":
        raise UsageError("--map with --steps converts the weights torch->flax only (compare_training takes no "
                         "direction with a mapping): leave --weights out, or --steps")
    kinds_files = _kinds_files(args.kinds)
    _check_rule(args, dtypes)
    check_device(args.device)
    json_path = writable_file(args.json, "--json") if args.json is not None else None
    cache_dir = common.cache_dir(args, err)

    gc_pause = _Collections()  # off while the frameworks and the model files are imported
    try:
        from parity.porting import PortingError, compare, compare_training, load
        with parallel.compilation_cache(cache_dir):
            notes: list[str] = []
            try:
                t_obj, f_obj = load.load_target(args.torch_target), load.load_target(args.flax_target)
                t_model = load.build(t_obj, t_args, "torch", notes, load.rel_target(args.torch_target))
                f_model = load.build(f_obj, f_args, "flax", notes, load.rel_target(args.flax_target),
                                     abstract=args.weights == "torch->flax")
            except PortingError as e:
                raise UsageError(cli_spelling(str(e))) from None
            with load.kinds_scope():  # the kinds files' registrations end with the run
                notes += _load_kinds(kinds_files, load, PortingError)
                gc_pause.resume()
                if args.steps:
                    _check_trainable(t_model, f_model, args)
                for side, kw in (("torch", t_call), ("flax", f_call)):
                    if kw:
                        notes.append(f"{side}: called with {load.call_text(kw, side)} besides the inputs")
                for n in notes:
                    out.print(esc(n), highlight=False)
                with _user_errors(kinds_files), _torch_threads(shapes, t_model):
                    return _compare_all(args, out, err, shapes, dtypes, t_model, f_model, t_call, f_call, mapping,
                                        notes, json_path, load, compare, compare_training, PortingError)
    finally:
        gc_pause.resume()


class _Collections:
    """The garbage collector off from here until `resume()`, which first freezes (gc.freeze(), once
    per process) what exists then. Importing torch, JAX and Flax ran 700-odd collections, 0.45-0.5 s
    of a 3 s import, that found nothing to free; and the frameworks' and the model files' millions of
    objects live as long as the process, so no later collection walks them again, nor the
    interpreter's exit, which spent a second collecting them (docs/measurements.md; parity/parallel.py
    freezes its workers' imports the same way)."""

    def __init__(self):
        self.enabled = gc.isenabled()
        gc.disable()

    def resume(self) -> None:
        global _FROZEN
        if not _FROZEN:
            gc.freeze()
            _FROZEN = True
        if self.enabled:
            gc.enable()
            self.enabled = False


@contextlib.contextmanager
def _torch_threads(shapes, t_model):
    """torch on one thread for a small model (SMALL_INPUT_ELEMENTS, SMALL_PARAMETERS), its own thread
    count afterwards."""
    import torch
    small = sum(math.prod(s) for s in shapes) <= SMALL_INPUT_ELEMENTS and \
        sum(p.numel() for p in t_model.parameters()) <= SMALL_PARAMETERS
    threads = torch.get_num_threads()
    if small and threads > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


def _load_kinds(files: list[str], load, PortingError) -> list[str]:
    """Import each --kinds file afresh (its register_kind calls run in this run); one note per file
    naming the kinds it registered. A file that registers none is bad input, unless a model file had
    imported it already (its kinds were registered then)."""
    notes = []
    for path in files:
        try:
            new, already = load.load_kinds_file(path)
        except PortingError as e:
            raise UsageError(f"--kinds {e}") from None
        if not new and not already:
            raise UsageError(f"--kinds {path}: registered no kind; call parity.porting.register_kind(Kind(...)) in "
                             f"it (README.md, \"Layer kinds\")")

        def classes(cs):
            return "/".join(c.__name__ for c in cs)
        shown = ", ".join(f"{k.name} ({classes(k.torch)} ⇄ {classes(k.flax)})" for k in new) or \
            "nothing new (a model file imported it already)"
        notes.append(f"kinds: {os.path.relpath(path)} registered {shown}")
    return notes


@contextlib.contextmanager
def _user_errors(files: list[str]):
    """An exception raised inside a --kinds file's code while comparing (a conversion, a notes
    function) → UsageError naming the file and its line, as one raised while importing it would."""
    keys = {str(Path(f).resolve()): f for f in files}
    try:
        yield
    except (UsageError, KeyboardInterrupt):
        raise
    except Exception as e:  # noqa: BLE001 - only those the kinds file raised are turned into bad input
        seen, err, found = set(), e, None
        while err is not None and id(err) not in seen and found is None:
            seen.add(id(err))
            tb, where = err.__traceback__, None
            while tb is not None:
                if tb.tb_frame.f_code.co_filename in keys:
                    where = (keys[tb.tb_frame.f_code.co_filename], tb.tb_lineno, tb.tb_frame.f_code.co_name)
                tb = tb.tb_next
            found = (where, err) if where else None
            err = err.__cause__ or err.__context__
        if found is None:
            raise
        (path, line, fn), cause = found
        text = str(cause).strip().splitlines()
        raise UsageError(f"--kinds {path}: its {fn}() failed (line {line}) while comparing: "
                         f"{type(cause).__name__}: {text[0] if text else ''}") from None


def _compare_all(args, out, err, shapes, dtypes, t_model, f_model, t_call, f_call, mapping, notes, json_path,
                 load, compare, compare_training, PortingError) -> int:
    from parity.porting.random_data import random_inputs

    def t_kwargs():  # each comparison its own copies: a model may change what it is given
        return copy.deepcopy(t_call)

    def f_kwargs():
        return {k: load.make_rngs(v) if k == "rngs" and v is not None else copy.deepcopy(v)
                for k, v in f_call.items()}
    weights = mapping if mapping is not None else args.weights
    shown: set[str] = set(notes)  # every note printed in this run
    reports, trainings, ok = [], [], True
    try:
        for dtype in dtypes:
            x = random_inputs(shapes, args.input_int, np.random.default_rng(args.seed), dtype)
            r = compare(t_model, f_model, x, dtype=dtype, device=args.device, mode=args.precision,
                        weights=weights, direction=args.weights, layout=args.layout, train=args.train,
                        torch_kwargs=t_kwargs(), flax_kwargs=f_kwargs(), rule=args.rule)
            printed = _printed_notes(r, shown)
            r.notes = [cli_spelling(n) for n in r.notes]
            reports.append(r)
            out.print(r.table())
            for line in [ln for ln in r.lines() if not ln.startswith("note: ")] + printed:
                out.print(esc(line), highlight=False, soft_wrap=True)
            out.print(_verdict(cli_spelling(r.summary())), highlight=False, soft_wrap=True)
            ok &= r.passed
            if args.steps:
                t = _train(t_model, f_model, shapes, args, dtype, r, err, compare_training,
                           weights=weights, torch_kwargs=t_kwargs(), flax_kwargs=f_kwargs())
                t.notes = [cli_spelling(n) for n in t.notes]
                trainings.append(t)
                out.print(t.table(every=max(1, args.steps // 20)))
                for n in t.notes:
                    if n not in shown:
                        shown.add(n)
                        out.print(esc(f"note: {n}"), highlight=False, soft_wrap=True)
                out.print(_verdict(t.summary()), highlight=False, soft_wrap=True)
                ok &= t.passed
    except PortingError as e:
        text = str(e)
        if mapping is not None and text.startswith("weights mapping: "):
            text = "--map: " + text.removeprefix("weights mapping: ")
        raise UsageError(cli_spelling(text)) from None
    if json_path:
        from parity.report import environment
        write_json_atomic({"environment": environment(), "passed": ok, "models": notes,
                           "compare": [r.to_dict() for r in reports],  # each names its rule
                           "training": [t.to_dict() for t in trainings]}, json_path)
        out.print(f"wrote {esc(json_path)}", highlight=False)
    return EXIT_OK if ok else EXIT_FAIL


def _layers_text(labels: list[str]) -> str:
    if len(labels) <= NOTE_LAYERS_SHOWN:
        return ", ".join(labels)
    return ", ".join(labels[:NOTE_LAYERS_SHOWN - 1]) + f" and {len(labels) - NOTE_LAYERS_SHOWN + 1} more layers"


def _printed_notes(r, shown: set) -> list[str]:
    """The report's notes as this run prints them ("note: ..." lines, in the CLI's spelling): none
    printed before in the run; one line per group of paired layers that share the same settings that
    differ; the first divergent layer's settings only in the summary, which lists them."""
    per_row = {}  # the line the comparer writes for a row's notes → (its label, its notes)
    for row in r.rows:
        if row.call == 0 and row.notes and row.torch is not None and row.flax is not None:
            label = f"torch `{row.torch.name}` ⇄ Flax `{row.flax.name}`"
            per_row[f"{label}: " + "; ".join(row.notes)] = (label, row.index, list(row.notes))
    said = r.first_divergence.message if r.first_divergence is not None else ""
    first = r.first_divergence.row if r.first_divergence is not None else None
    layers: dict[str, list[str]] = {}  # each setting note → the layers it applies to, in execution order
    for label, index, row_notes in per_row.values():
        for n in row_notes:
            if not (index == first and n in said):
                layers.setdefault(n, []).append(label)
    groups: dict[tuple, list[str]] = {}  # the same layers → their notes, one line
    for n, labels in layers.items():
        groups.setdefault(tuple(labels), []).append(n)
    grouped = [f"{_layers_text(list(labels))}: " + "; ".join(ns) for labels, ns in groups.items()]
    lines, placed = [], False
    for n in r.notes:
        if n in per_row:
            if not placed:
                lines += grouped
                placed = True
            continue
        lines.append(n)
    out = []
    for n in lines:
        n = cli_spelling(n)
        if n not in shown:
            shown.add(n)
            out.append(f"note: {n}")
    return out


def _check_trainable(t_model, f_model, args) -> None:
    """--steps needs parameters on both sides (checked before anything runs)."""
    from flax import nnx
    import jax
    for side, model, has in (("torch", t_model, next(t_model.parameters(), None) is not None),
                             ("Flax", f_model, bool(jax.tree.leaves(nnx.state(f_model, nnx.Param))))):
        if not has:
            raise UsageError(f"--steps {args.steps}: the {side} model ({type(model).__name__}) has no parameters, "
                             f"so there is nothing to train; leave --steps out")


def _train(t_model, f_model, shapes, args, dtype, report, err, compare_training, weights, torch_kwargs,
           flax_kwargs):
    """compare_training on `--steps` random batches (parity/porting/random_data.py, made as they are
    used): MSE to random targets of the output's shape, plain SGD (torch.optim.SGD ⇔ optax.sgd) at
    --lr; a progress bar on stderr."""
    import optax
    import torch

    from parity.porting import PortingError
    from parity.porting.random_data import RandomBatches

    if len(report.outputs) != 1:
        raise PortingError(f"--steps {args.steps}: the models return {len(report.outputs)} outputs; training "
                           f"compares models with one output")
    batches = RandomBatches(shapes, args.input_int, args.seed, dtype, tuple(report.outputs[0].shape), args.steps)
    with progress(err) as prog:
        task = prog.add_task(f"training {args.steps} steps, {dtype}", total=args.steps)
        return compare_training(t_model, f_model, batches, lambda ps: torch.optim.SGD(ps, lr=args.lr),
                                optax.sgd(args.lr), args.steps, loss="mse", dtype=dtype, device=args.device,
                                mode=args.precision, weights=weights, layout=args.layout, train=args.train,
                                torch_kwargs=torch_kwargs, flax_kwargs=flax_kwargs,
                                on_step=lambda k: prog.update(task, completed=k))
