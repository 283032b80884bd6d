"""Turns runner results into tables, JSON records and environment records (files: parity.console)."""
from __future__ import annotations

import json
import math
import platform
from pathlib import Path

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions
from rich.table import Table
from rich.text import Text

from parity.runner import Result


def environment() -> dict:
    """Versions and devices, recorded beside every result file."""
    import flax
    import jax
    import optax
    import torch

    env = {
        "python": platform.python_version(), "platform": platform.platform(),
        "cpu": _cpu_model(), "jax": jax.__version__, "flax": flax.__version__,
        "optax": optax.__version__, "torch": torch.__version__,
        "jax_devices": [str(d) for d in jax.devices()],
        "torch_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        env["cuda_device"] = torch.cuda.get_device_name(0)
        env["torch_cuda"] = torch.version.cuda
    return env


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def results_json(results: list[Result], complete: bool = True) -> dict:
    """The JSON record of a check; `complete` is False for a run cut short (Ctrl-C)."""
    return {"environment": environment(), "complete": complete, "results": [r.to_dict() for r in results],
            "passed": sum(r.passed for r in results), "failed": sum(not r.passed for r in results)}


def _e(x: float) -> str:
    return "—" if x == 0 else f"{x:.1e}"


def _cells(r: Result, which: str) -> tuple[str, str]:
    """The abs and rel cells of `which` ("out" or "grad"): "—" bitwise equal, "n/a" nothing compared;
    integer outputs, compared exactly, show "equal" or "N differ" instead of an error size."""
    n = getattr(r, f"n_{which}")
    if n:
        return _e(getattr(r, f"{which}_abs")), _e(getattr(r, f"{which}_rel"))
    if which == "out" and r.exact_out:
        return ("equal" if not r.exact_differ else f"{r.exact_differ} differ"), "n/a"
    return "n/a", "n/a"


def _tol(r: Result) -> str:
    return f"{r.rtol:.2g}/{r.atol:.2g}"


# The table's columns: header, justification, the cell of one result. Every column but the concept's
# holds numbers or short words and is never wrapped or cut (a cut "1.3e-…" loses the exponent); the
# concept's name folds onto a second line instead. Where the console is too narrow for all of them,
# `ResultsTable` leaves out, in this order, the columns whose value every row shares (said in a note
# under the table), then `cases`, `rtol/atol` and the relative errors (named in the note).
_COLUMNS = (("concept", "left", lambda r: r.concept), ("dtype", "left", lambda r: r.dtype),
            ("device", "left", lambda r: r.device), ("out abs", "right", lambda r: _cells(r, "out")[0]),
            ("out rel", "right", lambda r: _cells(r, "out")[1]), ("grad abs", "right", lambda r: _cells(r, "grad")[0]),
            ("grad rel", "right", lambda r: _cells(r, "grad")[1]), ("rtol/atol", "right", _tol),
            ("cases", "right", lambda r: str(r.n_samples)),
            ("result", "center", lambda r: "PASS" if r.passed else "FAIL"))
_SHARED_FIRST = ("device", "dtype")  # left out first where every row has the same value (the note says which)
_LEAVE_OUT = ("cases", "rtol/atol", "out rel", "grad rel")  # then these, in this order
CONCEPT_MIN = 12  # the concept column's narrowest width (longer names fold onto further lines)


class ResultsTable:
    """One row per result, as a rich renderable that fits the console it is printed on.

    Numbers are never cut: every column but the concept's is as wide as its widest cell, and the
    concept's name folds. Where the width cannot hold every column, columns are left out (see
    `_COLUMNS`) and a note under the table names them; below the narrowest table, each result is one
    line of text (wrapped between words, never inside a number). Cells hold data only, so nothing in
    them is read as markup.
    """

    def __init__(self, results: list[Result], title: str = ""):
        self.results, self.title = list(results), title
        self.cells = {name: [cell(r) for r in self.results] for name, _, cell in _COLUMNS}

    def _width(self, name: str, natural: bool = True) -> int:
        """A column's width without padding: its widest cell or header; the concept's folds to
        CONCEPT_MIN unless `natural`."""
        widest = max((cell_len(c) for c in self.cells[name]), default=0)
        if name == "concept" and not natural:
            widest = min(widest, CONCEPT_MIN)
        return max(widest, cell_len(name))

    def _fits(self, names: list[str], width: int) -> bool:
        # a heavy-head box: one space of padding each side of a cell, a rule between and around columns
        return sum(self._width(n, natural=False) + 2 for n in names) + len(names) + 1 <= width

    def layout(self, width: int) -> tuple[list[str], list[str]] | None:
        """The columns shown at `width` and the notes on those left out; None: not even the narrowest
        table fits (each result is then printed as a line)."""
        names = [name for name, _, _ in _COLUMNS]
        notes: list[str] = []
        for name in _SHARED_FIRST + _LEAVE_OUT:
            if self._fits(names, width):
                return names, notes
            values = list(dict.fromkeys(self.cells[name]))
            if name in _SHARED_FIRST:
                if len(values) == 1:
                    names.remove(name)
                    notes.append(f"{name} {values[0]}")
            elif name == "rtol/atol":
                names.remove(name)
                per: dict[str, dict[str, None]] = {}
                for r, v in zip(self.results, self.cells[name]):
                    per.setdefault(r.dtype, {})[v] = None
                notes.append("rtol/atol " + ", ".join(f"{dt} {' or '.join(vs)}" for dt, vs in per.items()))
            else:
                names.remove(name)
                notes.append(name)
        return (names, notes) if self._fits(names, width) else None

    def table(self, names: list[str]) -> Table:
        t = Table(title=self.title, show_lines=False, header_style="bold")
        for name, just, _ in _COLUMNS:
            if name not in names:
                continue
            if name == "concept":
                t.add_column(name, justify=just, overflow="fold", min_width=min(self._width(name), CONCEPT_MIN))
            else:
                t.add_column(name, justify=just, no_wrap=True, min_width=self._width(name))
        for i, r in enumerate(self.results):
            row = [Text(self.cells[n][i]) for n in names if n != "result"]
            if "result" in names:
                row.append(Text("PASS", style="green") if r.passed else Text("FAIL", style="bold red"))
            t.add_row(*row)
        return t

    def lines(self) -> list[Text]:
        """Each result as one line of "header value" pairs (for consoles narrower than any table)."""
        out = [Text(self.title, style="bold")] if self.title else []
        for i, r in enumerate(self.results):
            parts = [f"{n} {self.cells[n][i]}" for n, _, _ in _COLUMNS[3:-1]]
            line = Text(f"{r.concept} {r.dtype} {r.device}: " + ", ".join(parts) + " ")
            line.append("PASS" if r.passed else "FAIL", style="green" if r.passed else "bold red")
            out.append(line)
        return out

    def __rich_console__(self, console: Console, options: ConsoleOptions):
        fit = self.layout(options.max_width)
        if fit is None:
            yield from self.lines()
            return
        names, notes = fit
        yield self.table(names)
        if notes:
            yield Text(f"left out to fit {options.max_width} columns: {'; '.join(notes)} "
                       f"(a wider terminal shows every column)", style="dim")


def results_table(results: list[Result], title: str = "") -> ResultsTable:
    """One row per result (see `ResultsTable`: the columns that fit the console it is printed on)."""
    return ResultsTable(results, title)


def failure_lines(results: list[Result]) -> list[str]:
    lines = []
    for r in results:
        if r.passed:
            continue
        if r.error:
            lines.append(f"{r.concept} [{r.dtype}, {r.device}]: raised {r.error}")
        else:
            lines += [f"{r.concept} [{r.dtype}, {r.device}]: {f}" for f in r.failures]
    return lines


# ---------------------------------------------------------------- reading results back (`report --results`)
class RecordError(ValueError):
    """A field of a results file's record has the wrong type or an impossible value: `field` is its
    path in the file (`results[3].comparisons[0].max_abs`), the message says what was expected."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field} {message}")
        self.field = field


def _shown(value) -> str:
    """`value` as JSON spells it (null, true, "yes"), cut to 40 characters."""
    try:
        text = json.dumps(value, allow_nan=True)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)


# what each field of a record must be: (test, what the message says was expected)
_TEXT = (lambda v: isinstance(v, str), "a string")
_FLAG = (lambda v: isinstance(v, bool), "true or false")
_COUNT = (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0, "a whole number >= 0")
_ERROR = (lambda v: _is_number(v) and v >= 0, "a number >= 0 (or Infinity)")
_FINITE = (lambda v: _is_number(v) and math.isfinite(v) and v >= 0, "a finite number >= 0")
_RESULT_FIELDS = {
    "concept": _TEXT, "group": _TEXT, "dtype": _TEXT, "device": _TEXT, "precision": _TEXT, "passed": _FLAG,
    "out_abs": _ERROR, "out_rel": _ERROR, "grad_abs": _ERROR, "grad_rel": _ERROR, "n_out": _COUNT,
    "n_grad": _COUNT, "exact_out": _COUNT, "exact_differ": _COUNT, "rtol": _FINITE, "atol": _FINITE,
    "tol_source": _TEXT, "n_samples": _COUNT, "seconds": _FINITE, "error": _TEXT,
    "failures": (lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v), "a list of strings"),
    "comparisons": (lambda v: isinstance(v, list), "a list of per-tensor records"),
}
_REQUIRED = ("concept", "group", "dtype", "device", "precision", "passed")  # Result's fields without a default
_COMPARISON_FIELDS = {
    "sample": _TEXT, "what": _TEXT, "max_abs": _ERROR, "max_rel": _ERROR, "ok": _FLAG, "problem": _TEXT,
    "exact": _FLAG, "differ": _COUNT,
    "shape": (lambda v: isinstance(v, list) and all(_COUNT[0](n) for n in v), "a list of whole numbers >= 0"),
}
_COMPARISON_REQUIRED = ("sample", "what", "shape", "max_abs", "max_rel", "ok")


def _checked(rec, fields: dict, required: tuple, where: str) -> dict:
    if not isinstance(rec, dict):
        raise RecordError(where, f"is {_shown(rec)}, expected an object")
    for name in required:
        if name not in rec:
            raise RecordError(where, f"has no {name!r} field")
    for name, (ok, expected) in fields.items():
        if name in rec and not ok(rec[name]):
            raise RecordError(f"{where}.{name}", f"is {_shown(rec[name])}, expected {expected}")
    return {k: v for k, v in rec.items() if k in fields}


def result_from_record(rec, where: str = "result") -> Result:
    """The `Result` a results file records (`results_json` wrote it), every field's type checked;
    RecordError names the first field that is wrong. The verdict is the file's: see `recheck`."""
    fields = _checked(rec, _RESULT_FIELDS, _REQUIRED, where)
    fields["comparisons"] = [_checked(c, _COMPARISON_FIELDS, _COMPARISON_REQUIRED, f"{where}.comparisons[{i}]")
                             for i, c in enumerate(fields.get("comparisons", []))]
    for name in ("out_abs", "out_rel", "grad_abs", "grad_rel", "rtol", "atol", "seconds"):
        if name in fields:
            fields[name] = float(fields[name])
    return Result(**fields)


def recheck(r: Result, tolerance, loosest, differentiable: bool = False) -> list[str]:
    """Why the figures a results file records for `r` do not support a pass (empty: they do).

    A file's `passed` flag is not evidence: the verdict is recomputed from what the runner derives it
    from (parity/runner.py, `run_concept` and `compare`). A result passes only where
      * it records no error and no failure;
      * its tolerance is the one parity/tolerances.py gives its dtype, device and precision (`tolerance`);
      * its summary figures (out_abs ... exact_differ) are those of its per-tensor comparisons, as the
        runner computes them, and it compared something (and some gradient, for a differentiable concept);
      * every comparison passes on its own figures: exact ones have no differing element; the others
        have finite errors, and errors the pass rule |jax − torch| <= atol + rtol·|torch| allows at
        the `loosest` tolerance the comparison may have used (float16/bfloat16 arrays compare at
        `tolerances.HALF`): a relative error (measured beside references above atol) below 1 + rtol,
        and, with no relative error at all, an absolute error within atol·(1 + rtol).
    These are consequences of the pass rule, so every result the runner passed passes them; the
    reference values themselves are not in the file, so errors within them cannot be refuted.
    """
    problems = []
    if r.error:
        problems.append(f"raised {r.error}")
    elif r.failures:
        problems.append(f"records {len(r.failures)} failure(s)")
    if (r.rtol, r.atol) != (tolerance.rtol, tolerance.atol):
        problems.append(f"records rtol/atol {r.rtol:g}/{r.atol:g}, but parity/tolerances.py gives "
                        f"{tolerance.rtol:g}/{tolerance.atol:g} for {r.dtype} on {r.device}, {r.precision}")
    comps = r.comparisons
    outs = [c for c in comps if c["what"].startswith("out") and not c.get("exact", False)]
    grads = [c for c in comps if c["what"].startswith("grad")]
    exact = [c for c in comps if c.get("exact", False)]
    derived = {"n_out": len(outs), "n_grad": len(grads), "exact_out": len(exact),
               "exact_differ": sum(c.get("differ", 0) for c in exact),
               "out_abs": max((c["max_abs"] for c in outs), default=0.0),
               "out_rel": max((c["max_rel"] for c in outs), default=0.0),
               "grad_abs": max((c["max_abs"] for c in grads), default=0.0),
               "grad_rel": max((c["max_rel"] for c in grads), default=0.0)}
    for name, value in derived.items():
        if getattr(r, name) != value:
            problems.append(f"records {name} {getattr(r, name):g}, but its comparisons give {value:g}")
    if r.n_samples == 0 or not comps:
        problems.append("compared nothing (no samples or no comparisons recorded)")
    elif differentiable and not grads:
        problems.append("compared no gradient, though the concept is differentiable")
    rtol, atol = loosest.rtol, loosest.atol
    for c in comps:
        name = f"{c['sample']} {c['what']}"
        if c.get("exact", False):
            bad = c.get("differ", 0) != 0 or c["max_abs"] != 0 or c["max_rel"] != 0
            why = f"{c.get('differ', 0)} elements differ" if c.get("differ", 0) else "an exact comparison with errors"
        elif not (math.isfinite(c["max_abs"]) and math.isfinite(c["max_rel"])):
            bad, why = True, "errors are not finite"
        else:
            bad = (c["max_rel"] > 1 + rtol or (c["max_rel"] == 0 and c["max_abs"] > atol + rtol * atol)
                   or (c["max_abs"] == 0 and c["max_rel"] != 0))
            why = (f"max abs err {c['max_abs']:.3g}, max rel err {c['max_rel']:.3g} are beyond rtol {rtol:g} / "
                   f"atol {atol:g}")
        if bad or not c["ok"]:
            problems.append(f"{name}: {why if bad else 'recorded as not ok'}")
    return problems
