"""The curve verdict: do the two frameworks train alike, or only drift apart by rounding?

Why not compare whole curves. Two float32 trainings from the same weights on the same batches drift
apart by rounding (summation order: a few ulps per step), and the drift feeds back: each step's
difference changes the next step's weights. Measured on small_cnn + Adam, 30 epochs of digits
(660 steps, both frameworks free-running, seed 0): the per-step losses agree to 1e-7 for 20 steps,
then differ by 3e-6 relative at step 22, 4e-4 at step 100 and 1e-1 (6e-3 absolute) by step 595;
the final test accuracies differ (0.9749 vs 0.9721: one of 359 predictions flipped), while in
float64 both end at 0.9721. No fixed tolerance on free-running curves separates that from a real
difference (a learning rate 1% off moves the curve by 2e-3 relative within 40 steps).

The rule (teacher forcing, arbitrated in float64):

1. Segments. Every `SEGMENT_STEPS` = 20 steps, a JAX trainer restarts from the torch trainer's
   weights and optimiser state (slots and step count) and runs the same batches. Within a segment
   the drift is that of at most 20 steps, however long the run: the bound does not grow with it.
   20 is where the free-running drift above starts to grow, and long enough for a defect to build
   up (a learning rate 1% off: 1.6e4 float32 ulps within the first segment).
2. Bound. At every step, |loss_jax − loss_torch| <= N·u·(1 + |loss_torch|), with u the unit
   roundoff of the dtype (2^-24 float32, 2^-53 float64) and N = 64 for both dtypes
   (`tolerances.training_curve`): "within N ulps of (1 + |loss|)". The 1 covers losses near zero,
   whose rounding is that of their terms (logits, targets) of order one.
3. Rounding events. Now and then a ReLU input or a max-pool runner-up lies within float32 rounding
   of its threshold, the frameworks route a gradient differently, and the segment's drift jumps
   past the bound (measured: 2 of 396 small_cnn float32 segments, 1.3e4 and 3.9e2 ulps; none of
   1,188 segments of the dense models). Such a segment is replayed in float64 by both frameworks
   from the same state on the same batches, and excused as rounding when the replay is within the
   bound in float64 ulps (measured 7.5 and 3.6): a real difference (a wrong formula or
   hyperparameter) is as large in float64 as in float32. At most one segment in `EXCUSED_SHARE` = 8
   (at least one) may be excused, so that a float32-only defect, which hits every segment, is not
   explained away. float64 runs have no referee: every segment must be within the bound.

Measured (CPU, 30 epochs of digits, 660 steps, 33 segments; linear_regression 2400 steps; seeds
0-2 in float32, SGD, SGD + momentum 0.9, Adam, AdamW): the largest drift of a segment not excused,
in ulps of (1 + |loss|), and margin = worst / 64:
    float32: small_cnn 52.4 (Adam, seed 2; margin 0.82; seed 0: Adam 2.4, margin 0.04, SGD 8.6,
             margin 0.13, one segment excused), linear_regression 32.0 (AdamW), simple_net 4.2,
             linear_net 3.6;
    float64: linear_regression 20.2 (margin 0.32), small_cnn 9.9, simple_net 5.9, linear_net 4.8.
Planted defects on one side, one epoch (22 steps) of digits, float32, margins (worst / bound):
Adam eps 1e-7 instead of 1e-8: 30 (simple_net), 66 (small_cnn); learning rate 1% high: 244 and
253 with Adam, 647 and 46 with SGD + momentum; momentum 0.8 instead of 0.9: 1.7e4 and 1.1e3;
loss summed instead of averaged: 4.6e8 and 1.3e7; each confirmed by its float64 replay (>= 1e12
float64 ulps). Logits rounded to bfloat16 in float32 only: every segment excused, more than allowed.

The accuracy rule (`accuracy_verdict`): torch's model and the forced JAX model after the last
segment (at most 20 steps apart) must predict the same class for every test example, except near
ties, examples whose top two torch outputs are within 2·N·u·(1 + max|output|) of each other, where
rounding may decide. If the last segment was excused as a rounding event, its float64 replay's two
models are compared instead. Measured: no flipped prediction in any honest run above (0 of 359
test examples, every model, optimiser, seed and dtype). Exact equality of the free-running final
accuracies is not required: their difference is the drift above.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from parity.tolerances import Tolerance, training_curve

SEGMENT_STEPS = 20
EXCUSED_SHARE = 8  # at most ceil(segments / 8) segments may be excused by a float64 replay


def unit_roundoff(dtype) -> float:
    """2^-24 for float32, 2^-53 for float64: half the gap between 1 and the next number."""
    return float(np.finfo(np.dtype(dtype)).eps) / 2


def ulps_of(tol: Tolerance, dtype) -> float:
    """A curve tolerance (atol = rtol = N·u) as its N."""
    return tol.rtol / unit_roundoff(dtype)


def same_nonfinite(a, b) -> np.ndarray:
    """Elementwise: both values non-finite and of the same kind (both NaN, both +inf or both −inf),
    which counts as agreement, as parity/runner.py's `compare` counts it: two trainings that overflow
    at the same step (a learning rate too large for the model, say) train alike."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return ~np.isfinite(a) & ~np.isfinite(b) & ((a == b) | (np.isnan(a) & np.isnan(b)))


def drift(teacher: np.ndarray, forced: np.ndarray, dtype) -> np.ndarray:
    """Per-step |forced − teacher| in ulps of (1 + |teacher|), in `dtype`'s unit roundoff; 0 where both
    are non-finite of the same kind (`same_nonfinite`), inf where only one is or the kinds differ."""
    t, f = np.asarray(teacher, np.float64), np.asarray(forced, np.float64)
    if t.shape != f.shape or t.ndim != 1:
        raise ValueError(f"two per-step loss curves of one length expected, got {t.shape} and {f.shape}")
    with np.errstate(invalid="ignore"):
        d = np.abs(f - t) / (unit_roundoff(dtype) * (1 + np.abs(t)))
    return np.where(np.isfinite(f) & np.isfinite(t), d, np.where(same_nonfinite(t, f), 0.0, np.inf))


def segment_slices(n: int, segment_steps: int) -> list[slice]:
    """The segments of a run of n steps: [0, K), [K, 2K), ... (the last one may be shorter)."""
    if segment_steps < 1:
        raise ValueError(f"segment_steps must be >= 1, got {segment_steps}")
    return [slice(s, min(s + segment_steps, n)) for s in range(0, n, segment_steps)]


def needs_replay(teacher: np.ndarray, forced: np.ndarray, dtype) -> bool:
    """Whether one segment's drift exceeds the bound in a dtype that a float64 replay can arbitrate."""
    bound = ulps_of(training_curve(dtype), dtype)
    return np.dtype(dtype) != np.float64 and bool(drift(teacher, forced, dtype).max(initial=0.0) > bound)


def excused_allowed(segments: int) -> int:
    return max(1, math.ceil(segments / EXCUSED_SHARE))


@dataclass(frozen=True)
class Replay:
    """One segment replayed in float64 by both frameworks from the same state: the per-step losses
    (torch's and the forced JAX trainer's) and, optionally, both models' test outputs afterwards."""

    segment: int
    teacher: np.ndarray
    forced: np.ndarray
    teacher_outputs: np.ndarray | None = None
    forced_outputs: np.ndarray | None = None


@dataclass(frozen=True)
class CurveVerdict:
    """ok: the frameworks train alike by the rule above. worst: the largest drift (ulps of
    1 + |loss|) of any segment, in the run's dtype (for excused segments: their float64 replay's);
    bound: the ulps allowed; margin: worst / bound (<= 1 passes). step: the 0-based step of the
    worst drift. excused: segments whose float32 drift was excused by a float64 replay;
    excused_allowed: how many may be."""

    ok: bool
    rule: str
    worst: float
    bound: float
    margin: float
    step: int
    segments: int
    excused: tuple[int, ...] = ()
    excused_allowed: int = 0
    failed: tuple[int, ...] = field(default=())

    def summary(self) -> str:
        """One line: the worst drift against the bound, and the segments excused or failed."""
        extra = f"; {len(self.excused)} segment(s) excused by float64 replays" if self.excused else ""
        if len(self.excused) > self.excused_allowed:
            extra += f", more than the {self.excused_allowed} allowed"
        if self.failed:
            extra += f"; {len(self.failed)} of {self.segments} segments beyond the bound"
        return (f"worst per-segment drift {self.worst:.3g} ulps of (1 + |loss|) at step {self.step + 1}, "
                f"bound {self.bound:g} (margin {self.margin:.3g}) over {self.segments} segments{extra}")

    __str__ = summary

    def to_dict(self) -> dict:
        return _plain(self)


def curve_verdict(teacher: np.ndarray, forced: np.ndarray, segment_steps: int, dtype,
                  replays=()) -> CurveVerdict:
    """The verdict on torch's per-step losses (`teacher`) against those of the JAX trainer restarted
    from torch's state every `segment_steps` steps (`forced`), given float64 `replays` of segments."""
    bound = ulps_of(training_curve(dtype), dtype)
    d = drift(teacher, forced, dtype)
    slices = segment_slices(len(d), segment_steps)
    by_segment = {r.segment: r for r in replays}
    worst, worst_step, excused, failed = 0.0, 0, [], []
    for i, sl in enumerate(slices):
        seg = d[sl]
        if seg.size == 0:
            continue
        judged, where = seg, sl.start
        if seg.max() > bound and i in by_segment and np.dtype(dtype) != np.float64:
            r = by_segment[i]
            replayed = drift(r.teacher, r.forced, np.float64)
            if replayed.size != seg.size:
                raise ValueError(f"replay of segment {i} has {replayed.size} steps, the segment {seg.size}")
            if replayed.max() <= bound:  # a rounding event: judged by its replay
                excused.append(i)
                judged = replayed
        if judged.max() > bound:
            failed.append(i)
        if judged.max() > worst:
            worst, worst_step = float(judged.max()), where + int(judged.argmax())
    allowed = excused_allowed(len(slices))
    ok = not failed and len(excused) <= allowed and len(d) > 0
    rule = (f"every {segment_steps} steps JAX restarts from torch's weights and optimiser state, and each "
            f"step's loss must stay within {bound:g} ulps of (1 + |loss|) of torch's ({np.dtype(dtype).name})")
    if np.dtype(dtype) != np.float64:
        rule += (f"; a segment beyond that counts as rounding only if its float64 replay is within {bound:g} "
                 f"float64 ulps, and at most {allowed} of the {len(slices)} segments may need that")
    return CurveVerdict(ok, rule, worst, bound, worst / bound, worst_step, len(slices), tuple(excused),
                        allowed, tuple(failed))


@dataclass(frozen=True)
class AccuracyVerdict:
    """ok: the two models predict the same class for every test example but near ties.
    flips: examples predicted differently; near_ties: how many of those are near ties (allowed);
    accuracy: each model's test accuracy ('torch', 'jax' for the forced JAX model); dtype: the
    arithmetic compared (float64 when the last segment was excused by a replay)."""

    ok: bool
    rule: str
    flips: int
    near_ties: int
    examples: int
    accuracy: dict
    dtype: str

    def summary(self) -> str:
        """One line: how many test predictions differ, how many of those are near ties."""
        acc = ", ".join(f"{k} {v:.4f}" for k, v in self.accuracy.items())
        return (f"{self.flips} of {self.examples} test predictions differ ({self.near_ties} of them near ties); "
                f"test accuracy {acc} (forced JAX model, {self.dtype})")

    __str__ = summary

    def to_dict(self) -> dict:
        return _plain(self)


def _plain(verdict) -> dict:
    """A verdict as JSON-ready values, its one-line summary included."""
    out = {"summary": verdict.summary()}
    for k, v in dataclasses.asdict(verdict).items():
        out[k] = list(v) if isinstance(v, tuple) else v
    return out


def accuracy_verdict(teacher_outputs: np.ndarray, forced_outputs: np.ndarray, labels: np.ndarray,
                     dtype) -> AccuracyVerdict:
    """The verdict on two models' test outputs (torch's, and the forced JAX model's: at most one
    segment apart) and the labels; `dtype` is the arithmetic the outputs were computed in."""
    t, f = np.asarray(teacher_outputs, np.float64), np.asarray(forced_outputs, np.float64)
    if t.shape != f.shape or t.ndim != 2 or len(labels) != len(t):
        raise ValueError(f"outputs (N, classes) of one shape and N labels expected, got {t.shape}, "
                         f"{f.shape}, {len(labels)}")
    n_ulps = ulps_of(training_curve(dtype), dtype)
    top2 = np.sort(t, axis=-1)[:, -2:]
    tie = (top2[:, 1] - top2[:, 0]) <= 2 * n_ulps * unit_roundoff(dtype) * (1 + np.abs(t).max(-1))
    flipped = t.argmax(-1) != f.argmax(-1)
    flips, near = int(flipped.sum()), int((flipped & tie).sum())
    rule = (f"torch's model and the JAX model restarted from it at the last segment predict the same class for "
            f"every test example, except near ties (top two outputs within 2·{n_ulps:g} ulps of "
            f"1 + max|output|, {np.dtype(dtype).name})")
    acc = {"torch": float(np.mean(t.argmax(-1) == labels)), "jax": float(np.mean(f.argmax(-1) == labels))}
    return AccuracyVerdict(flips == near, rule, flips, near, len(t), acc, np.dtype(dtype).name)
