"""`parity show NAME`: the JAX and PyTorch source of one concept side by side, then its result."""
from __future__ import annotations

import importlib
import inspect

from rich.columns import Columns
from rich.panel import Panel
from rich.syntax import Syntax

from parity import precision, registry, report, runner
from parity.commands.common import add_device, check_device
from parity.concept import TWINS
from parity.console import EXIT_FAIL, EXIT_OK, UsageError, esc


def add_parser(sub) -> None:
    p = sub.add_parser("show", help="the JAX and PyTorch source of a concept side by side, then its result")
    p.add_argument("name", metavar="NAME", help="one concept (parity list shows them)")
    add_device(p)
    p.add_argument("--dtype", choices=precision.DTYPES, default="float32")
    p.set_defaults(run=run)


def source(package: str, dotted: str) -> str:
    """The source of `package.dotted` (a leaf function or class; jitted functions unwrapped)."""
    module, _, attr = dotted.rpartition(".")
    obj = getattr(importlib.import_module(f"{package}.{module}"), attr)
    return inspect.getsource(getattr(obj, "__wrapped__", obj))  # jax.jit keeps the function here


def run(args, out, err) -> int:
    if args.name in registry.groups():
        raise UsageError(f"show takes one concept; {args.name!r} is a group "
                         f"(its concepts: {', '.join(c.name for c in registry.select([args.name]))})")
    try:
        c = registry.get(args.name)
    except registry.UnknownConcept as e:
        raise UsageError(str(e)) from None
    check_device(args.device)
    out.print(f"[bold]{esc(c.name)}[/] ({esc(c.group)}): {esc(c.summary)}")
    for name in c.covers:
        panels = [Panel(Syntax(source(pkg, name), "python", theme="ansi_dark", line_numbers=False),
                        title=esc(f"{pkg}.{name}"), expand=True) for pkg in TWINS]
        out.print(Columns(panels, equal=True, expand=True))
    r = runner.run_concept(c, args.dtype, args.device)
    out.print(report.results_table([r]))
    for line in report.failure_lines([r]):
        out.print(f"[red]FAIL[/] {esc(line)}", highlight=False)
    return EXIT_OK if r.passed else EXIT_FAIL
