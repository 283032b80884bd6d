"""What `compare_training` returns: both loss curves, the per-step parameter errors, where they
first part, and the float32 segments replayed in float64 (parity/porting/training.py explains the
bound, the teacher forcing and the replays)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
from rich.table import Table

from parity import curves
from parity.console import write_json_atomic
from parity.porting.report import json_safe
from parity.tolerances import Tolerance


@dataclass(frozen=True)
class SegmentReplay:
    """A float32 segment whose loss or parameters exceeded the bound, replayed in float64 from the
    state it started from. Steps are 1-based; errors are in multiples of each run's own bound."""

    segment: int
    first: int
    last: int
    worst32: float
    worst64: float
    agrees: bool  # the float64 replay is within its bound: the float32 excess was rounding
    excused: bool  # counted as a rounding event (at most one segment in curves.EXCUSED_SHARE)
    replay_summary: str = ""

    def describe(self) -> str:
        head = (f"steps {self.first}–{self.last} exceeded the float32 bound ({self.worst32:.3g}× it); their "
                f"float64 replay is within {self.worst64:.3g}× the float64 bound")
        if self.excused:
            return head + ": excused as a rounding event"
        if self.agrees:
            return head + (": agrees in float64, but more segments exceed in float32 than rounding events "
                           "explain (a float32-only difference)")
        return head.replace("is within", "is at") + ": the float64 replay confirms a real difference"

    def to_dict(self) -> dict:
        return json_safe(dataclasses.asdict(self) | {"text": self.describe()})


@dataclass
class TrainingReport:
    """Both loss curves (per step, float64) and where they first part. Steps are 1-based."""

    torch_model: str
    flax_model: str
    dtype: str
    device: str
    steps: int
    tolerance: Tolerance
    torch_losses: np.ndarray
    flax_losses: np.ndarray
    param_errors: np.ndarray  # per step: the largest parameter error, in multiples of the bound
    first_loss_step: int | None
    first_param_step: int | None
    first_param: str | None
    forced_every: int | None
    notes: list = field(default_factory=list)
    seconds: float = 0.0
    replays: list = field(default_factory=list)  # [SegmentReplay]: float32 segments replayed in float64

    @property
    def excused(self) -> list:
        """The segments excused as rounding events by their float64 replay."""
        return [r for r in self.replays if r.excused]

    @property
    def passed(self) -> bool:
        return self.first_loss_step is None and self.first_param_step is None

    def summary(self) -> str:
        head = (f"{self.torch_model} (torch) vs {self.flax_model} (Flax), {self.steps} steps, {self.dtype} on "
                f"{self.device}, bound {self.tolerance.rtol:.3g}·(1 + |value|): ")
        if self.passed:
            judged = self._judged()
            worst = float(np.max(self._loss_gaps()[judged], initial=0.0))
            extra = (f"; {len(self.excused)} segment(s) excused as rounding by a float64 replay"
                     if self.excused else "")
            return head + (f"SAME — losses within {worst:.2g} of each other; parameters within "
                           f"{float(np.max(self.param_errors[judged], initial=0.0)):.2g} of the bound{extra}")
        parts = []
        if self.first_loss_step is not None:
            k = self.first_loss_step - 1
            parts.append(f"losses part at step {self.first_loss_step} (torch {self.torch_losses[k]:.9g}, "
                         f"Flax {self.flax_losses[k]:.9g})")
        if self.first_param_step is not None:
            parts.append(f"parameters part after step {self.first_param_step}, first `{self.first_param}` "
                         f"({self.param_errors[self.first_param_step - 1]:.3g}× the bound)")
        return head + "DIFFERENT — " + "; ".join(parts)

    def _judged(self) -> np.ndarray:
        """Per step: False inside a segment excused by its float64 replay."""
        judged = np.ones(self.steps, bool)
        for r in self.excused:
            judged[r.first - 1:r.last] = False
        return judged

    def _loss_gaps(self) -> np.ndarray:
        """|flax − torch| per step; 0 where both are the same non-finite value (agreement)."""
        t, f = np.asarray(self.torch_losses, np.float64), np.asarray(self.flax_losses, np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            return np.where(curves.same_nonfinite(t, f), 0.0, np.abs(f - t))

    def lines(self) -> list[str]:
        """The replays and notes printed under the table."""
        return [f"replay: {r.describe()}" for r in self.replays] + [f"note: {n}" for n in self.notes]

    def table(self, every: int = 1) -> Table:
        t = Table(title=f"{self.torch_model} ⇄ {self.flax_model}: training", header_style="bold")
        gaps = self._loss_gaps()
        rows = []
        for k in range(0, self.steps, every):
            a, b = self.torch_losses[k], self.flax_losses[k]
            bad = (self.first_loss_step == k + 1) or (self.first_param_step == k + 1)
            rows.append(([str(k + 1), f"{a:.9g}", f"{b:.9g}", f"{gaps[k]:.2g}", f"{self.param_errors[k]:.2g}",
                          "◀ parts" if bad else ""], bad))
        # numbers are never cut: each column at least as wide as its widest cell (headers may wrap)
        for i, col in enumerate(("step", "torch loss", "Flax loss", "|Δ loss|", "params (× bound)", "")):
            t.add_column(col, justify="right", min_width=max((len(r[i]) for r, _ in rows), default=1))
        for cells, bad in rows:
            t.add_row(*cells, style="bold red" if bad else None)
        return t

    def to_dict(self) -> dict:
        return json_safe({
            "passed": self.passed, "summary": self.summary(), "torch_model": self.torch_model,
            "flax_model": self.flax_model, "dtype": self.dtype, "device": self.device, "steps": self.steps,
            "tolerance": {"rtol": self.tolerance.rtol, "atol": self.tolerance.atol, "source": self.tolerance.source},
            "torch_losses": self.torch_losses.tolist(), "flax_losses": self.flax_losses.tolist(),
            "param_errors_over_bound": self.param_errors.tolist(), "first_loss_step": self.first_loss_step,
            "first_param_step": self.first_param_step, "first_param": self.first_param,
            "forced_every": self.forced_every, "notes": self.notes, "seconds": self.seconds,
            "replays": [r.to_dict() for r in self.replays]})

    def write_json(self, path) -> None:
        write_json_atomic(self.to_dict(), path)
