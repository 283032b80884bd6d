"""The stock layer kinds: torch.nn layers and their flax.nnx (or jax_impl twin) counterparts, one
`Kind` record each (the record is described in parity/porting/kinds.py).

Layouts: torch keeps a linear weight as (out, in) and a convolution's as (O, I/groups, *k); Flax keeps
(in, out) and (*k, I/groups, O) (docs/traps.md, traps 2 and 3). A transposed convolution's torch
weight is (I, O/groups, *k) and is the gradient of a convolution, so it is flipped in space for
nnx.ConvTranspose, which correlates the dilated input with its kernel as it is (docs/traps.md).
Normalisation layers rename weight → scale; their eps defaults differ (torch 1e-5, Flax 1e-6).
"""
from __future__ import annotations

import numpy as np
from flax import nnx
from torch import nn

import jax_impl.conv
import jax_impl.layers
import jax_impl.normalization
import jax_impl.pooling
from parity.porting import einsum_layout
from parity.porting.kind_record import Array, Kind, Note


def _pairs(v, n=2):
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * n


# ---------------------------------------------------------------- Linear (⇄ nnx.Linear, nnx.LinearGeneral)
def _kernel_to_flax(a, tm, fm):
    """(out, in) → (in, out), then the Flax kernel's own shape (nnx.LinearGeneral splits heads; an
    nnx.Einsum's axes are read from its string, parity/porting/einsum_layout.py)."""
    if isinstance(fm, nnx.Einsum):
        return einsum_layout.kernel_to_flax(a, fm)
    k = a.T
    held = getattr(getattr(fm, "kernel", None), "shape", None)
    return k.reshape(held) if held is not None and int(np.prod(held)) == k.size else k


def _kernel_to_torch(a, tm, fm):
    if isinstance(fm, nnx.Einsum):
        return einsum_layout.kernel_to_torch(a, fm)
    n_in = tm.in_features if tm is not None else a.shape[0]
    return a.reshape(n_in, -1).T


def _bias_to_flax(a, tm, fm):
    held = getattr(getattr(fm, "bias", None), "shape", None)
    return a.reshape(held) if held is not None and int(np.prod(held)) == a.size else a


def _flat(a, tm=None, fm=None):
    return a.reshape(-1)


LINEAR = Kind(
    "linear", (nn.Linear,), (nnx.Linear, nnx.LinearGeneral, nnx.Einsum, jax_impl.layers.Linear),
    (Array("weight", "kernel", _kernel_to_flax, _kernel_to_torch), Array("bias", "bias", _bias_to_flax, _flat)),
    # an nnx.Einsum is a Linear where its string contracts the input's last axes into the output's
    accepts_flax=lambda fm: not isinstance(fm, nnx.Einsum) or einsum_layout.is_linear(fm),
    summary="weight (out, in) → kernel (in, out); nnx.LinearGeneral's kernel reshaped to its heads, "
            "nnx.Einsum's arranged by its einsum string",
    doc="docs/traps.md, trap 2",
    flax_source=lambda m: _linear_source(m))


# ---------------------------------------------------------------- convolutions
def _conv_to_flax(a, tm=None, fm=None):
    n = a.ndim  # (O, I/groups, *k) → (*k, I/groups, O)
    return a.transpose(*range(2, n), 1, 0)


def _conv_to_torch(a, tm=None, fm=None):
    n = a.ndim  # (*k, I/groups, O) → (O, I/groups, *k)
    return a.transpose(n - 1, n - 2, *range(n - 2))


def _same_pads(n, k, s, d):
    """Flax's 'SAME' padding (low, high) along one axis of size n."""
    out = -(-n // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
    return total // 2, total - total // 2


def _spatial(ctx, channels: int, nd: int):
    """The spatial size of the Flax layer's input, read as channels-last where its shape says so."""
    shape = ctx.flax_in_shape
    if shape is None or len(shape) != nd + 2:
        return None
    last = shape[-1] == channels if shape[1] != shape[-1] else ctx.layout == "nhwc"
    return tuple(shape[1:-1]) if last else tuple(shape[2:])


def _flax_conv_pads(m, size):
    nd = len(m.kernel_size)
    p, k, s, d = m.padding, m.kernel_size, _pairs(m.strides or 1, nd), _pairs(m.kernel_dilation or 1, nd)
    if isinstance(p, str):
        if p.upper() == "VALID":
            return ((0, 0),) * nd
        if p.upper() == "SAME" and size is not None:
            return tuple(_same_pads(n, ki, si, di) for n, ki, si, di in zip(size, k, s, d))
        return None
    if isinstance(p, int):
        return ((p, p),) * nd
    return tuple((q, q) if isinstance(q, int) else tuple(q) for q in p)


def _torch_conv_pads(m):
    if isinstance(m.padding, str):
        if m.padding == "valid":
            return ((0, 0),) * len(m.kernel_size)
        # torch's 'same' (stride 1): d·(k−1) in total, the odd pixel after (docs/traps.md, trap 6)
        return tuple(((d * (k - 1)) // 2, d * (k - 1) - (d * (k - 1)) // 2)
                     for k, d in zip(m.kernel_size, m.dilation))
    return tuple((p, p) for p in m.padding)


def _stride_dilation_notes(tm, fm) -> list[str]:
    """Stride and dilation of a torch (transposed) convolution against an nnx one's."""
    out, nd = [], len(tm.kernel_size)
    if tuple(_pairs(fm.strides or 1, nd)) != tuple(tm.stride):
        out.append(f"stride: torch {tuple(tm.stride)}, Flax {tuple(_pairs(fm.strides or 1, nd))}")
    if tuple(_pairs(fm.kernel_dilation or 1, nd)) != tuple(tm.dilation):
        out.append(f"dilation: torch {tuple(tm.dilation)}, Flax {tuple(_pairs(fm.kernel_dilation or 1, nd))}")
    return out


def _conv_notes(tm, fm, ctx) -> list[str]:
    if not isinstance(fm, nnx.Conv):
        return []
    nd = len(tm.kernel_size)
    out = _stride_dilation_notes(tm, fm)
    if fm.feature_group_count != tm.groups:
        out.append(f"groups: torch {tm.groups}, Flax feature_group_count={fm.feature_group_count}")
    if tm.padding_mode != "zeros" and not (isinstance(fm.padding, str) and fm.padding.upper() == tm.padding_mode.upper()):
        out.append(f"torch padding_mode={tm.padding_mode!r}; nnx.Conv pads with zeros unless padding="
                   f"'{'CIRCULAR' if tm.padding_mode == 'circular' else tm.padding_mode.upper()}' "
                   f"(or the input is padded by hand)")
        return out
    fp, tp = _flax_conv_pads(fm, _spatial(ctx, tm.in_channels, nd)), _torch_conv_pads(tm)
    if fp is not None and tuple(map(tuple, fp)) != tuple(map(tuple, tp)):
        how = f"padding={fm.padding!r}, i.e. {tuple(map(tuple, fp))}" if isinstance(fm.padding, str) \
            else f"{tuple(map(tuple, fp))}"
        out.append(f"padding (low, high) per axis: torch {tuple(map(tuple, tp))}, Flax {how} "
                   f"(nnx.Conv pads 'SAME' by default; docs/traps.md, traps 5 and 6)")
    return out


def _flax_conv_nd(m) -> bool:
    return not isinstance(m, nnx.Conv) or 1 <= len(m.kernel_size) <= 3


CONV = Kind(
    "conv", (nn.Conv1d, nn.Conv2d, nn.Conv3d), (nnx.Conv, jax_impl.conv.Conv2d),
    (Array("weight", "kernel", _conv_to_flax, _conv_to_torch), Array("bias", "bias")),
    notes=_conv_notes, accepts_flax=_flax_conv_nd, channels_last=True,
    summary="weight (O, I/g, *k) → kernel (*k, I/g, O); groups, dilation, stride, padding pairs and "
            "padding modes compared",
    doc="docs/traps.md, traps 3, 5 and 6",
    flax_source=lambda m: _conv_source(m))


def _tconv_to_flax(a, tm=None, fm=None):
    n = a.ndim  # (I, O, *k) → (*k, I, O), flipped in space
    return np.flip(a.transpose(*range(2, n), 0, 1), axis=tuple(range(n - 2)))


def _tconv_to_torch(a, tm=None, fm=None):
    n = a.ndim
    return np.flip(a, axis=tuple(range(n - 2))).transpose(n - 2, n - 1, *range(n - 2))


def tconv_padding(tm) -> tuple:
    """The explicit (low, high) padding per axis that makes nnx.ConvTranspose compute torch's
    ConvTranspose: d·(k−1) − p before, the same plus output_padding after."""
    return tuple((d * (k - 1) - p, d * (k - 1) - p + op) for k, d, p, op in
                 zip(tm.kernel_size, tm.dilation, tm.padding, tm.output_padding))


def _tconv_notes(tm, fm, ctx) -> list[str]:
    if not isinstance(fm, nnx.ConvTranspose):
        return []
    out = _stride_dilation_notes(tm, fm)
    want = tconv_padding(tm)
    got = fm.padding
    if isinstance(got, str) or tuple(tuple(q) if not isinstance(q, int) else (q, q) for q in got) != want:
        out.append(f"padding: torch padding={tuple(tm.padding)}, output_padding={tuple(tm.output_padding)} "
                   f"is Flax padding={want}, given {got!r} (docs/traps.md, transposed convolutions)")
    if fm.transpose_kernel:
        out.append("nnx.ConvTranspose transpose_kernel=True flips and swaps the kernel itself: the converted "
                   "weights assume transpose_kernel=False")
    return out


def _torch_tconv_ok(m) -> bool:
    return m.groups == 1  # nnx.ConvTranspose has no feature groups


CONV_TRANSPOSE = Kind(
    "conv_transpose", (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d), (nnx.ConvTranspose,),
    (Array("weight", "kernel", _tconv_to_flax, _tconv_to_torch), Array("bias", "bias")),
    notes=_tconv_notes, accepts_torch=_torch_tconv_ok, channels_last=True,
    summary="weight (I, O, *k) → kernel (*k, I, O) flipped in space; padding p, output_padding q → "
            "(d(k−1)−p, d(k−1)−p+q); groups > 1 has no nnx counterpart",
    doc="docs/traps.md, transposed convolutions",
    flax_source=lambda m: _tconv_source(m))


# ---------------------------------------------------------------- normalisation
def _eps_note(tm, fm, default_flax="1e-6") -> list[str]:
    feps = getattr(fm, "epsilon", getattr(fm, "eps", None))
    teps = tm.eps
    if teps is None:  # torch RMSNorm's default: the dtype's machine epsilon
        return [f"torch eps=None means the input dtype's machine epsilon; Flax epsilon={feps:g}: give torch an "
                f"explicit eps (docs/traps.md, trap 14)"] if feps is not None else []
    if feps is not None and not np.isclose(feps, teps, rtol=1e-12, atol=0):
        return [Note(f"eps: torch {teps:g}, Flax {feps:g} ({type(fm).__name__} defaults to {default_flax}; "
                     f"docs/traps.md, trap 14)", on=("output",))]  # no running statistic depends on eps
    return []


def _fast_variance_note(fm, ctx) -> list[str]:
    if getattr(fm, "use_fast_variance", False):
        return [f"{type(fm).__name__} use_fast_variance=True computes E[x²]−E[x]², which loses digits at large "
                f"means: pass use_fast_variance=False (docs/traps.md, trap 13)"]
    return []


def _batchnorm_notes(tm, fm, ctx) -> list[str]:
    out = _eps_note(tm, fm, default_flax="1e-5")
    if isinstance(fm, nnx.BatchNorm):
        if ctx.train:  # momentum and the stored variance matter only when statistics are updated
            if tm.momentum is not None and not np.isclose(fm.momentum, 1 - tm.momentum):
                out.append(Note(f"momentum: torch {tm.momentum:g} is the new batch's weight, nnx.BatchNorm's "
                                f"{fm.momentum:g} the old value's: expected {1 - tm.momentum:g} (docs/traps.md, "
                                f"trap 11)", on=("statistics",)))
            out.append(Note("nnx.BatchNorm stores the biased batch variance, torch the unbiased one: running "
                            "var differs by n/(n−1) after a training-mode pass (docs/traps.md, trap 12)",
                            on=("statistics",)))
            out += _fast_variance_note(fm, ctx)
    elif ctx.train and tm.momentum is not None and not np.isclose(getattr(fm, "momentum", tm.momentum), tm.momentum):
        out.append(Note(f"momentum: torch {tm.momentum:g}, Flax twin {fm.momentum:g} (the same meaning here; "
                        f"docs/traps.md, trap 11)", on=("statistics",)))
    return out


BATCHNORM = Kind(
    "batchnorm", (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d),
    (nnx.BatchNorm, jax_impl.normalization.BatchNorm2d),
    (Array("weight", "scale"), Array("bias", "bias"), Array("running_mean", "mean", stat=True),
     Array("running_var", "var", stat=True), Array("num_batches_tracked", "num_batches_tracked", stat=True)),
    notes=_batchnorm_notes, channels_last=True,
    summary="weight → scale, running_mean/var → mean/var; momentum m ⇄ 1 − m; torch's unbiased running variance",
    doc="docs/traps.md, traps 11–14",
    flax_source=lambda m: _batchnorm_source(m))


def _groupnorm_notes(tm, fm, ctx) -> list[str]:
    out = _eps_note(tm, fm)
    groups = getattr(fm, "num_groups", None)
    if groups is not None and groups != tm.num_groups:
        out.append(f"groups: torch {tm.num_groups}, Flax num_groups={groups} (nnx.GroupNorm defaults to 32)")
    return out + _fast_variance_note(fm, ctx)


GROUPNORM = Kind(
    "groupnorm", (nn.GroupNorm,), (nnx.GroupNorm,), (Array("weight", "scale"), Array("bias", "bias")),
    notes=_groupnorm_notes, channels_last=True,
    summary="weight → scale; num_groups and eps compared (Flax defaults 32 groups, 1e-6)", doc="docs/traps.md, trap 14",
    flax_source=lambda m: _groupnorm_source(m))


def _instancenorm_notes(tm, fm, ctx) -> list[str]:
    return _eps_note(tm, fm) + _fast_variance_note(fm, ctx)


INSTANCENORM = Kind(
    "instancenorm", (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d), (nnx.InstanceNorm,),
    (Array("weight", "scale"), Array("bias", "bias")), notes=_instancenorm_notes, channels_last=True,
    accepts_torch=lambda m: not m.track_running_stats,  # nnx.InstanceNorm keeps no running statistics
    summary="weight → scale (affine=True), or no arrays; track_running_stats has no nnx counterpart",
    doc="docs/traps.md, trap 14",
    flax_source=lambda m: _instancenorm_source(m))


def _layernorm_notes(tm, fm, ctx) -> list[str]:
    return _eps_note(tm, fm)


LAYERNORM = Kind(
    "layernorm", (nn.LayerNorm,), (nnx.LayerNorm,), (Array("weight", "scale"), Array("bias", "bias")),
    notes=_layernorm_notes, summary="weight → scale; eps compared (nnx.LayerNorm defaults to 1e-6)",
    doc="docs/traps.md, trap 14",
    flax_source=lambda m: _layernorm_source(m))

RMSNORM = Kind(
    "rmsnorm", (nn.RMSNorm,), (nnx.RMSNorm,), (Array("weight", "scale"),), notes=_layernorm_notes,
    summary="weight → scale; torch's eps=None (machine epsilon) against Flax's 1e-6", doc="docs/traps.md, trap 14",
    flax_source=lambda m: _rmsnorm_source(m))


# ---------------------------------------------------------------- embedding and PReLU
def _embedding_notes(tm, fm, ctx) -> list[str]:
    if tm.padding_idx is None:
        return []
    return [f"torch padding_idx={tm.padding_idx}: that row's gradient is always zero in torch; nnx.Embed has "
            f"no padding_idx (stop its gradient in the Flax code)"]


EMBEDDING = Kind(
    "embedding", (nn.Embedding,), (nnx.Embed,), (Array("weight", "embedding"),), notes=_embedding_notes,
    summary="weight → embedding (same layout); padding_idx noted",
    flax_source=lambda m: _embedding_source(m))


def _prelu_to_flax(a, tm=None, fm=None):
    return a.reshape(())


def _prelu_to_torch(a, tm=None, fm=None):
    return a.reshape(1)


PRELU = Kind(
    "prelu", (nn.PReLU,), (nnx.PReLU,), (Array("weight", "negative_slope", _prelu_to_flax, _prelu_to_torch),),
    accepts_torch=lambda m: m.num_parameters == 1,  # nnx.PReLU has one slope, not one per channel
    summary="weight (1,) → negative_slope (); per-channel slopes have no nnx counterpart",
    flax_source=lambda m: _prelu_source(m))


# ---------------------------------------------------------------- Flax constructors (parity port)
# Each `flax_source(torch_module)` gives the nnx constructor that computes what the torch layer does,
# every setting whose default differs written out, and one short comment per difference.
def _tup(v, n):
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * n


def _linear_source(m):
    bias = "" if m.bias is not None else ", use_bias=False"
    return f"nnx.Linear({m.in_features}, {m.out_features}{bias}, rngs=rngs)", []


def _conv_source(m):
    nd = len(m.kernel_size)
    notes = []
    args = [str(m.in_channels), str(m.out_channels), str(tuple(m.kernel_size))]
    if tuple(m.stride) != (1,) * nd:
        args.append(f"strides={tuple(m.stride)}")
    pads = _torch_conv_pads(m)
    if m.padding_mode == "zeros":
        args.append(f"padding={tuple(tuple(p) for p in pads)}")
        notes.append("explicit (low, high) padding: nnx.Conv pads 'SAME' by default")
    elif m.padding_mode == "circular":
        args.append("padding='CIRCULAR'")
        notes.append("torch padding_mode='circular'")
    else:
        raise NotImplementedError(f"padding_mode={m.padding_mode!r} has no nnx.Conv counterpart")
    if tuple(m.dilation) != (1,) * nd:
        args.append(f"kernel_dilation={tuple(m.dilation)}")
    if m.groups != 1:
        args.append(f"feature_group_count={m.groups}")
    if m.bias is None:
        args.append("use_bias=False")
    return f"nnx.Conv({', '.join(args)}, rngs=rngs)", notes


def _tconv_source(m):
    nd = len(m.kernel_size)
    args = [str(m.in_channels), str(m.out_channels), str(tuple(m.kernel_size))]
    args.append(f"strides={tuple(m.stride)}")
    args.append(f"padding={tconv_padding(m)}")
    if tuple(m.dilation) != (1,) * nd:
        args.append(f"kernel_dilation={tuple(m.dilation)}")
    if m.bias is None:
        args.append("use_bias=False")
    return (f"nnx.ConvTranspose({', '.join(args)}, rngs=rngs)",
            ["padding (d(k-1)-p, d(k-1)-p+output_padding): torch's padding and output_padding"])


def _batchnorm_source(m):
    notes = []
    mom = 0.9 if m.momentum is None else 1 - m.momentum
    args = [str(m.num_features), f"momentum={mom:g}", f"epsilon={m.eps:g}", "use_fast_variance=False"]
    notes.append(f"torch momentum {m.momentum} is the weight of the new value; Flax's is the old one's")
    notes.append("use_fast_variance=False: E[x^2]-E[x]^2 loses digits")
    if not m.affine:
        args += ["use_bias=False", "use_scale=False"]
    if not m.track_running_stats:
        args.append("use_running_average=False")
        notes.append("torch track_running_stats=False: batch statistics always")
    return f"nnx.BatchNorm({', '.join(args)}, rngs=rngs)", notes


def _groupnorm_source(m):
    args = [str(m.num_channels), f"num_groups={m.num_groups}", f"epsilon={m.eps:g}", "use_fast_variance=False"]
    if not m.affine:
        args += ["use_bias=False", "use_scale=False"]
    return (f"nnx.GroupNorm({', '.join(args)}, rngs=rngs)",
            ["epsilon: torch's eps, written out (Flax's default is 1e-6, torch's 1e-5)", "num_groups: Flax's default is 32",
             "use_fast_variance=False: E[x^2]-E[x]^2 loses digits"])


def _instancenorm_source(m):
    args = [str(m.num_features), f"epsilon={m.eps:g}", "use_fast_variance=False"]
    if not m.affine:
        args += ["use_bias=False", "use_scale=False"]
    return (f"nnx.InstanceNorm({', '.join(args)}, rngs=rngs)",
            ["epsilon: Flax's default is 1e-6", "use_fast_variance=False: E[x^2]-E[x]^2 loses digits"])


def _layernorm_source(m):
    shape = tuple(m.normalized_shape)
    if len(shape) != 1:
        raise NotImplementedError(f"normalized_shape={shape}: nnx.LayerNorm normalises one axis here")
    args = [str(shape[0]), f"epsilon={m.eps:g}", "use_fast_variance=False"]
    if not m.elementwise_affine:
        args += ["use_bias=False", "use_scale=False"]
    elif getattr(m, "bias", None) is None:
        args.append("use_bias=False")
    return (f"nnx.LayerNorm({', '.join(args)}, rngs=rngs)",
            ["epsilon: torch's eps, written out (Flax's default is 1e-6, torch's 1e-5)", "use_fast_variance=False: E[x^2]-E[x]^2 loses digits"])


def _rmsnorm_source(m):
    shape = tuple(m.normalized_shape)
    if len(shape) != 1:
        raise NotImplementedError(f"normalized_shape={shape}: nnx.RMSNorm normalises one axis here")
    if m.eps is None:
        raise NotImplementedError("torch eps=None (the dtype's machine epsilon) has no fixed Flax epsilon")
    args = [str(shape[0]), f"epsilon={m.eps:g}"]
    if not m.elementwise_affine:
        args.append("use_scale=False")
    return f"nnx.RMSNorm({', '.join(args)}, rngs=rngs)", ["epsilon: Flax's default is 1e-6"]


def _embedding_source(m):
    notes = []
    if m.padding_idx is not None:
        notes.append(f"torch padding_idx={m.padding_idx} only zeroes that row's gradient (the call stops it)")
    if m.max_norm is not None:
        raise NotImplementedError("max_norm renormalises rows in place: nnx.Embed has no counterpart")
    return f"nnx.Embed({m.num_embeddings}, {m.embedding_dim}, rngs=rngs)", notes


def _prelu_source(m):
    return f"nnx.PReLU({float(m.init) if hasattr(m, 'init') else 0.25}, rngs=rngs)", []


def _dropout_source(m):
    return f"nnx.Dropout({m.p:g}, rngs=rngs)", []


# ---------------------------------------------------------------- parameterless layers
def _dropout_notes(tm, fm, ctx) -> list[str]:
    out = []
    if not ctx.train:  # eval mode: Dropout is the identity on both sides, whatever its settings
        return out
    fp = getattr(fm, "rate", getattr(fm, "p", None))
    if fp is not None and not np.isclose(fp, tm.p):
        out.append(f"dropout probability: torch {tm.p:g}, Flax {fp:g}")
    if getattr(fm, "broadcast_dims", ()):
        out.append("nnx.Dropout broadcast_dims drops whole slices; torch's Dropout drops elements")
    return out


DROPOUT = Kind("dropout", (nn.Dropout,), (nnx.Dropout, jax_impl.layers.Dropout), notes=_dropout_notes,
               summary="no arrays; in training mode both sides get the same masks",
               flax_source=lambda m: _dropout_source(m))
MAXPOOL = Kind("maxpool", (nn.MaxPool2d,), (jax_impl.pooling.MaxPool2d,), channels_last=True, summary="no arrays")
AVGPOOL = Kind("avgpool", (nn.AvgPool2d,), (jax_impl.pooling.AvgPool2d,), channels_last=True, summary="no arrays")
ADAPTIVE_AVGPOOL = Kind("adaptive_avgpool", (nn.AdaptiveAvgPool2d,), (jax_impl.pooling.AdaptiveAvgPool2d,),
                        channels_last=True, summary="no arrays")
FLATTEN = Kind("flatten", (nn.Flatten,), (jax_impl.layers.Flatten,),
               summary="no arrays; a Flatten of an NHWC map reorders (H, W, C) → (C, H, W) when compared")

STOCK = (LINEAR, CONV, CONV_TRANSPOSE, BATCHNORM, GROUPNORM, INSTANCENORM, LAYERNORM, RMSNORM, EMBEDDING, PRELU,
         DROPOUT, MAXPOOL, AVGPOOL, ADAPTIVE_AVGPOOL, FLATTEN)
