"""Pooling in Flax NNX on NHWC input: max, average and adaptive average, with torch's rules.

Flax's pooling functions default to stride 1 and have no ceil_mode (traps 7, 8); these layers
implement torch's output-size formula, its last-window rule and its divisors themselves.
dtypes follow torch's kernels (shape_rules.dtypes): max pooling takes floating and integer input and
keeps its dtype, average pooling floating input and int64 (truncating division), adaptive average
pooling floating input only; float16/bfloat16 sums accumulate in float32 (XLA's reduce_window would
sum in float16).
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from shape_rules import at_least, pair, pool_args, pool_out_size
from shape_rules.dtypes import check_dtype, compute_dtype

from jax_impl.checks import check_input, check_x64


def _geometry(layer, x, kernel, stride, padding, dilation, ceil_mode):
    """Output size and the (low, high) padding that covers every window, per spatial axis."""
    check_x64(x)
    check_input(layer, x, None)
    outs, pads = [], []
    for axis, n, k, s, p, d in zip(("height", "width"), x.shape[1:3], kernel, stride, padding, dilation):
        o = pool_out_size(layer, axis, n, k, s, p, d, ceil_mode)
        outs.append(o)
        pads.append((p, max(p, (o - 1) * s + d * (k - 1) + 1 - n - p)))
    return tuple(outs), tuple(pads)


@partial(jax.jit, static_argnames=("kernel", "stride", "pads", "dilation", "out"))
def _max_pool2d(x, kernel, stride, pads, dilation, out):
    # −inf padding (trap 9); for integers the smallest value, which never wins: every window holds input
    low = -jnp.inf if jnp.issubdtype(x.dtype, jnp.floating) else jnp.iinfo(x.dtype).min
    xp = jnp.pad(x, ((0, 0), *pads, (0, 0)), constant_values=low)
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel, stride, dilation, out
    windows = jnp.stack([xp[:, i * dh:i * dh + (oh - 1) * sh + 1:sh, j * dw:j * dw + (ow - 1) * sw + 1:sw]
                         for i in range(kh) for j in range(kw)], axis=3)
    # The first maximum in the window (row-major), as torch: the gradient goes to that one element.
    first = jnp.argmax(windows, axis=3, keepdims=True)
    return jnp.where(jnp.arange(kh * kw)[:, None] == first, windows, 0).sum(axis=3, dtype=x.dtype)


class MaxPool2d(nnx.Module):
    """Max over (dilated) windows of NHWC input; stride defaults to the kernel, padding is −inf.

    Flax has no ceil_mode and no VJP for dilated max windows: torch's rule is implemented here.
    """

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
        self.kernel_size, self.stride, self.padding, self.dilation = pool_args(
            "MaxPool2d", kernel_size, stride, padding, dilation)
        self.ceil_mode = bool(ceil_mode)

    def __call__(self, x):
        out, pads = _geometry("MaxPool2d", x, self.kernel_size, self.stride, self.padding,
                              self.dilation, self.ceil_mode)
        check_dtype("MaxPool2d", "input", x.dtype.name)
        return _max_pool2d(x, self.kernel_size, self.stride, pads, self.dilation, out)


def _divisors(n, k, s, p, out, count_include_pad) -> np.ndarray:
    """torch's avg-pool divisor per window: padding counts only inside [−p, n + p), never ceil's extra."""
    start = np.arange(out) * s - p
    end = np.minimum(start + k, n + p)
    if count_include_pad:
        return end - start
    return np.minimum(end, n) - np.maximum(start, 0)


@partial(jax.jit, static_argnames=("kernel", "stride", "padding", "pads", "out", "count_include_pad"))
def _avg_pool2d(x, kernel, stride, padding, pads, out, count_include_pad):
    dt = compute_dtype(x.dtype.name)
    sums = jax.lax.reduce_window(x.astype(dt), np.zeros((), dt), jax.lax.add, (1, *kernel, 1),
                                 (1, *stride, 1), ((0, 0), *pads, (0, 0)))
    dh, dw = (_divisors(n, k, s, p, o, count_include_pad)
              for n, k, s, p, o in zip(x.shape[1:3], kernel, stride, padding, out))
    divisors = jnp.asarray(np.outer(dh, dw)[None, :, :, None], dt)
    if jnp.issubdtype(dt, jnp.integer):  # torch's int64 kernel divides in integers, truncating toward 0
        return jax.lax.div(sums, divisors)
    return (sums / divisors).astype(x.dtype)


class AvgPool2d(nnx.Module):
    """Mean over windows of NHWC input; stride defaults to the kernel.

    Implements torch's ceil_mode and its count_include_pad divisor, which Flax's avg_pool lacks.
    """

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
        self.kernel_size, self.stride, self.padding, _ = pool_args(
            "AvgPool2d", kernel_size, stride, padding, 1)
        self.ceil_mode, self.count_include_pad = bool(ceil_mode), bool(count_include_pad)

    def __call__(self, x):
        out, pads = _geometry("AvgPool2d", x, self.kernel_size, self.stride, self.padding, (1, 1),
                              self.ceil_mode)
        check_dtype("AvgPool2d", "input", x.dtype.name)
        return _avg_pool2d(x, self.kernel_size, self.stride, self.padding, pads, out,
                           self.count_include_pad)


@partial(jax.jit, static_argnames=("out",))
def _adaptive_avg_pool2d(x, out):
    (h, w), (oh, ow), dtype = x.shape[1:3], out, x.dtype
    x = x.astype(compute_dtype(dtype.name))
    rows = []
    for i in range(oh):
        h0, h1 = i * h // oh, -(-(i + 1) * h // oh)
        rows.append(jnp.stack([x[:, h0:h1, j * w // ow:-(-(j + 1) * w // ow)].mean(axis=(1, 2))
                               for j in range(ow)], axis=1))
    return jnp.stack(rows, axis=1).astype(dtype)


class AdaptiveAvgPool2d(nnx.Module):
    """Mean over torch's adaptive windows [⌊i·H/out⌋, ⌈(i+1)·H/out⌉) to a fixed NHWC output size.

    Flax has no adaptive pooling; None in output_size keeps that input size, as in torch.
    """

    def __init__(self, output_size):
        size = pair("AdaptiveAvgPool2d", "output_size", output_size, allow_none=True)
        at_least("AdaptiveAvgPool2d", "output_size", tuple(1 if s is None else s for s in size), 1)
        self.output_size = size

    def __call__(self, x):
        check_x64(x)
        check_input("AdaptiveAvgPool2d", x, None)
        out = tuple(n if s is None else s for n, s in zip(x.shape[1:3], self.output_size))
        if 0 in x.shape[1:3]:
            raise ValueError(f"AdaptiveAvgPool2d: expected a non-empty input, got shape {tuple(x.shape)}")
        check_dtype("AdaptiveAvgPool2d", "input", x.dtype.name)
        return _adaptive_avg_pool2d(x, out)
