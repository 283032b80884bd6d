"""The result of comparing a torch model with its Flax port: per-layer rows, the first divergence,
a rich table, a summary line, and a JSON record (written atomically)."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field

import numpy as np
from rich.table import Table
from rich.text import Text

from parity.console import write_json_atomic
from parity.porting import verdict
from parity.porting.table_layout import COLUMNS, Fitted, column_widths, fmt
from parity.porting.verdict import Scaled
from parity.runner import compare as _compare
from parity.tolerances import Tolerance


@dataclass
class Stats:
    """One Flax tensor against its torch counterpart (torch is the reference), judged by
    parity/runner.py's `compare` (non-finite values must sit at the same places with the same kind;
    `problem` then says so even though they agree).

    max_rel is taken beside references above atol (as parity/runner.py does); sqnr_db is
    10·log10(Σ torch² / Σ (flax − torch)²) (inf when equal); cosine is of the flattened tensors."""

    shape: tuple
    max_abs: float
    max_rel: float
    mean_abs: float
    sqnr_db: float
    cosine: float
    ok: bool
    problem: str = ""
    scaled: Scaled | None = None  # the float32 verdict against the float64 reference, where it was judged so


def measure(flax_value, torch_value, tol: Tolerance, ref=None) -> Stats:
    """Flax against torch by the fixed tolerance; with `ref` (torch's float64 run), the verdict is the
    scaled rule's instead (parity/porting/verdict.py), the errors shown stay those against torch."""
    st = _measure(flax_value, torch_value, tol)
    sc = verdict.judge(flax_value, torch_value, ref) if ref is not None else None
    if sc is None:
        return st
    if st.problem.startswith(("dtype mismatch", "shape mismatch")):  # no rule makes these agree
        return dataclasses.replace(st, scaled=sc)
    if sc.ok:
        problem = "" if st.ok else (f"within the scaled bound: {sc.port_err:.3g} from torch's float64 run, "
                                    f"{sc.ratio:.2g}× torch float32's own {sc.torch_err:.3g}")
    else:
        problem = (f"{sc.port_err:.3g} from torch's float64 run, {sc.ratio:.3g}× torch float32's own "
                   f"{sc.torch_err:.3g} (bound {sc.bound:.3g})")
    return dataclasses.replace(st, ok=sc.ok, problem=problem if not st.problem or not sc.ok else st.problem,
                               scaled=sc)


def _measure(flax_value, torch_value, tol: Tolerance) -> Stats:
    a, b = np.asarray(flax_value), np.asarray(torch_value)
    c = _compare(a, b, tol, "", "")
    exact = a.dtype.kind in "iub"
    if a.shape != b.shape or a.dtype != b.dtype or a.dtype.kind not in "fciub":
        return Stats(tuple(b.shape), c.max_abs, c.max_rel, math.nan, math.nan, math.nan, c.ok, c.problem)
    if exact:  # compared exactly (parity/runner.py), which reports no error sizes: measure them here
        a64, b64 = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
        d = np.abs(a64 - b64)
        big = np.abs(b64) > 0
        max_abs, max_rel = float(d.max(initial=0.0)), float((d[big] / np.abs(b64[big])).max(initial=0.0))
        problem = "" if c.ok else f"{c.problem}; {a.dtype.name} compared exactly, max abs {max_abs:g}"
        c = dataclasses.replace(c, max_abs=max_abs, max_rel=max_rel, problem=problem)
    else:
        fin = np.isfinite(a) & np.isfinite(b)
        a64, b64 = a[fin].astype(np.float64), b[fin].astype(np.float64)
    d = a64 - b64
    mean_abs = float(np.abs(d).mean()) if d.size else 0.0
    err, sig = float(np.sum(d * d)), float(np.sum(b64 * b64))
    sqnr = math.inf if err == 0 else (10 * math.log10(sig / err) if sig > 0 else -math.inf)
    na, nb = float(np.linalg.norm(a64)), float(np.linalg.norm(b64))
    cosine = 1.0 if na == nb == 0 else (float(a64 @ b64) / (na * nb) if na and nb else 0.0)
    ok, problem = c.ok, c.problem
    if ok and not np.isfinite(b).all():  # agreement by parity/runner.py's rule; worth saying
        problem = f"{int((~np.isfinite(b)).sum())} non-finite values, at the same places and of the same kind in both"
    return Stats(tuple(b.shape), c.max_abs, c.max_rel, mean_abs, sqnr, cosine, ok, problem)


def worst(stats: list[Stats]) -> Stats | None:
    """The largest error among several tensors (the layer's parameter gradients); ok only if all are."""
    if not stats:
        return None
    w = max(stats, key=lambda s: (not s.ok, s.max_abs))
    judged = [s.scaled for s in stats if s.scaled is not None]
    return Stats(w.shape, max(s.max_abs for s in stats), max(s.max_rel for s in stats),
                 max(s.mean_abs for s in stats), min(s.sqnr_db for s in stats), min(s.cosine for s in stats),
                 all(s.ok for s in stats), w.problem,
                 max(judged, key=lambda sc: (not sc.ok, sc.ratio)) if judged else None)


@dataclass
class Side:
    """A layer on one side: its name, class, the class's source, the line that created it and the
    line that called it (file:line)."""

    name: str
    cls: str
    source: str = "?"
    defined: str = "?"
    called_at: str = "?"

    def __str__(self) -> str:
        return f"`{self.name}` ({self.cls}, created at {self.defined}, called at {self.called_at})"


@dataclass
class Row:
    """One call of a leaf layer (torch's execution order); a layer called twice has two rows."""

    index: int
    kind: str
    call: int
    torch: Side | None
    flax: Side | None
    out: Stats | None = None
    inp: Stats | None = None
    state: Stats | None = None  # running statistics after a training-mode pass
    grad: Stats | None = None  # the worst of this layer's parameter gradients (first call's row)
    grad_names: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    missing: str = ""  # one side did not make this call

    @property
    def compared(self) -> bool:
        return self.out is not None or self.inp is not None

    @property
    def ok(self) -> bool:
        return not self.missing and all(s is None or s.ok for s in (self.out, self.inp, self.state, self.grad))


@dataclass
class Divergence:
    """Where the port first computes something else: `what` is "output", "input" (the layer's input
    differs though every earlier layer agrees: the cause lies in code between layers), "running
    statistics", "calls", "model output", "gradient" or "input gradient"."""

    what: str
    row: int | None
    torch: Side | None
    flax: Side | None
    message: str
    after: str | None = None  # the last layer that agreed
    before: str | None = None  # the layer whose input differs

    def to_dict(self) -> dict:
        return asdict(self)


def json_safe(obj):
    """`obj` with non-finite floats spelled "nan", "inf", "-inf" (strict JSON has no such numbers)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


@dataclass
class Report:
    """Everything one comparison found. `passed`: outputs, every paired layer's output (and input and
    running statistics), every gradient within the tolerance; `first_divergence` otherwise."""

    torch_model: str
    flax_model: str
    dtype: str
    device: str
    mode: str
    train: bool
    layout: str
    direction: str
    tolerance: Tolerance
    rows: list[Row]
    outputs: list[Stats]
    input_grads: dict
    param_grads: dict
    first_divergence: Divergence | None
    pairing: dict
    notes: list[str]
    seconds: float = 0.0
    rule: str = "fixed"  # "scaled": float32 judged against torch's float64 run (parity/porting/verdict.py)
    accepted: list = field(default_factory=list)  # known differences accepted, where and how large (differences.py)

    @property
    def passed(self) -> bool:
        return self.first_divergence is None

    @property
    def layers_compared(self) -> int:
        return sum(r.compared for r in self.rows)

    def worst_layer_error(self) -> float:
        """The largest max-abs error over the compared layers' outputs."""
        return max((r.out.max_abs for r in self.rows if r.out is not None), default=0.0)

    def summary(self) -> str:
        mode = "training mode" if self.train else "eval mode"
        rule = (f"no worse than {verdict.FACTOR:g}× torch float32's own error against its float64 run"
                if self.rule == "scaled" else f"rtol {self.tolerance.rtol:g} atol {self.tolerance.atol:g}")
        head = (f"{self.torch_model} (torch) vs {self.flax_model} (Flax), {self.dtype} on {self.device}, "
                f"{mode}, precision {self.mode}, {rule}: ")
        n_grad = len(self.param_grads) + len(self.input_grads)
        if self.passed:
            worst_out = max((s.max_abs for s in self.outputs), default=0.0)
            worst_grad = max((s.max_abs for s in list(self.param_grads.values()) + list(self.input_grads.values())),
                             default=0.0)
            ratio = self.worst_ratio()
            return (head + f"SAME — {self.layers_compared} layers, {len(self.outputs)} outputs and {n_grad} "
                    f"gradients agree (worst layer {self.worst_layer_error():.2g}, output {worst_out:.2g}, "
                    f"gradient {worst_grad:.2g} max abs"
                    + (f"; at most {ratio:.2g}× torch float32's own error" if ratio is not None else "") + ")")
        return head + "DIFFERENT — " + self.first_divergence.message

    def __str__(self) -> str:
        return self.summary()

    def scaled_verdicts(self) -> list[Scaled]:
        """Every tensor the scaled rule judged (layer inputs and outputs, outputs, gradients)."""
        stats = [s for r in self.rows for s in (r.inp, r.out, r.grad) if s is not None]
        stats += list(self.outputs) + list(self.input_grads.values()) + list(self.param_grads.values())
        return [s.scaled for s in stats if s.scaled is not None]

    def worst_ratio(self) -> float | None:
        """The largest port error ÷ torch float32's own (against torch's float64 run), or None."""
        finite = [sc.ratio for sc in self.scaled_verdicts() if sc.torch_err > 0]
        return max(finite) if finite else None

    def table(self, width: int | None = None):
        """One row per layer call; the first divergence in bold red with a marker. A rich renderable that
        fits the width it is printed in (or `width`, if given: then a Table): numbers are never cut and
        layer names wrap onto several lines rather than lose characters; where even so the columns do
        not fit, the least telling ones are left out (parity/porting/table_layout.py, DROP_ORDER) and the
        caption names them."""
        if width is None:
            return Fitted(self._table)
        return self._table(width)

    def _rows_cells(self):
        first = self.first_divergence.row if self.first_divergence else None
        for r in self.rows:
            tname = f"{r.torch.name} ({r.torch.cls})" if r.torch else "—"
            fname = f"{r.flax.name} ({r.flax.cls})" if r.flax else "—"
            if r.call:
                tname, fname = (f"{n} #{r.call + 1}" if n != "—" else n for n in (tname, fname))
            s = r.out
            shape = "×".join(map(str, s.shape)) if s else ""
            cells = [str(r.index + 1), tname, fname, r.kind or "—", shape, fmt(s and s.max_abs),
                     fmt(s and s.max_rel), fmt(s and s.mean_abs), fmt(s and s.sqnr_db, "db"),
                     fmt(s and s.cosine, "cos"), fmt(r.grad and r.grad.max_abs)]
            if r.missing:
                verdict = Text(r.missing, style="bold red")
            elif not r.compared:
                verdict = Text("not paired" if not (r.torch and r.flax) else "not compared", style="dim")
            elif r.ok:
                verdict = Text("ok", style="green")
            else:
                bad = [w for w, st in (("input", r.inp), ("output", r.out), ("stats", r.state), ("grad", r.grad))
                       if st is not None and not st.ok]
                verdict = Text(" & ".join(bad) + " differ", style="red")
            style = None
            if r.index == first:
                verdict = Text("◀ FIRST DIVERGENCE: ", style="bold red") + verdict
                style = "bold red"
            elif not r.compared:
                style = "dim"
            yield [Text(c) for c in cells] + [verdict], style

    def _table(self, width: int | None) -> Table:
        rows = list(self._rows_cells())
        widths = column_widths([[c.plain for c in cells] for cells, _ in rows], width)
        dropped = [h for h, _ in COLUMNS if h not in widths]
        t = Table(title=f"{self.torch_model} ⇄ {self.flax_model} — {self.dtype}, {self.device}, "
                        f"{'train' if self.train else 'eval'} mode", header_style="bold",
                  caption=(f"left out to fit {width} columns: {', '.join(dropped)} (the JSON report has every "
                           f"column)") if dropped else None)
        keep = [i for i, (h, _) in enumerate(COLUMNS) if h in widths]
        for i in keep:
            head, just = COLUMNS[i]
            t.add_column(head, justify=just, width=widths[head], overflow="fold")
        for cells, style in rows:
            t.add_row(*(cells[i] for i in keep), style=style)
        return t

    def lines(self) -> list[str]:
        """The summary lines printed under the table."""
        out = []
        for i, s in enumerate(self.outputs):
            out.append(f"output {i}: shape {s.shape}, max abs {s.max_abs:.3g}, max rel {s.max_rel:.3g} "
                       f"— {'ok' if s.ok else s.problem}")
        for name, s in self.input_grads.items():
            out.append(f"gradient wrt {name}: max abs {s.max_abs:.3g} — {'ok' if s.ok else s.problem}")
        if self.param_grads:
            bad = [k for k, s in self.param_grads.items() if not s.ok]
            w = max(self.param_grads.items(), key=lambda kv: kv[1].max_abs)
            out.append(f"parameter gradients: {len(self.param_grads)} compared, {len(bad)} differ"
                       f"{' (' + ', '.join(bad[:6]) + (', …' if len(bad) > 6 else '') + ')' if bad else ''}; "
                       f"worst {w[0]} max abs {w[1].max_abs:.3g}")
        out += [f"note: {n}" for n in self.notes]
        return out

    def to_dict(self) -> dict:
        d = {"passed": self.passed, "summary": self.summary(), "torch_model": self.torch_model,
             "flax_model": self.flax_model, "dtype": self.dtype, "device": self.device, "precision": self.mode,
             "train": self.train, "layout": self.layout, "direction": self.direction,
             "tolerance": asdict(self.tolerance), "layers_compared": self.layers_compared,
             "first_divergence": self.first_divergence.to_dict() if self.first_divergence else None,
             "rows": [asdict(r) for r in self.rows], "outputs": [asdict(s) for s in self.outputs],
             "input_grads": {k: asdict(v) for k, v in self.input_grads.items()},
             "param_grads": {k: asdict(v) for k, v in self.param_grads.items()},
             "pairing": self.pairing, "notes": self.notes, "seconds": self.seconds, "rule": self.rule,
             "accepted": self.accepted, "worst_ratio_to_torch_float32": self.worst_ratio()}
        return json_safe(d)

    def write_json(self, path) -> None:
        write_json_atomic(self.to_dict(), path)
