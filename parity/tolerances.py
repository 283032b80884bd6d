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


def lookup(dtype: str, device: str, precision: str = "strict") -> Tolerance:
    try:
        return TABLE[(dtype, device, precision)]
    except KeyError:
        raise ValueError(f"no tolerance for dtype={dtype!r}, device={device!r}, "
                         f"precision={precision!r}; known: {sorted(TABLE)}") from None
