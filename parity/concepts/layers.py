"""Concepts of docs/concepts.md §4's CNN layers: Conv2d, pooling, Flatten → Linear, Dropout, BatchNorm2d.

Inputs are NCHW (torch's layout); every JAX adapter turns them into NHWC, runs the Flax layer and
turns the result back, so outputs and input gradients are compared in one layout.
"""
from __future__ import annotations

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
def _conv_samples(rng, dt):
    cases = [  # label, input shape (N, C, H, W), Conv2d arguments
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
        # the input gradient once needed negative padding here, which aborted XLA:CPU's f64 compile
        ("s2 k2 p1 on a 1-pixel-high input", (2, 2, 1, 6),
         dict(in_channels=2, out_channels=2, kernel_size=2, stride=2, padding=1)),
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
        out.append(Sample(label, {"x": _randn(rng, shape, dt)}, params, {**kw, "dtype": dt.name}))
    out.append(Sample("seed 4x4 example", {"x": np.array(SEED_INPUT, dt)[None, None]},
                      {"weight": np.array(SEED_KERNEL, dt)[None, None]},
                      dict(in_channels=1, out_channels=1, kernel_size=3, bias=False, dtype=dt.name)))
    return out


def _torch_conv(p, x, dtype, **kw):
    m = T.conv.Conv2d(**kw, dtype=getattr(torch, dtype)).to(_device(x))
    return bridge.torch_call(m, p, x["x"])


def _jax_conv(p, x, dtype, **kw):
    return _nhwc(bridge.flax_module(J.conv.Conv2d, p, **kw, dtype=dtype), x["x"])


CONCEPTS.append(Concept(
    name="layers.conv2d", group="layers",
    summary="Conv2d: kernel int/pair, stride, padding int/pair/'same'/'valid', dilation, groups, bias",
    samples=_conv_samples, jax=_jax_conv, torch=_torch_conv,
    covers=("conv.Conv2d",), grad_inputs=("x",),
    params_to_jax=convert.conv_torch_to_flax, grads_to_torch=convert.conv_flax_to_torch))


# ---------------------------------------------------------------- pooling
def _pool_samples(cases):
    def samples(rng, dt):
        out = []
        for label, shape, kw, *ties in cases:
            x = rng.integers(0, 3, shape).astype(dt) if ties else _randn(rng, shape, dt)
            out.append(Sample(label, {"x": x}, kwargs=kw, fd_ok=not ties))  # a max at a tie is a kink
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
]

_AVG_CASES = [
    ("k2 (stride = kernel)", (2, 3, 6, 6), dict(kernel_size=2)),
    ("k3 s2 p1 count_include_pad", (1, 2, 7, 7), dict(kernel_size=3, stride=2, padding=1)),
    ("ceil k3 s2 p1 include pad (ceil's extra not counted)", (1, 2, 6, 6),
     dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ("ceil k3 s2 p1 exclude pad", (1, 2, 6, 6),
     dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)),
    ("k(2,3) s(1,2) p1", (2, 2, 5, 7), dict(kernel_size=(2, 3), stride=(1, 2), padding=1)),
    ("batch 1, 1x1, k1", (1, 3, 1, 1), dict(kernel_size=1)),
]


def _torch_pool(cls, p, x, **kw):
    return getattr(T.pooling, cls)(**kw)(x["x"])


def _jax_pool(cls, p, x, **kw):
    return _nhwc(getattr(J.pooling, cls)(**kw), x["x"])


CONCEPTS.append(Concept(
    name="layers.max_pool2d", group="layers",
    summary="MaxPool2d: stride defaults to kernel, −inf padding, dilation, torch's ceil_mode rule",
    samples=_pool_samples(_MAX_CASES), jax=partial(_jax_pool, "MaxPool2d"),
    torch=partial(_torch_pool, "MaxPool2d"), covers=("pooling.MaxPool2d",), grad_inputs=("x",)))

CONCEPTS.append(Concept(
    name="layers.avg_pool2d", group="layers",
    summary="AvgPool2d: ceil_mode and count_include_pad with torch's divisors",
    samples=_pool_samples(_AVG_CASES), jax=partial(_jax_pool, "AvgPool2d"),
    torch=partial(_torch_pool, "AvgPool2d"), covers=("pooling.AvgPool2d",), grad_inputs=("x",)))


def _adaptive_samples(rng, dt):
    return [Sample(f"{shape[2:]}->{size}", {"x": _randn(rng, shape, dt)}, kwargs={"output_size": size})
            for shape, size in (((2, 3, 5, 7), (2, 3)), ((1, 2, 3, 3), (4, 4)),
                                ((2, 3, 4, 6), 1), ((1, 2, 5, 5), (None, 2)))]


CONCEPTS.append(Concept(
    name="layers.adaptive_avg_pool2d", group="layers",
    summary="AdaptiveAvgPool2d: torch's overlapping windows [⌊iH/out⌋, ⌈(i+1)H/out⌉), None keeps a size",
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
    name="layers.flatten_linear", group="layers",
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
    name="layers.dropout", group="layers",
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
    name="layers.batchnorm2d", group="layers",
    summary="BatchNorm2d train (batch stats, unbiased running var) and eval; momentum=None, "
            "track_running_stats=False, affine=False, empty batches; running mean/var and count compared",
    samples=_bn_samples, jax=_jax_bn, torch=_torch_bn,
    covers=("normalization.BatchNorm2d",), grad_inputs=("x",),
    params_to_jax=convert.batchnorm_torch_to_flax, grads_to_torch=convert.batchnorm_flax_to_torch))
