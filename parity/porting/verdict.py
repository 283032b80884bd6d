"""The float32 verdict that scales: a port is judged by being no worse than torch's own float32.

A fixed float32 rtol/atol does not scale with depth and magnitude: a correct ResNet-50 port parts
from torch's float32 by more than 1e-5 at a BatchNorm deep inside, because both sides round, and
their rounding errors grow with depth and with the size of the values. What a user wants to know is
whether the port computes the same function as well as torch does. So, in float32, the torch model
is also run in float64 (same weights, same inputs, same cotangents, cast up exactly) as the
reference, and each tensor (a layer's input or output, a model output, a gradient) passes where

    max |port − ref|  <=  FACTOR · max |torch32 − ref|  +  FLOOR_ULPS · eps32 · max |ref|

The floor covers tensors that torch happens to compute exactly in float32 (a ReLU of exact values,
an integer-valued sum), where any other rounding would otherwise fail. float64 comparisons, and
anyone asking for `rule="fixed"`, keep the fixed rtol/atol of parity/tolerances.py.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RULES = ("scaled", "fixed")
# FACTOR and FLOOR_ULPS, measured (CPU; docs/measurements.md): on the correct ports the tests compare
# (the examples, a depth-50 ResNet, every stock layer kind over its options; 754 tensors) the port's
# error reached at most 12.7× torch's own (a 2-element BatchNorm bias gradient, where torch happened to
# round well) and at most 0.45 of the bound; on the planted bugs the first failing tensor stood at
# 2.3× the bound or more (GroupNorm's epsilon 1e-6 for 1e-5) and at 1e2 to 5e5× for the others.
# The floor is 16 ulps of the tensor's largest value: sums with cancellation (bias gradients) round
# to several ulps of their result whatever the framework.
FACTOR = 8.0
FLOOR_ULPS = 16.0
EPS32 = float(np.finfo(np.float32).eps)
# torch's own float32 error beyond this share of a tensor's scale means its float64 run computed
# something else (masks drawn anew, say), not the same thing more precisely: the fixed rule judges then.
# Measured: at most 5.1e-6 of the scale on the correct ports above (depth 50 included).
SAME_COMPUTATION = 1e-2


@dataclass(frozen=True)
class Scaled:
    """One tensor judged by the scaled rule: the port's and torch-float32's largest error against
    the float64 reference, the bound the port's must stay within, and the verdict."""

    port_err: float
    torch_err: float
    bound: float
    ok: bool

    @property
    def ratio(self) -> float:
        """port error ÷ torch's own (inf where torch is exact and the port is not; 0 where both are)."""
        if self.torch_err == 0:
            return 0.0 if self.port_err == 0 else float("inf")
        return self.port_err / self.torch_err

    def to_dict(self) -> dict:
        return {"port_err_vs_float64": self.port_err, "torch_err_vs_float64": self.torch_err,
                "bound": self.bound, "ratio": self.ratio, "ok": self.ok}


def judge(port, torch32, ref) -> Scaled | None:
    """The scaled verdict for one tensor (all in torch's layout), or None where it does not apply
    (shapes differ, not floating point): the fixed rule's verdict stands there."""
    a, b, r = np.asarray(port), np.asarray(torch32), np.asarray(ref)
    if a.shape != b.shape or b.shape != r.shape or a.dtype.kind != "f" or b.dtype.kind != "f":
        return None
    r64 = r.astype(np.float64)
    fin = np.isfinite(r64) & np.isfinite(b) & np.isfinite(a)
    if not (np.isfinite(a) == np.isfinite(b)).all():
        return Scaled(float("inf"), 0.0, 0.0, False)  # non-finite values where torch has none (or the reverse)
    if not fin.any():
        return Scaled(0.0, 0.0, 0.0, True)
    port_err = float(np.abs(a[fin].astype(np.float64) - r64[fin]).max())
    torch_err = float(np.abs(b[fin].astype(np.float64) - r64[fin]).max())
    if torch_err > SAME_COMPUTATION * float(np.abs(r64[fin]).max()):
        return None  # torch float32 and float64 did not compute the same thing (random draws): no reference
    bound = FACTOR * torch_err + FLOOR_ULPS * EPS32 * float(np.abs(r64[fin]).max())
    return Scaled(port_err, torch_err, bound, port_err <= bound)
