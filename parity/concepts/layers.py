"""Concepts of docs/concepts.md §4's CNN layers: Conv2d, pooling, Flatten → Linear, Dropout, BatchNorm2d.

Inputs are NCHW (torch's layout); every JAX adapter turns them into NHWC, runs the Flax layer and
turns the result back, so outputs and input gradients are compared in one layout.
"""
from __future__ import annotations

import warnings
from functools import partial

import numpy as np
import torch
from flax import nnx

import jax_impl as J
import torch_impl as T
from parity import bridge, convert
from parity.concept import Concept, Sample

CONCEPTS: list[Concept] = []
SEED_INPUT = [[1, 2, 1, 0], [2, 0, 1, 3], [0, 5, 4, 2], [4, 1, 2, 5]]  # docs/concepts.md §4
SEED_KERNEL = [[0, 1, 0], [2, 1, 1], [1, 0, 1]]


def _randn(rng, shape, dt):
    return rng.standard_normal(shape).astype(dt)


def _device(x: dict) -> torch.device:
    return next(iter(x.values())).device


def _nhwc(f, x):
    """Run a Flax layer `f` on an NCHW input and return NCHW."""
    return convert.nhwc_to_nchw(f(convert.nchw_to_nhwc(x)))


# ---------------------------------------------------------------- Conv2d
def _to_jax_layout(a):
    """NCHW → NHWC, or an unbatched CHW → HWC (torch's twin takes (C, H, W), Flax's (H, W, C))."""
    return a.transpose(1, 2, 0) if a.ndim == 3 else convert.nchw_to_nhwc(a)


def _from_jax_layout(a):
    return a.transpose(2, 0, 1) if a.ndim == 3 else convert.nhwc_to_nchw(a)


def _jax_layout(f, *arrays):
    """Run a Flax layer `f` on NCHW (or CHW) arrays and return NCHW (or CHW), one array or a tuple."""
    out = f(*map(_to_jax_layout, arrays))
    return tuple(map(_from_jax_layout, out)) if isinstance(out, tuple) else _from_jax_layout(out)


def _conv_samples(rng, dt):
    cases = [  # label, input shape (N, C, H, W) or unbatched (C, H, W), Conv2d arguments
        ("3->4 k3", (2, 3, 6, 6), dict(in_channels=3, out_channels=4, kernel_size=3)),
        ("k(2,3) s(2,1) p(1,2) no bias", (2, 2, 7, 5),
         dict(in_channels=2, out_channels=3, kernel_size=(2, 3), stride=(2, 1), padding=(1, 2), bias=False)),
        ("'same' even k4 (odd pixel right)", (1, 2, 5, 6),
         dict(in_channels=2, out_channels=2, kernel_size=4, padding="same")),
        ("'same' k(2,3) d(3,1)", (1, 2, 6, 5),
         dict(in_channels=2, out_channels=3, kernel_size=(2, 3), dilation=(3, 1), padding="same")),
        ("groups 2 d2 p2", (2, 4, 7, 7),
         dict(in_channels=4, out_channels=6, kernel_size=3, dilation=2, padding=2, groups=2)),
        ("depthwise groups=C, 'valid' s2", (1, 3, 6, 5),
         dict(in_channels=3, out_channels=6, kernel_size=3, stride=2, padding="valid", groups=3)),
        ("batch 1, 1x1 input, k1", (1, 3, 1, 1), dict(in_channels=3, out_channels=2, kernel_size=1)),
        # XLA:CPU aborts compiling this gradient when the convolution op gets the padding itself
        # (jax_impl/conv.py pads strided convolutions before the op); the shallow one runs as im2col
        ("s2 k2 p1 on a 1-pixel-high input", (2, 2, 1, 6),
         dict(in_channels=2, out_channels=2, kernel_size=2, stride=2, padding=1)),
        ("s2 k2 p1 on a 1-pixel-high input, deep kernel (the convolution op)", (2, 9, 1, 6),
         dict(in_channels=9, out_channels=2, kernel_size=2, stride=2, padding=1)),
        # the JAX twin runs shallow kernels (kh·kw·C <= jax_impl.conv.IM2COL_MAX_DEPTH) as one matrix
        # product and deeper ones as lax.conv_general_dilated: these take the convolution op, stride 1
        # padded by the op, strided padded and cropped before it
        ("deep kernel 8->4 k3 p1 (convolution op, its own padding)", (2, 8, 6, 6),
         dict(in_channels=8, out_channels=4, kernel_size=3, padding=1)),
        ("deep kernel 8->4 k3 s2 p1 d(1,2) (padded, cropped)", (2, 8, 7, 8),
         dict(in_channels=8, out_channels=4, kernel_size=3, stride=2, padding=1, dilation=(1, 2))),
        ("one-element tuples: stride (2,), padding (1,), dilation (2,)", (1, 2, 7, 7),
         dict(in_channels=2, out_channels=3, kernel_size=3, stride=(2,), padding=(1,), dilation=(2,))),
        ("unbatched (C, H, W) input", (3, 5, 6), dict(in_channels=3, out_channels=2, kernel_size=3, padding=1)),
        ("unbatched, deep kernel, s2", (8, 5, 5), dict(in_channels=8, out_channels=2, kernel_size=3, stride=2)),
        ("empty batch N=0", (0, 3, 5, 5), dict(in_channels=3, out_channels=2, kernel_size=3)),
        ("empty batch N=0, deep kernel, s2 p1", (0, 8, 6, 6),
         dict(in_channels=8, out_channels=4, kernel_size=3, stride=2, padding=1)),
        ("padding_mode reflect, p(1,2)", (2, 2, 5, 6),
         dict(in_channels=2, out_channels=3, kernel_size=3, padding=(1, 2), padding_mode="reflect")),
        ("padding_mode replicate, 'same' even k4", (1, 3, 5, 6),
         dict(in_channels=3, out_channels=2, kernel_size=4, padding="same", padding_mode="replicate")),
        ("padding_mode circular, deep kernel, s2 p2 (wraps a 2-pixel-wide input)", (1, 8, 5, 2),
         dict(in_channels=8, out_channels=2, kernel_size=3, stride=2, padding=2, padding_mode="circular")),
    ]
    out = []
    for label, shape, kw in cases:
        kh, kw_ = (kw["kernel_size"],) * 2 if isinstance(kw["kernel_size"], int) else kw["kernel_size"]
        g = kw.get("groups", 1)
        bound = 1 / np.sqrt(kw["in_channels"] // g * kh * kw_)  # torch's init range, drawn in NumPy
        shape_w = (kw["out_channels"], kw["in_channels"] // g, kh, kw_)
        params = {"weight": rng.uniform(-bound, bound, shape_w).astype(dt)}
        if kw.get("bias", True):
            params["bias"] = rng.uniform(-bound, bound, (kw["out_channels"],)).astype(dt)
        # an empty batch has nothing to differentiate numerically; parity still compares its
        # (empty) input gradient and its (zero) parameter gradients
        out.append(Sample(label, {"x": _randn(rng, shape, dt)}, params, {**kw, "dtype": dt.name},
                          fd_ok=shape[0] > 0))
    out.append(Sample("seed 4x4 example", {"x": np.array(SEED_INPUT, dt)[None, None]},
                      {"weight": np.array(SEED_KERNEL, dt)[None, None]},
                      dict(in_channels=1, out_channels=1, kernel_size=3, bias=False, dtype=dt.name)))
    return out


# torch's note when padding='same' meets an even kernel (its left/right pads differ, so it pads a copy
# of the input); a UserWarning from its C++ kernel, once per process
SAME_PADDING_NOTE = r"Using padding='same' with even kernel lengths and odd dilation may require a zero-padded copy"


def torch_conv_call(m, p, x):
    """`m(x)` with parameters `p` (bridge.torch_call), for a Conv2d. The samples use padding='same'
    with even kernels on purpose (torch's asymmetric 'same' padding, docs/traps.md trap 6), so torch's note
    about the padded copy it then makes is expected here and silenced, that message only and only
    around this call; a user's own Conv2d still shows it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=SAME_PADDING_NOTE, category=UserWarning)
        return bridge.torch_call(m, p, x)


def _torch_conv(p, x, dtype, **kw):
    m = T.conv.Conv2d(**kw, dtype=getattr(torch, dtype)).to(_device(x))
    return torch_conv_call(m, p, x["x"])


def _jax_conv(p, x, dtype, **kw):
    return _jax_layout(bridge.flax_module(J.conv.Conv2d, p, **kw, dtype=dtype), x["x"])


CONCEPTS.append(Concept(
    name="layers.conv2d", group="layers", traps=(5,),
    summary="Conv2d: kernel int/pair, stride, padding int/pair/'same'/'valid', dilation (one-element tuples "
            "too), groups, bias, padding_mode; unbatched (C, H, W) input, empty batch; shallow and deep kernels",
    samples=_conv_samples, jax=_jax_conv, torch=_torch_conv,
    covers=("conv.Conv2d",), grad_inputs=("x",),
    params_to_jax=convert.conv_torch_to_flax, grads_to_torch=convert.conv_flax_to_torch))


# ---------------------------------------------------------------- pooling
def _special_input(rng, shape, dt, kind):
    """Integer values (ties in most windows), or those with NaN and −inf in some windows."""
    x = rng.integers(0, 3, shape).astype(dt)
    if kind == "nan":
        x[rng.random(shape) < 0.2] = np.nan  # windows with one NaN, with several, with none
        x[rng.random(shape) < 0.2] = -np.inf
        x[(slice(None),) * (len(shape) - 2) + (slice(0, 2), slice(0, 2))] = -np.inf  # a window of −inf only
    return x


def _pool_samples(cases, seed_sample=True):
    def samples(rng, dt):
        out = []
        for label, shape, kw, *special in cases:
            x = _special_input(rng, shape, dt, special[0]) if special else _randn(rng, shape, dt)
            # a max at a tie is a kink; NaN and an empty batch leave nothing to difference numerically
            out.append(Sample(label, {"x": x}, kwargs=kw, fd_ok=not special and shape[0] > 0))
        if seed_sample:
            out.append(Sample("seed 4x4, k3, ceil_mode", {"x": np.array(SEED_INPUT, dt)[None, None]},
                              kwargs=dict(kernel_size=3, ceil_mode=True)))  # each window's maximum is unique
        return out
    return samples


_MAX_CASES = [
    ("k3 s2 p1", (2, 2, 7, 7), dict(kernel_size=3, stride=2, padding=1)),
    ("ceil: last window would start in right padding", (1, 2, 4, 4),
     dict(kernel_size=2, stride=3, padding=1, ceil_mode=True)),
    ("ceil k3 s2 on 6x5", (1, 2, 6, 5), dict(kernel_size=3, stride=2, ceil_mode=True)),
    ("k(2,3) s(1,2) p1 d2", (2, 2, 7, 8), dict(kernel_size=(2, 3), stride=(1, 2), padding=1, dilation=2)),
    ("ceil, kernel beyond a 2x2 input", (1, 1, 2, 2), dict(kernel_size=3, stride=3, ceil_mode=True)),
    ("ties: integer input, k3 s2 p1", (2, 2, 5, 5), dict(kernel_size=3, stride=2, padding=1), "ties"),
    ("ties, k3 s1 p1: overlapping windows add their gradients", (1, 2, 5, 6),
     dict(kernel_size=3, stride=1, padding=1), "ties"),
    ("NaN and −inf: the last NaN of a window, or its first in-input tap, takes the gradient", (2, 2, 6, 7),
     dict(kernel_size=3, stride=2, padding=1, ceil_mode=True), "nan"),
    ("NaN and −inf, k2 tiling", (1, 3, 6, 6), dict(kernel_size=2), "nan"),
    ("one-element tuples: k (3,), s (2,), p (1,), d (2,)", (1, 2, 9, 8),
     dict(kernel_size=(3,), stride=(2,), padding=(1,), dilation=(2,))),
    ("unbatched (C, H, W) input, k2", (3, 6, 5), dict(kernel_size=2)),
    ("empty batch N=0, k3 s2 p1", (0, 2, 6, 6), dict(kernel_size=3, stride=2, padding=1)),
]

# return_indices=True: torch's flat h·W + w per image and channel (the JAX twin's are NHWC, the same numbers)
_MAX_INDEX_CASES = [(label, shape, {**kw, "return_indices": True}, *special) for label, shape, kw, *special in (
    ("k3 s2 p1", (2, 2, 7, 7), dict(kernel_size=3, stride=2, padding=1)),
    ("k2 tiling", (2, 3, 6, 8), dict(kernel_size=2)),
    ("ceil k3 s2 on 6x5", (1, 2, 6, 5), dict(kernel_size=3, stride=2, ceil_mode=True)),
    ("k(2,3) s(1,2) p1 d2", (2, 2, 7, 8), dict(kernel_size=(2, 3), stride=(1, 2), padding=1, dilation=2)),
    ("ties, k3 s1 p1", (1, 2, 5, 6), dict(kernel_size=3, stride=1, padding=1), "ties"),
    ("NaN and −inf, k3 s2 p1 ceil", (2, 2, 6, 7), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True), "nan"),
    ("unbatched (C, H, W) input", (3, 6, 5), dict(kernel_size=2, padding=1)),
    ("empty batch N=0", (0, 2, 6, 6), dict(kernel_size=3, stride=2, padding=1)),
)]

_AVG_CASES = [
    ("k2 (stride = kernel)", (2, 3, 6, 6), dict(kernel_size=2)),
    ("k3 s2 p1 count_include_pad", (1, 2, 7, 7), dict(kernel_size=3, stride=2, padding=1)),
    ("ceil k3 s2 p1 include pad (ceil's extra not counted)", (1, 2, 6, 6),
     dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ("ceil k3 s2 p1 exclude pad", (1, 2, 6, 6),
     dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)),
    ("k(2,3) s(1,2) p1", (2, 2, 5, 7), dict(kernel_size=(2, 3), stride=(1, 2), padding=1)),
    ("batch 1, 1x1, k1", (1, 3, 1, 1), dict(kernel_size=1)),
    ("divisor_override 3, ceil k3 s2 p1 (every window, padding or not)", (1, 2, 6, 6),
     dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, divisor_override=3)),
    ("divisor_override -2, k2 p1 exclude pad", (2, 2, 5, 5),
     dict(kernel_size=2, padding=1, count_include_pad=False, divisor_override=-2)),
    ("one-element tuples: k (3,), s (2,), p (1,)", (1, 2, 7, 7), dict(kernel_size=(3,), stride=(2,), padding=(1,))),
    ("unbatched (C, H, W) input", (2, 6, 5), dict(kernel_size=2, divisor_override=5)),
    ("empty batch N=0", (0, 2, 6, 6), dict(kernel_size=3, stride=2, padding=1)),
]


def _torch_pool(cls, p, x, **kw):
    return getattr(T.pooling, cls)(**kw)(x["x"])


def _jax_pool(cls, p, x, **kw):
    return _jax_layout(getattr(J.pooling, cls)(**kw), x["x"])


CONCEPTS.append(Concept(
    name="layers.max_pool2d", group="layers", traps=(7, 8, 9),
    summary="MaxPool2d: stride defaults to kernel, −inf padding, dilation, torch's ceil_mode rule; ties (first "
            "maximum), NaN (last NaN), one-element tuples, unbatched input, empty batch",
    samples=_pool_samples(_MAX_CASES), jax=partial(_jax_pool, "MaxPool2d"),
    torch=partial(_torch_pool, "MaxPool2d"), covers=("pooling.MaxPool2d",), grad_inputs=("x",)))

CONCEPTS.append(Concept(
    name="layers.max_pool2d_indices", group="layers",
    summary="MaxPool2d(return_indices=True): torch's flat per-channel indices h·W + w, compared exactly",
    samples=_pool_samples(_MAX_INDEX_CASES, seed_sample=False), jax=partial(_jax_pool, "MaxPool2d"),
    torch=partial(_torch_pool, "MaxPool2d"), covers=("pooling.MaxPool2d",), grad_inputs=("x",)))


def _unpool_samples(rng, dt):
    cases = [  # label, pooled input shape, pooling/unpooling arguments, output_size
        ("k2 on 6x6, default size", (2, 3, 6, 6), dict(kernel_size=2), None),
        ("k2 on 7x7, output_size (7, 7)", (1, 2, 7, 7), dict(kernel_size=2), (7, 7)),
        ("k3 s2 p1 (overlapping windows: repeated indices)", (2, 2, 7, 7),
         dict(kernel_size=3, stride=2, padding=1), (7, 7)),
        ("k(2,3) s(1,2), output_size the input's full NCHW shape", (2, 2, 5, 8),
         dict(kernel_size=(2, 3), stride=(1, 2)), "shape"),
        ("one-element tuples: k (2,), s (2,)", (1, 2, 6, 4), dict(kernel_size=(2,), stride=(2,)), None),
        ("unbatched (C, H, W) input", (3, 6, 4), dict(kernel_size=2), None),
        ("empty batch N=0", (0, 2, 6, 6), dict(kernel_size=2), None),
    ]
    out = []
    for label, shape, kw, size in cases:
        x = _randn(rng, shape, dt)
        y, idx = torch.nn.functional.max_pool2d(torch.from_numpy(x), return_indices=True, **kw)
        size = shape if size == "shape" else size
        # torch's gradient hands each of several equal indices the gradient at its position though
        # only one write lands: no derivative of the forward there, so no finite differences
        repeated = bool(idx.numel()) and any(len(set(p.tolist())) < p.numel() for p in idx.flatten(-2).flatten(0, -2))
        out.append(Sample(label, {"x": y.numpy(), "indices": idx.numpy()}, kwargs={**kw, "output_size": size},
                          fd_ok=shape[0] > 0 and not repeated))
    return out


def _torch_unpool(p, x, output_size, **kw):
    return T.pooling.MaxUnpool2d(**kw)(x["x"], x["indices"], output_size)


def _jax_unpool(p, x, output_size, **kw):
    if output_size is not None and len(output_size) == 4:  # a batched input's shape: NCHW → NHWC
        output_size = tuple(output_size[i] for i in (0, 2, 3, 1))
    return _jax_layout(lambda v, i: J.pooling.MaxUnpool2d(**kw)(v, i, output_size), x["x"], x["indices"])


CONCEPTS.append(Concept(
    name="layers.max_unpool2d", group="layers",
    summary="MaxUnpool2d: MaxPool2d's indices back to its input's size (default or output_size); the "
            "gradient reads each index, repeated ones included",
    samples=_unpool_samples, jax=_jax_unpool, torch=_torch_unpool,
    covers=("pooling.MaxUnpool2d",), grad_inputs=("x",)))

CONCEPTS.append(Concept(
    name="layers.avg_pool2d", group="layers", traps=(7, 8),
    summary="AvgPool2d: ceil_mode and count_include_pad with torch's divisors, divisor_override, one-element "
            "tuples, unbatched input, empty batch",
    samples=_pool_samples(_AVG_CASES), jax=partial(_jax_pool, "AvgPool2d"),
    torch=partial(_torch_pool, "AvgPool2d"), covers=("pooling.AvgPool2d",), grad_inputs=("x",)))


def _adaptive_samples(rng, dt):
    return [Sample(f"{shape}->{size}", {"x": _randn(rng, shape, dt)}, kwargs={"output_size": size},
                   fd_ok=shape[0] > 0)
            for shape, size in (((2, 3, 5, 7), (2, 3)), ((1, 2, 3, 3), (4, 4)),
                                ((2, 3, 4, 6), 1), ((1, 2, 5, 5), (None, 2)),
                                ((3, 5, 7), (2, 3)), ((0, 2, 4, 4), 2))]  # unbatched; empty batch


CONCEPTS.append(Concept(
    name="layers.adaptive_avg_pool2d", group="layers",
    summary="AdaptiveAvgPool2d: torch's overlapping windows [⌊iH/out⌋, ⌈(i+1)H/out⌉), None keeps a size; "
            "unbatched input, empty batch",
    samples=_adaptive_samples, jax=partial(_jax_pool, "AdaptiveAvgPool2d"),
    torch=partial(_torch_pool, "AdaptiveAvgPool2d"), covers=("pooling.AdaptiveAvgPool2d",), grad_inputs=("x",)))


# ---------------------------------------------------------------- Flatten → Linear
# The conversion needs the flattened map's (C, H, W); the registry's converters take the parameters
# only, so the concept fixes one shape whose three sizes differ (any mixed-up order shows).
FLATTEN_CHW = (3, 4, 5)


def _flatten_linear_samples(rng, dt):
    c, h, w = FLATTEN_CHW
    out = []
    for label, n, o, bias in (("N=2 -> 4", 2, 4, True), ("N=1 -> 1, no bias", 1, 1, False), ("N=3 -> 7", 3, 7, True)):
        bound = 1 / np.sqrt(c * h * w)
        params = {"weight": rng.uniform(-bound, bound, (o, c * h * w)).astype(dt)}
        if bias:
            params["bias"] = rng.uniform(-bound, bound, (o,)).astype(dt)
        out.append(Sample(label, {"x": _randn(rng, (n, c, h, w), dt)}, params,
                          {"out_features": o, "bias": bias, "dtype": dt.name}))
    return out


def _torch_flatten_linear(p, x, out_features, bias, dtype):
    m = T.layers.Linear(int(np.prod(FLATTEN_CHW)), out_features, bias, dtype=getattr(torch, dtype))
    return bridge.torch_call(m.to(_device(x)), p, T.layers.Flatten()(x["x"]))


def _jax_flatten_linear(p, x, out_features, bias, dtype):
    m = bridge.flax_module(J.layers.Linear, p, in_features=int(np.prod(FLATTEN_CHW)),
                           out_features=out_features, bias=bias, dtype=dtype)
    return m(J.layers.Flatten()(convert.nchw_to_nhwc(x["x"])))


CONCEPTS.append(Concept(
    name="layers.flatten_linear", group="layers", traps=(4,),
    summary=f"Flatten then Linear on (C,H,W)={FLATTEN_CHW}: torch flattens C,H,W, Flax H,W,C (docs/traps.md, trap 4)",
    samples=_flatten_linear_samples, jax=_jax_flatten_linear, torch=_torch_flatten_linear,
    covers=("layers.Flatten",), grad_inputs=("x",),
    params_to_jax=partial(convert.flatten_linear_torch_to_flax, chw=FLATTEN_CHW),
    grads_to_torch=partial(convert.flatten_linear_flax_to_torch, chw=FLATTEN_CHW)))


# ---------------------------------------------------------------- Dropout
def _dropout_samples(rng, dt):
    out = []
    for label, shape, p, training, masked in (("eval mode p=0.5: identity", (4, 6), 0.5, False, False),
                                              ("train p=0: identity", (4, 6), 0.0, True, False),
                                              ("train p=1: zeros", (4, 6), 1.0, True, False),
                                              ("train p=0.3, injected mask", (5, 6), 0.3, True, True),
                                              ("train p=0.5, injected NCHW mask", (2, 3, 4, 4), 0.5, True, True)):
        inputs = {"x": _randn(rng, shape, dt)}
        if masked:  # the documented hook: both layers apply this keep-mask instead of drawing one
            inputs["mask"] = rng.random(shape) >= p
        out.append(Sample(label, inputs, kwargs={"p": p, "training": training}))
    return out


def _torch_dropout(params, x, p, training):
    m = T.layers.Dropout(p).train(training)
    return m(x["x"], x.get("mask"))


def _jax_dropout(params, x, p, training):
    m = J.layers.Dropout(p)
    if not training:
        m.eval()
    xs, mask = x["x"], x.get("mask")
    if xs.ndim == 4:  # NCHW → NHWC; the mask is in the input's layout, so it moves with it
        return _nhwc(lambda t: m(t, None if mask is None else convert.nchw_to_nhwc(mask)), xs)
    return m(xs, mask)


CONCEPTS.append(Concept(
    name="layers.dropout", group="layers", traps=(18, 19),
    summary="Dropout: identity in eval and at p=0, zeros at p=1, equal under one injected mask (docs/traps.md, trap 18)",
    samples=_dropout_samples,
    jax=_jax_dropout, torch=_torch_dropout, covers=("layers.Dropout",), grad_inputs=("x",)))


# ---------------------------------------------------------------- BatchNorm2d
def _bn_samples(rng, dt):
    cases = [  # label, (steps, N, C, H, W), eps, momentum, affine, training, track_running_stats, empty batches first
        ("train, 1 step", (1, 4, 3, 3, 3), 1e-5, 0.1, True, True, True, 0),
        ("train, 3 steps, momentum 0.3, eps 1e-3", (3, 2, 2, 3, 3), 1e-3, 0.3, True, True, True, 0),
        ("train, affine=False", (1, 3, 2, 2, 3), 1e-5, 0.1, False, True, True, 0),
        ("train, N=1 2x2 (4 values per channel)", (1, 1, 2, 2, 2), 1e-5, 0.1, True, True, True, 0),
        ("eval (running statistics)", (1, 2, 3, 4, 4), 1e-5, 0.1, True, False, True, 0),
        ("eval, affine=False", (1, 2, 2, 3, 3), 1e-5, 0.1, False, False, True, 0),
        ("train, momentum=None (cumulative average), 3 steps", (3, 2, 3, 2, 2), 1e-5, None, True, True, True, 0),
        ("train, momentum=None after an empty batch (counted: 1/2, then 1/3)", (2, 2, 3, 2, 2), 1e-5, None,
         True, True, True, 1),
        ("train, track_running_stats=False", (2, 3, 2, 2, 3), 1e-5, 0.1, True, True, False, 0),
        ("eval, track_running_stats=False (batch statistics)", (1, 3, 2, 3, 2), 1e-5, 0.1, True, False, False, 0),
        ("eval, no statistics, affine=False", (1, 2, 3, 2, 2), 1e-5, 0.1, False, False, False, 0),
        ("train, empty batch N=0: empty output, statistics kept, batch counted", (2, 0, 3, 2, 2), 1e-5, 0.1,
         True, True, True, 0),
        ("train, empty 0x2 images", (1, 2, 2, 0, 2), 1e-5, None, True, True, True, 0),
        ("eval, empty batch", (1, 0, 2, 3, 3), 1e-5, 0.1, True, False, True, 0),
    ]
    out = []
    for label, shape, eps, momentum, affine, training, track, empty_first in cases:
        c = shape[2]
        x = _randn(rng, shape, dt) * 2 + 1
        inputs = {"x": x}
        if track:
            inputs.update(running_mean=_randn(rng, (c,), dt), running_var=rng.uniform(0.5, 2.0, (c,)).astype(dt))
        if empty_first:
            inputs["empty_first"] = np.zeros((empty_first, 0, *shape[2:]), dt)
        params = {"weight": rng.uniform(0.5, 1.5, (c,)).astype(dt), "bias": _randn(rng, (c,), dt)} if affine else {}
        # fd_ok=False in training with running statistics: the updated running statistics are outputs
        # that depend on x but are not differentiated (torch updates them in place), so finite
        # differences see a slope autodiff does not; tests/test_layers_goldens.py checks y's gradient
        # in training instead. Empty inputs have nothing to differentiate.
        out.append(Sample(label, inputs, params, dict(num_features=c, eps=eps, momentum=momentum, affine=affine,
                                                      training=training, track_running_stats=track,
                                                      dtype=dt.name),
                          fd_ok=not (training and track) and x.size > 0))
    return out


def _torch_bn(p, x, num_features, eps, momentum, affine, training, track_running_stats, dtype):
    m = T.normalization.BatchNorm2d(num_features, eps, momentum, affine, track_running_stats,
                                    dtype=getattr(torch, dtype))
    m = m.to(_device(x)).train(training)
    state = dict(p)
    if track_running_stats:
        state.update(running_mean=x["running_mean"].clone(), running_var=x["running_var"].clone(),
                     num_batches_tracked=torch.zeros((), dtype=torch.long, device=_device(x)))
    steps = [*x["empty_first"], *x["x"]] if "empty_first" in x else list(x["x"])
    for step in steps:  # functional_call swaps these tensors in, so the running update lands in them
        y = torch.func.functional_call(m, state, (step,))
    if not track_running_stats:
        return (y,)
    return y, state["running_mean"], state["running_var"], state["num_batches_tracked"]


def _jax_bn(p, x, num_features, eps, momentum, affine, training, track_running_stats, dtype):
    m = J.normalization.BatchNorm2d(num_features, eps, momentum, affine, track_running_stats, dtype=dtype)
    state = nnx.state(m)
    stats = {"mean": x["running_mean"], "var": x["running_var"]} if track_running_stats else {}
    nnx.replace_by_pure_dict(state, {**p, **stats})
    nnx.update(m, state)
    if not training:
        m.eval()
    steps = [*x["empty_first"], *x["x"]] if "empty_first" in x else list(x["x"])
    for step in steps:
        y = _nhwc(m, step)
    if not track_running_stats:
        return (y,)
    return y, m.mean[...], m.var[...], m.num_batches_tracked[...]


CONCEPTS.append(Concept(
    name="layers.batchnorm2d", group="layers", traps=(11,),
    summary="BatchNorm2d train (batch stats, unbiased running var) and eval; momentum=None, "
            "track_running_stats=False, affine=False, empty batches; running mean/var and count compared",
    samples=_bn_samples, jax=_jax_bn, torch=_torch_bn,
    covers=("normalization.BatchNorm2d",), grad_inputs=("x",),
    params_to_jax=convert.batchnorm_torch_to_flax, grads_to_torch=convert.batchnorm_flax_to_torch))
