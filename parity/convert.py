"""Weight and layout conversions between PyTorch and Flax NNX, both directions.

Canonical parameters are torch `state_dict`s of NumPy arrays; Flax parameters are nested pure
dicts (what `nnx.State.to_pure_dict()` returns). Conversions are transposes only: exact in any dtype.
"""
from __future__ import annotations

import numpy as np


def linear_torch_to_flax(sd: dict) -> dict:
    """torch Linear {weight (out, in), bias (out,)} → Flax {kernel (in, out), bias (out,)} (trap 2)."""
    out = {"kernel": np.ascontiguousarray(np.asarray(sd["weight"]).T)}
    if sd.get("bias") is not None:
        out["bias"] = np.asarray(sd["bias"])
    return out


def linear_flax_to_torch(p: dict) -> dict:
    """Flax Linear {kernel (in, out), bias} → torch {weight (out, in), bias}."""
    out = {"weight": np.ascontiguousarray(np.asarray(p["kernel"]).T)}
    if p.get("bias") is not None:
        out["bias"] = np.asarray(p["bias"])
    return out
