"""The one table of parity tolerances, keyed by dtype, device and precision mode.

A pair passes where |jax − torch| <= atol + rtol·|torch| elementwise (torch.testing's rule).
Every entry carries its reason; a concept may widen it (Concept.tol_scale) only with a reason
naming the mechanism.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tolerance:
    rtol: float
    atol: float
    source: str

    def scaled(self, k: float, reason: str) -> "Tolerance":
        if k == 1.0:
            return self
        return Tolerance(self.rtol * k, self.atol * k, f"{self.source}; ×{k:g}: {reason}")


_F32 = Tolerance(1.3e-6, 1e-5, "torch.testing float32 default (rtol 1.3e-6, atol 1e-5): "
                               "a few ulps of float32 from differing summation order")
_F64 = Tolerance(1e-7, 1e-7, "torch.testing float64 default (rtol 1e-7, atol 1e-7)")
# TF32 keeps 10 mantissa bits: one product has relative error ~2^-11 ≈ 4.9e-4 and a k-term sum
# grows it; measured 2.9e-4 relative on an H100 for a 1024² float32 matmul (BASELINES.md).
_TF32 = Tolerance(5e-3, 5e-3, "framework defaults on CUDA: TF32 matmul/conv (10-bit mantissa, "
                              "measured rel. err. 2.9e-4 for 1024² matmul on H100)")

TABLE: dict[tuple[str, str, str], Tolerance] = {
    ("float32", "cpu", "strict"): _F32,
    ("float64", "cpu", "strict"): _F64,
    # No TF32 on the CPU: "defaults" and "strict" are the same arithmetic there.
    ("float32", "cpu", "defaults"): _F32,
    ("float64", "cpu", "defaults"): _F64,
    # strict mode turns TF32 off in both frameworks, so CPU-like float32 tolerances apply.
    ("float32", "cuda", "strict"): _F32,
    ("float64", "cuda", "strict"): _F64,
    ("float32", "cuda", "defaults"): _TF32,
    ("float64", "cuda", "defaults"): _F64,  # TF32 never applies to float64
}


# Separation bounds for showing trap 1 (TF32) on a GPU: the relative error (Frobenius norm, against
# float64) of a float32 matmul/convolution lies above TF32_SEEN when TF32 ran and below FP32_SEEN
# when full float32 ran. Measured on an H100 (1024² matmul): TF32 2.9e-4, float32 5.7e-7
# (BASELINES.md); TF32's unit roundoff is 2^-11 ≈ 4.9e-4.
TF32_SEEN = 1e-4
FP32_SEEN = 1e-5


def lookup(dtype: str, device: str, precision: str = "strict") -> Tolerance:
    try:
        return TABLE[(dtype, device, precision)]
    except KeyError:
        raise ValueError(f"no tolerance for dtype={dtype!r}, device={device!r}, "
                         f"precision={precision!r}; known: {sorted(TABLE)}") from None


# Training curves: the per-step losses of the two frameworks over a whole run (>= 200 steps, same
# weights, same batches). Each step's rounding differences (summation order in matmuls, convolutions
# and reductions: a few ulps) feed into the next step's weights, so the gap is that of a long chain
# of computations, not of one call. Measured on the CPU over the default runs (220-240 steps;
# linreg on synthetic data, softmax/mlp/cnn on digits; SGD with momentum 0.9, Adam, AdamW) with
# this rule: |jax − torch| <= atol + rtol·|loss| at every step.
_F64_CURVE = Tolerance(1e-12, 1e-12, "float64 training curves: measured at most 0.5% of this bound "
                                     "(cnn AdamW: 5.9e-15 abs, 3.2e-14 rel over 220 steps)")
# Without convolutions the float32 gap stays at a few ulps of the loss and does not grow.
_F32_DENSE_CURVE = Tolerance(1e-5, 1e-5, "float32 training curves, no convolutions: a few ulps per step; "
                                         "measured at most 28% of this bound (linreg AdamW; mlp 11%, "
                                         "linreg SGD with momentum 10%)")
# With convolutions float32 also meets the network's kinks: where a relu input or a max-pool
# runner-up lies within float32 rounding of the winner, the frameworks can route a gradient
# differently. On the cnn that happens after ~200 steps (1.9e-5 abs at step 210), and the
# curves then drift apart (1e-2 by step 300) while float64 stays at 1e-15 for 440 steps.
_F32_CONV_SGD_CURVE = Tolerance(1e-3, 1e-5, "float32 training curves with convolutions and SGD: ulps per "
                                            "step, plus kinks decided by rounding; measured max 2.7e-4 rel "
                                            "/ 1.9e-5 abs (cnn, 220 steps)")
# Adam moves each parameter by lr·m̂/(√v̂ + eps): for a gradient entry near eps in size, an
# absolute rounding difference δ in that entry becomes a parameter difference of about lr·δ/eps
# (1e5·δ at lr 1e-3, eps 1e-8). Convolutions make such entries: on the cnn, fc1 differs by
# 1.1e-5 after the first step and the curves by 2e-4 abs / 1.2e-3 rel by step 220 (growing
# with the step count).
_F32_CONV_ADAM_CURVE = Tolerance(1e-2, 1e-4, "float32 training curves with convolutions and Adam: "
                                             "eps-amplified rounding (lr·δ/eps); measured max 1.2e-3 rel "
                                             "(cnn, 220 steps)")


def training_curve(dtype: str, optimizer: str, convolutional: bool = False) -> Tolerance:
    """The tolerance for two frameworks' per-step training losses (AdamW counts as Adam)."""
    if dtype == "float64":
        return _F64_CURVE
    if dtype != "float32":
        raise ValueError(f"no training-curve tolerance for dtype={dtype!r}; use float32 or float64")
    if not convolutional:
        return _F32_DENSE_CURVE
    return _F32_CONV_SGD_CURVE if optimizer == "sgd" else _F32_CONV_ADAM_CURVE


# Recovering d2l's w = [2, −3.4], b = 4.2 from 800 noisy examples (noise 0.01) by minibatch SGD
# (batch 10, 3 epochs): the estimate ends in a noise ball around the least-squares solution, itself
# ~0.01/√800 ≈ 4e-4 from the truth. Measured max error 1.1e-3 with SGD (lr 0.03) and 2.6e-3 with
# Adam (lr 0.1), identical in both frameworks; the bound is half the noise level.
LINREG_RECOVERY = Tolerance(0.0, 5e-3, "linear regression recovers w, b within half the noise level 0.01 "
                                       "(measured 1.1e-3 SGD, 2.6e-3 Adam)")
