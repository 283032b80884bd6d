"""The `parity` command: list, check and show concepts (and, later, train and bench)."""
from __future__ import annotations

import argparse
import inspect
import json
import sys

from rich.columns import Columns
from rich.console import Console
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.syntax import Syntax

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse exits 2 on usage errors already; keep its message short
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="parity", description="Twin JAX/Flax and PyTorch implementations, compared.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    ls = sub.add_parser("list", help="list the concepts")
    ls.add_argument("--json", action="store_true", help="print a JSON array instead of a table")

    ck = sub.add_parser("check", help="run concepts in both frameworks and compare")
    ck.add_argument("names", nargs="*", metavar="NAME", help="concepts or groups (default: all)")
    ck.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ck.add_argument("--dtype", choices=("float32", "float64"), nargs="+", default=["float32", "float64"],
                    help="one or both (default: both)")
    ck.add_argument("--precision", choices=("strict", "defaults"), default="strict",
                    help="strict: TF32 off in both; defaults: each framework's own (matters on GPU)")
    ck.add_argument("--json", metavar="PATH", help="also write every result to this JSON file")

    sh = sub.add_parser("show", help="the JAX and PyTorch source of a concept side by side, then its result")
    sh.add_argument("name", metavar="NAME")
    sh.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    sh.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    au = sub.add_parser("audit", help="parity in both precision modes, cross-device and determinism report")
    au.add_argument("names", nargs="*", metavar="NAME", help="concepts or groups (default: all)")
    au.add_argument("--device", choices=("cpu", "cuda"), default="cuda")
    au.add_argument("--deterministic", action="store_true",
                    help="turn on XLA's deterministic ops and torch.use_deterministic_algorithms")
    au.add_argument("--out", metavar="DIR", default="parity/reports",
                    help="writes audit-<device>[-deterministic].json and .md here")
    tr = sub.add_parser("train", help="train a model in both frameworks from the same weights and batches")
    tr.add_argument("--model", choices=("linreg", "softmax", "mlp", "cnn"), default="mlp")
    tr.add_argument("--optimizer", choices=("sgd", "adam", "adamw"), default="adam")
    tr.add_argument("--epochs", type=int, help="default 10 (linreg: 3)")
    tr.add_argument("--framework", choices=("jax", "torch", "both"), default="both")
    tr.add_argument("--data", metavar="digits|mnist:PATH|synthetic|synthetic-linear",
                    help="default digits (linreg: synthetic-linear); nothing is downloaded")
    tr.add_argument("--batch-size", type=int, help="default 64 (linreg: 10)")
    tr.add_argument("--lr", type=float, help="default: sgd 0.05, adam/adamw 1e-3 (linreg: 0.03, 0.1)")
    tr.add_argument("--momentum", type=float, default=0.0, help="SGD momentum")
    tr.add_argument("--weight-decay", type=float, help="default: torch's (0; AdamW 1e-2)")
    tr.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    tr.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    tr.add_argument("--seed", type=int, default=0, help="weights, data split and batch order")
    tr.add_argument("--torch-threads", type=int, default=1, help="torch's CPU threads while training "
                    "(default 1: small steps gain nothing from more; 0 keeps torch's own setting)")
    tr.add_argument("--log-dir", default="runs", help="writes <log-dir>/<name>/{jax,torch}, loss.png")
    tr.add_argument("--name", help="run name (default: model-optimizer-data-dtype)")
    from benchmarks.modes import MODES
    be = sub.add_parser("bench", help="time workloads: JAX jit vs op by op vs torch eager vs torch.compile")
    be.add_argument("names", nargs="*", metavar="NAME",
                    help="workloads or prefixes such as 'train' (default: a smoke subset; all with --full)")
    be.add_argument("--modes", nargs="+", choices=list(MODES), metavar="MODE",
                    help=f"default: every mode that applies ({', '.join(MODES)})")
    be.add_argument("--sizes", nargs="+", type=int, metavar="N", help="sizes instead of each workload's sweep")
    be.add_argument("--full", action="store_true", help="full size sweeps (default: a few small sizes)")
    be.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    be.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    be.add_argument("--precision", choices=("strict", "defaults"), default="strict")
    be.add_argument("--repeats", type=int, default=25, help="steady-state samples per measurement")
    be.add_argument("--max-time", type=float, default=5.0, help="seconds of sampling per measurement at most")
    be.add_argument("--repeat-runs", type=int, default=1, help="run everything N times; reports how medians repeat")
    be.add_argument("--out", metavar="DIR", default="bench-out",
                    help="writes bench-<device>.json, .md and <device>-<workload>.png here")
    be.add_argument("--list", action="store_true", help="list the workloads and exit")
    return p


def _usage_error(console: Console, msg: str) -> int:
    console.print(f"[red]parity: error:[/] {msg}")
    return EXIT_USAGE


def _concepts_on_device(args, err: Console):
    """The concepts named in args (or an exit code for a usage error), with the device checked."""
    from parity import precision, registry
    try:
        concepts = registry.select(args.names)
    except registry.UnknownConcept as e:
        return _usage_error(err, str(e))
    if args.device == "cuda" and not precision.cuda_available():
        return _usage_error(err, "--device cuda: CUDA is not available to both JAX and PyTorch here")
    return concepts


def _progress(err: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=err, transient=True)


def cmd_list(args, out: Console) -> int:
    from parity.registry import all_concepts
    concepts = all_concepts()
    if args.json:
        print(json.dumps([{"name": c.name, "group": c.group, "summary": c.summary,
                           "differentiable": c.differentiable, "covers": list(c.covers)}
                          for c in concepts], indent=2))
        return EXIT_OK
    for c in concepts:
        out.print(f"{c.name:30s} {c.group:12s} {c.summary}", highlight=False, markup=False)
    return EXIT_OK


def cmd_check(args, out: Console, err: Console) -> int:
    from parity import report, runner
    concepts = _concepts_on_device(args, err)
    if isinstance(concepts, int):
        return concepts
    dtypes = list(dict.fromkeys(args.dtype))  # in the order given, once each
    results = []
    with _progress(err) as prog:
        task = prog.add_task("checking", total=len(concepts) * len(dtypes))
        for dtype in dtypes:
            for c in concepts:
                prog.update(task, description=f"checking {c.name} ({dtype})")
                results.append(runner.run_concept(c, dtype, args.device, args.precision))
                prog.advance(task)
    out.print(report.results_table(results, title=f"parity check — {' and '.join(dtypes)} on {args.device}, "
                                                  f"precision {args.precision}"))
    n_fail = sum(not r.passed for r in results)
    for line in report.failure_lines(results):
        out.print(f"[red]FAIL[/] {line}", highlight=False)
    out.print(f"{len(results) - n_fail} passed, {n_fail} failed", highlight=False)
    if args.json:
        report.write_json_atomic(report.results_json(results), args.json)
        out.print(f"wrote {args.json}", highlight=False)
    return EXIT_FAIL if n_fail else EXIT_OK


def _source(module_root, dotted: str) -> str:
    import importlib
    mod_name, _, attr = dotted.rpartition(".")
    mod = importlib.import_module(f"{module_root}.{mod_name}")
    obj = getattr(mod, attr)
    obj = getattr(obj, "__wrapped__", obj)  # jax.jit keeps the Python function here
    return inspect.getsource(obj)


def cmd_show(args, out: Console, err: Console) -> int:
    from parity import registry, report, runner
    try:
        c = registry.get(args.name)
    except registry.UnknownConcept as e:
        return _usage_error(err, str(e))
    out.print(f"[bold]{c.name}[/] ({c.group}): {c.summary}")
    for name in c.covers:
        panels = [Panel(Syntax(_source(root, name), "python", theme="ansi_dark", line_numbers=False),
                        title=f"{root}.{name}", expand=True) for root in ("jax_impl", "torch_impl")]
        out.print(Columns(panels, equal=True, expand=True))
    r = runner.run_concept(c, args.dtype, args.device)
    out.print(report.results_table([r]))
    for line in report.failure_lines([r]):
        out.print(f"[red]FAIL[/] {line}", highlight=False)
    return EXIT_OK if r.passed else EXIT_FAIL


def cmd_audit(args, out: Console, err: Console) -> int:
    from pathlib import Path

    from parity import audit, precision, report
    if args.deterministic:
        precision.deterministic()
    concepts = _concepts_on_device(args, err)
    if isinstance(concepts, int):
        return concepts
    with _progress(err) as prog:
        task = prog.add_task("auditing", total=len(concepts))
        a = audit.run_audit(concepts, args.device, progress=lambda c: prog.advance(task))
    stem = Path(args.out) / f"audit-{args.device}{'-deterministic' if args.deterministic else ''}"
    report.write_json_atomic(a, stem.with_suffix(".json"))
    md = audit.markdown(a)
    report.write_text_atomic(md, stem.with_suffix(".md"))
    out.print(md, markup=False, highlight=False)
    out.print(f"wrote {stem}.json and {stem}.md", highlight=False)
    ok = all(r["passed"] for r in a["parity"] if r["precision"] == "strict")
    return EXIT_OK if ok else EXIT_FAIL


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    # Piped output (CI logs, files) gets a wide page instead of rich's 80-column fallback.
    out = Console() if sys.stdout.isatty() else Console(width=200)  # wide tables stay whole in files
    err = Console(stderr=True)
    if args.command == "list":
        return cmd_list(args, out)
    if args.command == "check":
        return cmd_check(args, out, err)
    if args.command == "show":
        return cmd_show(args, out, err)
    if args.command == "audit":
        return cmd_audit(args, out, err)
    if args.command == "train":
        from parity.train_cmd import cmd_train
        return cmd_train(args, out, err)
    if args.command == "bench":
        from parity.bench import main as cmd_bench
        return cmd_bench(args, out, err)
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
