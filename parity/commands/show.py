"""`parity show NAME`: the JAX and PyTorch source of every function one concept runs, then its result.

The functions are the concept's `covers` and every project-local helper they reach
(`parity.sources`, the same discovery as the HTML report's concept pages): JAX on the left and
PyTorch on the right when the terminal is wide enough, one above the other otherwise. Piped
output is written without rich's padding, so no line ends in spaces.
"""
from __future__ import annotations

import importlib
import inspect
import re

from rich.console import Group
from rich.panel import Panel
from rich.rule import Rule
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from parity import names
from parity.commands.common import add_device, check_device
from parity.console import EXIT_FAIL, EXIT_OK, UsageError, esc
from parity import sources

_TAIL = re.compile(r"(?:[ \t]|\x1b\[[0-9;]*m)+$")
SIDE_BY_SIDE_MIN = 140  # columns: below this each side would wrap most lines of code


def add_parser(sub) -> None:
    p = sub.add_parser("show", help="the JAX and PyTorch source of every function a concept runs, side by side, "
                                    "then its result")
    p.add_argument("name", metavar="NAME", help="one concept (parity list shows them)")
    add_device(p)
    p.add_argument("--dtype", choices=names.CONCEPT_DTYPES, metavar="DTYPE",
                   help="one the concept declares (`parity list`; default: float32, or its first)")
    p.add_argument("--layout", choices=("auto", "side", "stacked"), default="auto",
                   help=f"side by side, stacked, or auto: side by side from {SIDE_BY_SIDE_MIN} columns")
    p.set_defaults(run=run)


def source(package: str, dotted: str) -> str:
    """The source of `package.dotted` (a leaf function or class; jitted functions unwrapped)."""
    module, _, attr = dotted.rpartition(".")
    obj = getattr(importlib.import_module(f"{package}.{module}"), attr)
    return inspect.getsource(sources.unwrap(obj))


def _panel(src: sources.Source, note: str = "") -> Panel:
    code = Syntax(src.text.rstrip("\n"), "python", theme="ansi_dark", line_numbers=True, start_line=src.line,
                  word_wrap=True, background_color="default")
    title = f"{sources.LABELS[src.package]}: {src.name}"
    return Panel(code, title=Text(title), subtitle=Text(f"{src.path}:{src.line}{' · ' + note if note else ''}"),
                 title_align="left", subtitle_align="right", expand=True)


def renderables(concept, side_by_side: bool) -> list:
    """What `parity show` prints for the code: one entry per row of the listing, headed by its kind."""
    out: list = []
    display = sources.display_rows(sources.rows(concept))
    for i, row in enumerate(display):
        if i == 0 or row["kind"] != display[i - 1]["kind"]:
            out.append(Rule(Text(sources.KINDS[row["kind"]]), style="dim", align="left"))
        if row["kind"] == "shared":
            callers = " and ".join(sources.LABELS[c] for c in row["callers"])
            out.append(_panel(row["shared"], f"called by {callers}"))
            continue
        left = [_panel(s) for s in row["left"]] or [Text(row.get("left_empty", ""), style="dim")]
        right = [_panel(s) for s in row["right"]] or [Text(row.get("right_empty", ""), style="dim")]
        if side_by_side:
            grid = Table.grid(expand=True, padding=(0, 1))
            grid.add_column(ratio=1)
            grid.add_column(ratio=1)
            grid.add_row(Group(*left), Group(*right))
            out.append(grid)
        else:
            out += left + right
    return out


def _unpadded(line: str) -> str:
    """`line` without trailing blanks, also when colour codes (FORCE_COLOR) sit among them."""
    m = _TAIL.search(line)
    if not m:
        return line
    return line[:m.start()] + ("\x1b[0m" if "\x1b" in m.group(0) else "")


def run(args, out, err) -> int:
    from parity import registry, report, runner  # both frameworks: only once the command runs
    if args.name in registry.groups():
        raise UsageError(f"show takes one concept; {args.name!r} is a group "
                         f"(its concepts: {', '.join(c.name for c in registry.select([args.name]))})")
    try:
        c = registry.get(args.name)
    except registry.UnknownConcept as e:
        raise UsageError(str(e)) from None
    check_device(args.device)
    side = args.layout == "side" or (args.layout == "auto" and out.width >= SIDE_BY_SIDE_MIN)
    dtype = args.dtype or ("float32" if "float32" in c.dtypes else c.dtypes[0])
    if dtype not in c.dtypes:
        raise UsageError(f"--dtype {dtype}: {c.name} runs in {', '.join(c.dtypes)}")
    r = runner.run_concept(c, dtype, args.device)
    rows = sources.rows(c)
    items = [Text.from_markup(f"[bold]{esc(c.name)}[/] ({esc(c.group)}): {esc(c.summary)}"),
             Text(f"{sum(len(x.sources()) for x in rows)} functions and classes run: the covers "
                  f"({', '.join(c.covers)}) and every project-local helper they reach; "
                  f"{'JAX left, PyTorch right' if side else 'JAX first, then PyTorch'}", style="dim"),
             *renderables(c, side), report.results_table([r])]
    items += [Text.from_markup(f"[red]FAIL[/] {esc(line)}") for line in report.failure_lines([r])]
    if out.is_terminal:
        for item in items:
            out.print(item)
    else:  # piped: rich pads every line to the page width; write the lines without that padding
        with out.capture() as cap:
            for item in items:
                out.print(item)
        out.file.write("".join(_unpadded(line) + "\n" for line in cap.get().splitlines()))
        out.file.flush()
    return EXIT_OK if r.passed else EXIT_FAIL
