"""The layer kinds automatic pairing knows, in both frameworks: how to recognise each, how its
weights convert (the rules of parity/convert.py), and the settings worth a note when they differ.

A kind with parameters (linear, conv, batchnorm, layernorm, embedding) must pair one-to-one between
the models; a parameterless kind (dropout, pooling, flatten) pairs when both sides have such modules.
"""
from __future__ import annotations

import numpy as np
import torch
from flax import nnx
from torch import nn

import jax_impl.conv
import jax_impl.layers
import jax_impl.normalization
import jax_impl.pooling
from parity import convert

PARAM_KINDS = ("linear", "conv", "batchnorm", "layernorm", "embedding")
FREE_KINDS = ("dropout", "maxpool", "avgpool", "adaptive_avgpool", "flatten")

# (class, kind), most specific first; subclasses count (torch_impl's layers subclass torch's)
_TORCH = ((nn.Linear, "linear"), (nn.Conv2d, "conv"), (nn.BatchNorm2d, "batchnorm"),
          (nn.BatchNorm1d, "batchnorm"), (nn.LayerNorm, "layernorm"), (nn.Embedding, "embedding"),
          (nn.Dropout, "dropout"), (nn.MaxPool2d, "maxpool"), (nn.AvgPool2d, "avgpool"),
          (nn.AdaptiveAvgPool2d, "adaptive_avgpool"), (nn.Flatten, "flatten"))
_FLAX = ((nnx.Linear, "linear"), (jax_impl.layers.Linear, "linear"), (nnx.Conv, "conv"),
         (jax_impl.conv.Conv2d, "conv"), (nnx.BatchNorm, "batchnorm"),
         (jax_impl.normalization.BatchNorm2d, "batchnorm"), (nnx.LayerNorm, "layernorm"),
         (nnx.Embed, "embedding"), (nnx.Dropout, "dropout"), (jax_impl.layers.Dropout, "dropout"),
         (jax_impl.pooling.MaxPool2d, "maxpool"), (jax_impl.pooling.AvgPool2d, "avgpool"),
         (jax_impl.pooling.AdaptiveAvgPool2d, "adaptive_avgpool"), (jax_impl.layers.Flatten, "flatten"))


def torch_kind(m: nn.Module) -> str | None:
    for cls, kind in _TORCH:
        if isinstance(m, cls):
            return kind
    return None


def flax_kind(m: nnx.Module) -> str | None:
    for cls, kind in _FLAX:
        if isinstance(m, cls):
            if kind == "conv" and isinstance(m, nnx.Conv) and len(m.kernel_size) != 2:
                return None  # 1-D or 3-D convolutions: not torch's Conv2d
            return kind
    return None


def other_kind(m) -> str:
    """Parameterless modules of no known kind pair by class name (torch nn.GELU ⇄ a Flax `GELU`)."""
    return "other:" + type(m).__name__.lower()


# ---------------------------------------------------------------- weights, one layer at a time
# Names of the arrays each kind holds in Flax: parameters (differentiated) and statistics.
FLAX_PARAMS = {"linear": ("kernel", "bias"), "conv": ("kernel", "bias"), "batchnorm": ("scale", "bias"),
               "layernorm": ("scale", "bias"), "embedding": ("embedding",)}
FLAX_STATS = {"batchnorm": ("mean", "var", "num_batches_tracked")}


def flax_arrays(kind: str, m) -> dict:
    """The arrays (parameters and statistics) a Flax layer of this kind holds, as Variables."""
    out = {}
    for name in FLAX_PARAMS[kind] + FLAX_STATS.get(kind, ()):
        v = getattr(m, name, None)
        if isinstance(v, nnx.Variable):
            out[name] = v
    return out


def to_flax(kind: str, part: dict, flatten=None) -> dict:
    """One torch layer's state (NumPy, torch names) → its Flax arrays (Flax names and layouts)."""
    part = {k: v for k, v in part.items() if v is not None}
    if kind in ("linear", "conv") and "weight" not in part:
        return {"bias": part["bias"]} if "bias" in part else {}
    if kind == "linear":
        return convert.flatten_linear_torch_to_flax(part, flatten) if flatten else convert.linear_torch_to_flax(part)
    if kind == "conv":
        return convert.conv_torch_to_flax(part)
    if kind == "batchnorm":
        return convert.batchnorm_torch_to_flax(part)
    if kind == "layernorm":
        return convert.layernorm_torch_to_flax(part)
    if kind == "embedding":
        return convert.embedding_torch_to_flax(part)
    raise ValueError(f"no conversion for kind {kind!r}")


def to_torch(kind: str, part: dict, flatten=None) -> dict:
    """One Flax layer's arrays (NumPy, Flax names) → torch names and layouts (any subset of
    parameters and statistics, so gradients convert by the same rule as weights)."""
    part = {k: v for k, v in part.items() if v is not None}
    if kind in ("linear", "conv") and "kernel" not in part:  # a bias alone: the same in both
        return {"bias": part["bias"]} if "bias" in part else {}
    if kind == "linear":
        return convert.flatten_linear_flax_to_torch(part, flatten) if flatten else convert.linear_flax_to_torch(part)
    if kind == "conv":
        return convert.conv_flax_to_torch(part)
    if kind == "batchnorm":
        return convert.batchnorm_flax_to_torch(part)
    if kind == "layernorm":
        return convert.layernorm_flax_to_torch(part)
    if kind == "embedding":
        return convert.embedding_flax_to_torch(part)
    raise ValueError(f"no conversion for kind {kind!r}")


# ---------------------------------------------------------------- settings worth a note
def _pairs(v, n=2):
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * n


def _same_pads(n, k, s, d):
    """Flax's 'SAME' padding (low, high) along one axis of size n."""
    out = -(-n // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
    return total // 2, total - total // 2


def _flax_conv_pads(m, hw):
    """The (low, high) padding pairs an nnx.Conv applies to an input of spatial size hw."""
    p, k, s, d = m.padding, m.kernel_size, _pairs(m.strides or 1), _pairs(m.kernel_dilation or 1)
    if isinstance(p, str):
        if p.upper() == "VALID":
            return ((0, 0), (0, 0))
        if p.upper() == "SAME" and hw is not None:
            return tuple(_same_pads(n, ki, si, di) for n, ki, si, di in zip(hw, k, s, d))
        return None
    if isinstance(p, int):
        return ((p, p), (p, p))
    return tuple((q, q) if isinstance(q, int) else tuple(q) for q in p)


def _torch_conv_pads(m, hw):
    if isinstance(m.padding, str):
        if m.padding == "valid":
            return ((0, 0), (0, 0))
        # torch's 'same' (stride 1): d·(k−1) in total, the odd pixel after (docs/traps.md, trap 6)
        return tuple(((d * (k - 1)) // 2, d * (k - 1) - (d * (k - 1)) // 2)
                     for k, d in zip(m.kernel_size, m.dilation))
    return tuple((p, p) for p in m.padding)


def notes(kind: str, tm, fm, *, train: bool, dtype: str, flax_in_shape=None, layout="nhwc") -> list[str]:
    """Settings of a paired torch/Flax layer that differ in meaning, each with its trap."""
    out = []
    fdt = getattr(fm, "dtype", None)
    if fdt is not None and isinstance(fm, (nnx.Linear, nnx.Conv, nnx.BatchNorm, nnx.LayerNorm, nnx.Embed)) \
            and np.dtype(fdt) != np.dtype(dtype):
        out.append(f"Flax layer has dtype={np.dtype(fdt).name}: it computes in {np.dtype(fdt).name} "
                   f"whatever its parameters' dtype ({dtype} compared)")
    if kind == "conv" and isinstance(fm, nnx.Conv):
        if tuple(_pairs(fm.strides or 1)) != tuple(tm.stride):
            out.append(f"stride: torch {tuple(tm.stride)}, Flax {tuple(_pairs(fm.strides or 1))}")
        if tuple(_pairs(fm.kernel_dilation or 1)) != tuple(tm.dilation):
            out.append(f"dilation: torch {tuple(tm.dilation)}, Flax {tuple(_pairs(fm.kernel_dilation or 1))}")
        hw = None
        if flax_in_shape is not None and len(flax_in_shape) == 4:
            nhwc = flax_in_shape[3] == tm.in_channels if flax_in_shape[1] != flax_in_shape[3] else layout == "nhwc"
            hw = tuple(flax_in_shape[1:3]) if nhwc else tuple(flax_in_shape[2:])
        fp, tp = _flax_conv_pads(fm, hw), _torch_conv_pads(tm, hw)
        if fp is not None and tuple(map(tuple, fp)) != tuple(map(tuple, tp)):
            how = f"padding={fm.padding!r}, i.e. {tuple(map(tuple, fp))}" if isinstance(fm.padding, str) \
                else f"{tuple(map(tuple, fp))}"
            out.append(f"padding (low, high) per axis: torch {tuple(map(tuple, tp))}, Flax {how} "
                       f"(nnx.Conv pads 'SAME' by default; docs/traps.md, traps 5 and 6)")
    if kind == "batchnorm":
        feps = getattr(fm, "epsilon", getattr(fm, "eps", None))
        if feps is not None and not np.isclose(feps, tm.eps, rtol=1e-12, atol=0):
            out.append(f"eps: torch {tm.eps:g}, Flax {feps:g} (docs/traps.md, trap 14)")
        if isinstance(fm, nnx.BatchNorm):
            if tm.momentum is not None and not np.isclose(fm.momentum, 1 - tm.momentum):
                out.append(f"momentum: torch {tm.momentum:g} is the new batch's weight, nnx.BatchNorm's "
                           f"{fm.momentum:g} the old value's: expected {1 - tm.momentum:g} (docs/traps.md, trap 11)")
            if train:
                out.append("nnx.BatchNorm stores the biased batch variance, torch the unbiased one: running "
                           "var differs by n/(n−1) after a training-mode pass (docs/traps.md, trap 12)")
                if fm.use_fast_variance:
                    out.append("nnx.BatchNorm use_fast_variance=True computes E[x²]−E[x]², which loses "
                               "digits at large means (docs/traps.md, trap 13)")
        elif tm.momentum is not None and not np.isclose(getattr(fm, "momentum", tm.momentum), tm.momentum):
            out.append(f"momentum: torch {tm.momentum:g}, Flax twin {fm.momentum:g} (the same meaning here; "
                       f"docs/traps.md, trap 11)")
    if kind == "layernorm":
        feps = getattr(fm, "epsilon", None)
        if feps is not None and not np.isclose(feps, tm.eps, rtol=1e-12, atol=0):
            out.append(f"eps: torch {tm.eps:g}, Flax {feps:g} (nnx.LayerNorm defaults to 1e-6; "
                       f"docs/traps.md, trap 14)")
    if kind == "embedding" and tm.padding_idx is not None:
        out.append(f"torch padding_idx={tm.padding_idx}: that row's gradient is always zero in torch; "
                   f"nnx.Embed has no padding_idx (stop its gradient in the Flax code)")
    if kind == "dropout":
        fp = getattr(fm, "rate", getattr(fm, "p", None))
        if fp is not None and not np.isclose(fp, tm.p):
            out.append(f"dropout probability: torch {tm.p:g}, Flax {fp:g}")
        if getattr(fm, "broadcast_dims", ()):
            out.append("nnx.Dropout broadcast_dims drops whole slices; torch's Dropout drops elements")
    return out


def torch_dtype(dtype: str) -> torch.dtype:
    return getattr(torch, dtype)
