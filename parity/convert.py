"""Weight and layout conversions between PyTorch and Flax NNX, both directions, layer by layer (whole
models convert through the layer kinds' records: parity/porting/kinds.py, model_to_flax).

Canonical parameters are torch `state_dict`s of NumPy arrays; Flax parameters are nested pure
dicts (what `nnx.to_pure_dict(nnx.state(model))` returns). Conversions are transposes only: exact in any dtype.
"""
from __future__ import annotations

import numpy as np


def linear_torch_to_flax(sd: dict) -> dict:
    """torch Linear {weight (out, in), bias (out,)} → Flax {kernel (in, out), bias (out,)} (docs/traps.md, trap 2)."""
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


# ---------------------------------------------------------------- layouts (NumPy or JAX arrays)
def nchw_to_nhwc(x):
    """Activations (N, C, H, W) → (N, H, W, C) (docs/traps.md, trap 3); works on NumPy and JAX arrays alike."""
    return x.transpose(0, 2, 3, 1)


def nhwc_to_nchw(x):
    """Activations (N, H, W, C) → (N, C, H, W)."""
    return x.transpose(0, 3, 1, 2)


def _with_bias(out: dict, src: dict, key: str = "bias") -> dict:
    if src.get(key) is not None:
        out["bias"] = np.asarray(src[key])
    return out


# ---------------------------------------------------------------- Conv2d
def conv_torch_to_flax(sd: dict) -> dict:
    """torch Conv2d {weight (O, I/groups, kh, kw), bias} → Flax {kernel (kh, kw, I/groups, O), bias}.

    The same transpose serves grouped convolutions: both frameworks keep each group's output
    channels contiguous along O.
    """
    return _with_bias({"kernel": np.ascontiguousarray(np.asarray(sd["weight"]).transpose(2, 3, 1, 0))}, sd)


def conv_flax_to_torch(p: dict) -> dict:
    """Flax Conv2d {kernel (kh, kw, I/groups, O), bias} → torch {weight (O, I/groups, kh, kw), bias}."""
    return _with_bias({"weight": np.ascontiguousarray(np.asarray(p["kernel"]).transpose(3, 2, 0, 1))}, p)


# ---------------------------------------------------------------- BatchNorm2d
_BN_TORCH_TO_FLAX = {"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var",
                     "num_batches_tracked": "num_batches_tracked"}
_BN_FLAX_TO_TORCH = {v: k for k, v in _BN_TORCH_TO_FLAX.items()}


def batchnorm_torch_to_flax(sd: dict) -> dict:
    """torch BatchNorm2d {weight, bias, running_mean, running_var, num_batches_tracked} → Flax
    {scale, bias, mean, var, num_batches_tracked}; whatever subset is present (gradients: two).

    Renames only: jax_impl's BatchNorm2d stores torch's unbiased running variance (docs/traps.md, trap 12).
    """
    unknown = set(sd) - set(_BN_TORCH_TO_FLAX)
    if unknown:
        raise KeyError(f"batchnorm_torch_to_flax: unexpected keys {sorted(unknown)}")
    return {_BN_TORCH_TO_FLAX[k]: np.asarray(v) for k, v in sd.items() if v is not None}


def batchnorm_flax_to_torch(p: dict) -> dict:
    """Flax BatchNorm2d {scale, bias, mean, var, num_batches_tracked} → torch names (any subset)."""
    unknown = set(p) - set(_BN_FLAX_TO_TORCH)
    if unknown:
        raise KeyError(f"batchnorm_flax_to_torch: unexpected keys {sorted(unknown)}")
    return {_BN_FLAX_TO_TORCH[k]: np.asarray(v) for k, v in p.items() if v is not None}


# ---------------------------------------------------------------- LayerNorm and Embedding
def layernorm_torch_to_flax(sd: dict) -> dict:
    """torch LayerNorm {weight, bias} → Flax {scale, bias}: renames only (same shape); either may be
    absent (elementwise_affine=False, bias=False). eps is an argument, not a parameter (docs/traps.md, trap 14)."""
    out = {"scale": np.asarray(sd["weight"])} if sd.get("weight") is not None else {}
    return _with_bias(out, sd)


def layernorm_flax_to_torch(p: dict) -> dict:
    """Flax LayerNorm {scale, bias} → torch {weight, bias} (any subset)."""
    out = {"weight": np.asarray(p["scale"])} if p.get("scale") is not None else {}
    return _with_bias(out, p)


def embedding_torch_to_flax(sd: dict) -> dict:
    """torch Embedding {weight (num, dim)} → Flax Embed {embedding (num, dim)}: the same layout, renamed.

    torch's padding_idx is no parameter: it zeroes that row's gradient, which nnx.Embed does not."""
    return {"embedding": np.asarray(sd["weight"])}


def embedding_flax_to_torch(p: dict) -> dict:
    """Flax Embed {embedding (num, dim)} → torch Embedding {weight (num, dim)}."""
    return {"weight": np.asarray(p["embedding"])}


# ---------------------------------------------------------------- Flatten → Linear
def flatten_linear_torch_to_flax(sd: dict, chw: tuple[int, int, int]) -> dict:
    """A torch Linear fed by Flatten of (C, H, W) maps → the Flax Linear fed by Flatten of (H, W, C).

    torch flattens in (C, H, W) order and Flax's NHWC in (H, W, C) (docs/traps.md, trap 4): the weight's input
    columns are permuted to Flax's order before the usual (out, in) → (in, out) transpose.
    """
    c, h, w = chw
    weight = np.asarray(sd["weight"])
    if weight.shape[1] != c * h * w:
        raise ValueError(f"flatten_linear_torch_to_flax: weight has {weight.shape[1]} inputs, "
                         f"expected C·H·W = {c}·{h}·{w} = {c * h * w}")
    hwc = weight.reshape(-1, c, h, w).transpose(0, 2, 3, 1).reshape(-1, h * w * c)
    return linear_torch_to_flax({**sd, "weight": hwc})


def flatten_linear_flax_to_torch(p: dict, chw: tuple[int, int, int]) -> dict:
    """The inverse of `flatten_linear_torch_to_flax`: Flax kernel rows in (H, W, C) order → torch."""
    c, h, w = chw
    out = linear_flax_to_torch(p)
    if out["weight"].shape[1] != c * h * w:
        raise ValueError(f"flatten_linear_flax_to_torch: kernel has {out['weight'].shape[1]} inputs, "
                         f"expected C·H·W = {c}·{h}·{w} = {c * h * w}")
    chw_w = out["weight"].reshape(-1, h, w, c).transpose(0, 3, 1, 2).reshape(-1, c * h * w)
    return {**out, "weight": np.ascontiguousarray(chw_w)}
