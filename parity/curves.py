"""The curve verdict: do the two frameworks train alike, or only drift apart by rounding?

Why not compare whole curves. Two float32 trainings from the same weights on the same batches drift
apart by rounding (summation order: a few ulps per step), and the drift feeds back: each step's
difference changes the next step's weights. Measured on small_cnn + Adam, 30 epochs of digits
(660 steps, both frameworks free-running): the per-step losses agree to 1e-7 for 20 steps, then
differ by 3e-6 at step 22, 4e-4 at step 100 and 1e-1 (6e-3 absolute) by step 595; the final
test accuracies differ (0.9749 vs 0.9721: one of 360 predictions flipped). No fixed tolerance on
free-running curves separates that from a real difference (a learning rate 1% off moves the curve
by 2e-3 within 40 steps).

The rule (teacher forcing, arbitrated in float64):

1. Segments. Every `SEGMENT_STEPS` = 20 steps, a JAX trainer restarts from the torch trainer's
   weights and optimiser state (slots and step count) and runs the same batches. Within a segment
   the drift is that of at most 20 steps, however long the run: the bound does not grow with it.
   20 is where the free-running drift starts to grow (above), and long enough for a defect to
   build up (a 1% learning rate: 2e-3 relative within one segment).
2. Bound. At every step, |loss_jax − loss_torch| <= N·u·(1 + |loss_torch|), with u the unit
   roundoff of the dtype (2^-24 float32, 2^-53 float64) and N = `tolerances.training_curve(dtype)`'s
   ulps (64, the same for both dtypes): "drift within N ulps of (1 + |loss|)". The 1 covers the
   rounding of losses near zero, whose terms (logits, targets) are of order one.
3. Rounding events. Rarely, a ReLU input or a max-pool runner-up lies within float32 rounding of
   its threshold, the frameworks route a gradient differently, and the segment's drift jumps far
   past the bound (measured 2.4e4 ulps once in 33 segments, small_cnn + SGD). Such a segment is
   replayed in float64 from the same state on the same batches by both frameworks; it is excused
   as rounding when the float64 replay is within the bound (in float64 ulps): a real difference
   (a wrong formula or hyperparameter) is just as large in float64. At most one segment in
   `EXCUSED_SHARE` (at least one) may be excused, so a float32-only defect that hits every segment
   is not explained away. float64 runs have no replays: every segment must be within the bound.

Measured margins (worst drift / bound), honest runs, seed 0, CPU, 30 epochs of digits (660 steps,
33 segments) — see parity/tolerances.py, `training_curve`, for the table over every model.

The accuracy rule (`accuracy_verdict`): the torch model and the forced JAX model after the last
segment (at most 20 steps apart) must predict the same class for every test example, except near
ties: examples whose top two torch outputs are within 2·N·u·(1 + max|output|) of each other, where
rounding may decide. If the last segment was excused as a rounding event, the float64 replay's
two models are compared instead. (Exact equality of the free-running accuracies is not required:
their difference is the drift above.)
"""
from __future__ import annotations

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


def drift(teacher: np.ndarray, forced: np.ndarray, dtype) -> np.ndarray:
    """Per-step |forced − teacher| in ulps of (1 + |teacher|), in `dtype`'s unit roundoff."""
    t, f = np.asarray(teacher, np.float64), np.asarray(forced, np.float64)
    if t.shape != f.shape or t.ndim != 1:
        raise ValueError(f"two per-step loss curves of one length expected, got {t.shape} and {f.shape}")
    with np.errstate(invalid="ignore"):
        d = np.abs(f - t) / (unit_roundoff(dtype) * (1 + np.abs(t)))
    return np.where(np.isfinite(f) & np.isfinite(t), d, np.inf)


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
    1 + |loss|) of any segment, in the arithmetic that decided it (float64 for excused segments);
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

    def __str__(self):
        word = "agree" if self.ok else "DISAGREE"
        extra = f"; {len(self.excused)} segment(s) excused by float64 replays" if self.excused else ""
        if len(self.excused) > self.excused_allowed:
            extra += f" (more than the {self.excused_allowed} allowed)"
        return (f"loss curves {word}: worst drift {self.worst:.3g} ulps at step {self.step + 1} of "
                f"{self.segments} segments, bound {self.bound:g} (margin {self.margin:.2f}){extra}")


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
            judged = drift(r.teacher, r.forced, np.float64)
            if judged.size != seg.size:
                raise ValueError(f"replay of segment {i} has {judged.size} steps, the segment {seg.size}")
            if judged.max() <= bound:
                excused.append(i)
        if judged.max() > bound:
            failed.append(i)
        if judged.max() > worst:
            worst, worst_step = float(judged.max()), where + int(judged.argmax())
    allowed = excused_allowed(len(slices))
    ok = not failed and len(excused) <= allowed and len(d) > 0
    rule = (f"every {segment_steps} steps JAX restarts from torch's weights and optimiser state; each step's "
            f"loss must stay within {bound:g} ulps of (1 + |loss|) of torch's ({np.dtype(dtype).name}); a "
            f"segment beyond that counts as rounding only if its float64 replay is within {bound:g} float64 "
            f"ulps, and at most {allowed} of {len(slices)} segments may need that")
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

    def __str__(self):
        word = "agree" if self.ok else "DISAGREE"
        acc = ", ".join(f"{k} {v:.4f}" for k, v in self.accuracy.items())
        return (f"final predictions {word}: {self.flips} of {self.examples} test examples classified differently "
                f"({self.near_ties} of them near ties), accuracy {acc} ({self.dtype})")


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
