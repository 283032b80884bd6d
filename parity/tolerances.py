"""The one table of parity tolerances, keyed by dtype, device and precision mode.

A pair passes where |jax − torch| <= atol + rtol·|torch| elementwise (torch.testing's rule).
Every entry carries its reason and measured size; there is no per-concept widening: a concept that
does not fit its dtype's entry is a finding to investigate, not a tolerance to loosen.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tolerance:
    rtol: float
    atol: float
    source: str


_F32 = Tolerance(1.3e-6, 1e-5, "torch.testing float32 default (rtol 1.3e-6, atol 1e-5): "
                               "a few ulps of float32 from differing summation order")
_F64 = Tolerance(1e-7, 1e-7, "torch.testing float64 default (rtol 1e-7, atol 1e-7)")
# TF32 keeps 10 mantissa bits: one product has relative error ~2^-11 ≈ 4.9e-4 and a k-term sum
# grows it; measured 2.9e-4 relative on an H100 for a 1024² float32 matmul (docs/measurements.md).
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


# Separation bounds for showing docs/traps.md, trap 1 (TF32) on a GPU: the relative error (Frobenius norm, against
# float64) of a float32 matmul/convolution lies above TF32_SEEN when TF32 ran and below FP32_SEEN
# when full float32 ran. Measured on an H100 (1024² matmul): TF32 2.9e-4, float32 5.7e-7
# (docs/measurements.md); TF32's unit roundoff is 2^-11 ≈ 4.9e-4.
TF32_SEEN = 1e-4
FP32_SEEN = 1e-5


def lookup(dtype: str, device: str, precision: str = "strict") -> Tolerance:
    try:
        return TABLE[(dtype, device, precision)]
    except KeyError:
        raise ValueError(f"no tolerance for dtype={dtype!r}, device={device!r}, "
                         f"precision={precision!r}; known: {sorted(TABLE)}") from None


# float16 and bfloat16 (the `dtypes` concepts): compared, whatever the run's dtype, at N ulps of
# (1 + |torch|), atol = rtol = N·u, u the unit roundoff: 2^-11 ≈ 4.9e-4 (float16), 2^-8 ≈ 3.9e-3
# (bfloat16); runner.compare picks the entry by the compared arrays' dtype. Accumulation is float32
# on both sides (measured on the CPU: torch's matmul, conv, sum, mean, pooling and batch-norm kernels;
# XLA's dot, conv and jnp.sum/mean; XLA's reduce_window sums in the half dtype, 256 instead of 409.5
# for 4096 × 0.1, so the JAX pools upcast). What differs is where each rounds: torch's written-out
# softmax rounds every step and its backward formulas round intermediates, where XLA fuses or the
# twin computes in float32 and rounds once (sigmoid, tanh, gelu, log-sigmoid, Linear/Conv2d with bias,
# as torch's own kernels). Measured worst, CPU, every dtypes concept, outputs and gradients:
# float16 3.9 ulps (softmax's input gradient), bfloat16 1.6 (BatchNorm2d's weight gradient); a
# float16 accumulator planted in the pooling twins is off by 10.6. Not measured on CUDA.
HALF_ULPS = 8
HALF: dict[str, Tolerance] = {
    "float16": Tolerance(HALF_ULPS * 2.0 ** -11, HALF_ULPS * 2.0 ** -11,
                         "float16: 8 ulps of (1 + |torch|) (u = 2^-11); float32 accumulation in both, "
                         "roundings differ; measured at most 3.9 (softmax gradient), CPU"),
    "bfloat16": Tolerance(HALF_ULPS * 2.0 ** -8, HALF_ULPS * 2.0 ** -8,
                          "bfloat16: 8 ulps of (1 + |torch|) (u = 2^-8); float32 accumulation in both, "
                          "roundings differ; measured at most 1.6 (BatchNorm2d weight gradient), CPU"),
}


# Training curves, compared by the rule of parity/curves.py: every 20 steps the JAX trainer restarts
# from torch's weights and optimiser state, and each step's loss must stay within N ulps of
# (1 + |loss|) of torch's: atol = rtol = N·u, u the dtype's unit roundoff. N = 64 for both dtypes:
# within a segment the drift is rounding of a few ulps per step (summation order in matmuls,
# convolutions and reductions) carried over at most 20 steps. Measured on the CPU, 30 epochs of
# digits (660 steps, 33 segments; linear_regression: 2400 steps of its synthetic data), every model
# with SGD, SGD + momentum 0.9, Adam and AdamW, seeds 0-2 (float64: seed 0, and seeds 1-2 for
# small_cnn and linear_regression); the largest drift of a segment, in ulps of (1 + |loss|):
#   float32: small_cnn 52.4 (Adam, seed 2: margin 0.82), linear_regression 32.0 (AdamW), simple_net
#            4.2, linear_net 3.6; beyond the bound only 2 of 396 small_cnn segments (SGD 1.3e4, AdamW
#            3.9e2 ulps: ReLU or max-pool decisions made by rounding), whose float64 replays measured
#            7.5 and 3.6 float64 ulps, so they are excused;
#   float64: linear_regression 20.2 (AdamW: margin 0.32), small_cnn 9.9, simple_net 5.9, linear_net 4.8.
# Planted defects on one side exceed it by 30x (Adam eps 1e-7 vs 1e-8 on simple_net, float32) to 1e8x
# (a summed loss) within one epoch (parity/curves.py lists them; tests/test_curves.py runs them).
CURVE_ULPS = 64
_F32_CURVE = Tolerance(CURVE_ULPS * 2.0 ** -24, CURVE_ULPS * 2.0 ** -24,
                       "float32 training curves, teacher-forced every 20 steps (parity/curves.py): 64 ulps of "
                       "(1 + |loss|); measured at most 52.4 (small_cnn Adam), apart from rare rounding events "
                       "that float64 replays excuse")
_F64_CURVE = Tolerance(CURVE_ULPS * 2.0 ** -53, CURVE_ULPS * 2.0 ** -53,
                       "float64 training curves, teacher-forced every 20 steps (parity/curves.py): 64 ulps of "
                       "(1 + |loss|); measured at most 20.2 (linear_regression AdamW)")


def training_curve(dtype: str, optimizer: str | None = None, convolutional: bool = False) -> Tolerance:
    """The per-step bound on two frameworks' training losses within one teacher-forced segment
    (parity/curves.py): the same for every optimiser and model (the arguments are accepted for
    callers that name them), measured above. A run of one segment (at most 20 steps) needs no
    forcing: its free-running curves obey the bound directly."""
    if dtype == "float64":
        return _F64_CURVE
    if dtype != "float32":
        raise ValueError(f"no training-curve tolerance for dtype={dtype!r}; use float32 or float64")
    return _F32_CURVE


# Recovering d2l's w = [2, −3.4], b = 4.2 from 800 noisy examples (noise 0.01) by minibatch SGD
# (batch 10, 3 epochs): the estimate ends in a noise ball around the least-squares solution, itself
# ~0.01/√800 ≈ 4e-4 from the truth. Measured max error 1.1e-3 with SGD (lr 0.03) and 2.6e-3 with
# Adam (lr 0.1), identical in both frameworks; the bound is half the noise level.
LINREG_RECOVERY = Tolerance(0.0, 5e-3, "linear regression recovers w, b within half the noise level 0.01 "
                                       "(measured 1.1e-3 SGD, 2.6e-3 Adam)")
