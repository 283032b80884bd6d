"""Pooling in Flax NNX on NHWC input: max (with torch's flat indices), max unpooling, average and
adaptive average, with torch's rules.

Flax's pooling functions default to stride 1 and have no ceil_mode (traps 7, 8); these layers
implement torch's output-size formula, its last-window rule and its divisors themselves.
dtypes follow torch's kernels (shape_rules.dtypes): max pooling takes floating and integer input and
keeps its dtype, average pooling floating input and int64 (truncating division), adaptive average
pooling and max unpooling floating input only; float16/bfloat16 sums accumulate in float32 (XLA's
reduce_window would sum in float16).

Every layer takes a 3-D unbatched (H, W, C) input as torch's takes (C, H, W), and an empty batch
(N = 0) as torch does: an empty result of the right shape and dtype, and empty gradients.
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from shape_rules import (at_least, check_divisor_override, check_nonempty, pair, pool_args, pool_out_size,
                         unpool_out_size)
from shape_rules.dtypes import check_dtype, compute_dtype

from jax_impl.checks import check_input, check_x64


def _batched(layer, x, channels_ok=False):
    """`x` as a 4-D batch and whether it came unbatched (3-D, torch's twin's (C, H, W))."""
    check_input(layer, x, None, unbatched=True)
    if not channels_ok:
        check_nonempty(layer, jnp.shape(x), jnp.ndim(x) == 4)
    return (x, False) if jnp.ndim(x) == 4 else (x[None], True)


def _geometry(layer, x, kernel, stride, padding, dilation, ceil_mode):
    """Output size and the (low, high) padding that covers every window, per spatial axis."""
    check_x64(x)
    outs, pads = [], []
    for axis, n, k, s, p, d in zip(("height", "width"), x.shape[1:3], kernel, stride, padding, dilation):
        o = pool_out_size(layer, axis, n, k, s, p, d, ceil_mode)
        outs.append(o)
        pads.append((p, max(p, (o - 1) * s + d * (k - 1) + 1 - n - p)))
    return tuple(outs), tuple(pads)


# ---------------------------------------------------------------- max pooling
def _lowest(dtype):
    """The padding value (trap 9) and torch's initial maximum: −inf, or an integer dtype's smallest value."""
    return -jnp.inf if jnp.issubdtype(dtype, jnp.floating) else jnp.iinfo(dtype).min


def _code_dtype(kernel):
    return jnp.int8 if kernel[0] * kernel[1] <= 127 else jnp.int32


def _first_inside(n, k, s, p, d, o) -> np.ndarray:
    """Per output position along one axis, the first window tap that reads the input, not padding."""
    return np.array([next(i for i in range(k) if 0 <= a * s - p + i * d < n) for a in range(o)])


def _takes(v, m):
    """torch's test for a window's new maximum: `value > maximum or isnan(value)` (v != v: isnan)."""
    return (v > m) | (v != v) if jnp.issubdtype(v.dtype, jnp.floating) else v > m


def _scan(x, kernel, stride, pads, dilation, out):
    """torch's max-pooling loop, on every window at once: the maximum and the tap that holds it.

    torch starts each window at −inf with the first tap inside the input, then walks the taps in
    row-major order and takes a tap when `value > maximum or isnan(value)`: so the FIRST maximum
    wins a tie, the LAST NaN wins a window holding NaN, and a window of −inf keeps its first
    in-input tap. Written as that loop over the taps' strided views, XLA fuses it into one pass
    (faster than lax.reduce_window on the CPU: docs/measurements.md, "MaxPool2d"; and equal to torch
    bit for bit: reduce_window's max returns +0 for a window whose first maximum is −0). Returns (maximum, tap code i·kw + j).
    """
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel, stride, dilation, out
    low = _lowest(x.dtype)
    xp = jnp.pad(x, ((0, 0), *pads, (0, 0)), constant_values=low) if any(map(any, pads)) else x
    n, c = xp.shape[0], xp.shape[3]
    views = [jax.lax.slice(xp, (0, i * dh, j * dw, 0), (n, i * dh + (oh - 1) * sh + 1, j * dw + (ow - 1) * sw + 1, c),
                           (1, sh, sw, 1)) for i in range(kh) for j in range(kw)]
    code_t = _code_dtype(kernel)
    if pads[0][0] == pads[1][0] == 0:  # tap 0 reads the input in every window: start from it
        m, code, taps = views[0], jnp.zeros(views[0].shape, code_t), range(1, kh * kw)
    else:  # the first in-input tap of each window, a constant of the geometry
        h, w = x.shape[1:3]
        first = (_first_inside(h, kh, sh, pads[0][0], dh, oh)[:, None] * kw
                 + _first_inside(w, kw, sw, pads[1][0], dw, ow)[None, :])
        m = jnp.full(views[0].shape, low, x.dtype)
        code = jnp.broadcast_to(jnp.asarray(first[None, :, :, None], code_t), views[0].shape)
        taps = range(kh * kw)
    for t in taps:
        take = _takes(views[t], m)
        m, code = jnp.where(take, views[t], m), jnp.where(take, jnp.asarray(t, code_t), code)
    return m, code


def _scatter(parts, kernel, stride, pads, dilation, size):
    """The input gradient from each tap's share (tap t of output (a, b) → input row a·sh − pad + i·dh).

    Exact tilings (stride = kernel, no dilation) interleave the shares; overlapping windows add
    them, in torch's order (torch adds window by window in row-major output order, which is
    decreasing tap order at any one input element).
    """
    (kh, kw), (sh, sw), (dh, dw), (h, w) = kernel, stride, dilation, size
    n, oh, ow, c = parts[0].shape
    (ph, _), (pw, _) = pads
    zero = jnp.zeros((), parts[0].dtype)
    if (kh, kw) == (sh, sw) and (dh, dw) == (1, 1):
        rows = [jnp.stack(parts[i * kw:(i + 1) * kw], axis=3) for i in range(kh)]  # (n, oh, ow, kw, c)
        dxp = jnp.stack(rows, axis=2).reshape(n, oh * kh, ow * kw, c)  # padded coordinates
        return jax.lax.pad(dxp, zero, ((0, 0, 0), (-ph, ph + h - oh * kh, 0), (-pw, pw + w - ow * kw, 0), (0, 0, 0)))
    dx = None
    for t in reversed(range(kh * kw)):
        i, j = divmod(t, kw)
        lo_h, lo_w = i * dh - ph, j * dw - pw
        q = jax.lax.pad(parts[t], zero, ((0, 0, 0), (lo_h, h - lo_h - (oh - 1) * sh - 1, sh - 1),
                                         (lo_w, w - lo_w - (ow - 1) * sw - 1, sw - 1), (0, 0, 0)))
        dx = q if dx is None else dx + q
    return dx


@partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3, 4, 5, 6))
def _pool_core(x, kernel, stride, pads, dilation, out, size):
    return _scan(x, kernel, stride, pads, dilation, out)


def _pool_core_fwd(x, kernel, stride, pads, dilation, out, size):
    y, code = _scan(x, kernel, stride, pads, dilation, out)
    return (y, code), code


def _pool_core_bwd(kernel, stride, pads, dilation, out, size, code, cts):
    g = cts[0]  # the tap codes are integers: no cotangent
    # torch adds each share into zeros (0 + −0 = +0), so a −0 share lands as +0 (g + 0 XLA folds away)
    parts = [jnp.where((code == jnp.asarray(t, code.dtype)) & (g != 0), g, jnp.zeros((), g.dtype))
             for t in range(kernel[0] * kernel[1])]
    return (_scatter(parts, kernel, stride, pads, dilation, size),)


# Forward: torch's loop (_scan); backward: each window's gradient to the tap torch's loop chose,
# from the saved int8 tap codes (a quarter of the output's bytes in float32), never x itself.
_pool_core.defvjp(_pool_core_fwd, _pool_core_bwd)


@partial(jax.jit, static_argnames=("kernel", "stride", "pads", "dilation", "out"))
def _max_pool2d(x, kernel, stride, pads, dilation, out):
    return _pool_core(x, kernel, stride, pads, dilation, out, x.shape[1:3])[0]


def _index_dtype():
    """int64, torch's index dtype; int32 when JAX's x64 is off (JAX has no int64 then)."""
    return jax.dtypes.canonicalize_dtype(jnp.int64)


@partial(jax.jit, static_argnames=("kernel", "stride", "pads", "dilation", "out"))
def _max_pool2d_with_indices(x, kernel, stride, pads, dilation, out):
    (kh, kw), (sh, sw), (dh, dw), (oh, ow), (h, w) = kernel, stride, dilation, out, x.shape[1:3]
    y, code = _pool_core(x, kernel, stride, pads, dilation, out, (h, w))
    it = _index_dtype()
    # torch's flat index into the H·W plane of the input: (a·sh − pad + i·dh)·W + (b·sw − pad + j·dw)
    base = (np.arange(oh)[:, None] * sh - pads[0][0]) * w + np.arange(ow)[None, :] * sw - pads[1][0]
    code = code.astype(it)
    index = jnp.asarray(base[None, :, :, None], it) + (code // kw) * (dh * w) + (code % kw) * dw
    return y, index


class MaxPool2d(nnx.Module):
    """Max over (dilated) windows of NHWC input; stride defaults to the kernel, padding is −inf.

    Flax has no ceil_mode, no indices and no VJP for dilated max windows: torch's rules are
    implemented here, ties (first maximum) and NaN (the last NaN of a window) included.
    `return_indices=True` also returns torch's indices: per image and channel, the flat index
    h·W + w of each maximum in the input's H×W plane. They are the same numbers torch's twin
    returns for the NCHW input, laid out NHWC like the output (int64; int32 with JAX's x64 off),
    which `MaxUnpool2d` takes back.
    """

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False):
        self.kernel_size, self.stride, self.padding, self.dilation = pool_args(
            "MaxPool2d", kernel_size, stride, padding, dilation)
        self.return_indices, self.ceil_mode = bool(return_indices), bool(ceil_mode)

    def __call__(self, x):
        x, unbatched = _batched("MaxPool2d", x)
        out, pads = _geometry("MaxPool2d", x, self.kernel_size, self.stride, self.padding,
                              self.dilation, self.ceil_mode)
        check_dtype("MaxPool2d", "input", x.dtype.name)
        if self.return_indices:
            y, index = _max_pool2d_with_indices(x, self.kernel_size, self.stride, pads, self.dilation, out)
            return (y[0], index[0]) if unbatched else (y, index)
        y = _max_pool2d(x, self.kernel_size, self.stride, pads, self.dilation, out)
        return y[0] if unbatched else y


@partial(jax.custom_vjp, nondiff_argnums=(2,))
def _unpool_core(x, indices, size):
    n, h, w, c = x.shape
    flat = jnp.zeros((n, size[0] * size[1], c), x.dtype)
    rows, cols = jnp.arange(n)[:, None, None], jnp.arange(c)[None, None, :]
    flat = flat.at[rows, indices.reshape(n, h * w, c), cols].set(x.reshape(n, h * w, c), mode="drop")
    return flat.reshape(n, *size, c)


def _unpool_core_fwd(x, indices, size):
    return _unpool_core(x, indices, size), indices


def _unpool_core_bwd(size, indices, g):
    # torch's backward: every input element reads the gradient at its index, repeated indices
    # included (JAX's own scatter gradient would give it to one of them only)
    n, h, w, c = indices.shape
    dx = jnp.take_along_axis(g.reshape(n, size[0] * size[1], c), indices.reshape(n, h * w, c), axis=1,
                             mode="fill", fill_value=0)
    return dx.reshape(n, h, w, c), None


_unpool_core.defvjp(_unpool_core_fwd, _unpool_core_bwd)


@partial(jax.jit, static_argnames=("size",))
def _max_unpool2d(x, indices, size):
    return _unpool_core(x, indices, size)


class MaxUnpool2d(nnx.Module):
    """The partial inverse of MaxPool2d on NHWC input: each value written at its index, zeros elsewhere.

    Takes MaxPool2d's indices (torch's flat h·W + w numbers, NHWC like the input). The output size is
    torch's default (H − 1)·stride − 2·padding + kernel, or `output_size`: (H, W), or a batched
    input's shape, here NHWC (torch's twin reads an NCHW shape). Indices are range-checked when
    they are concrete; under an outer jit they cannot be, and an out-of-range index is dropped
    (its gradient is 0). Repeated indices with different values (not MaxPool2d's) leave which
    value lands unspecified, as in torch.
    """

    def __init__(self, kernel_size, stride=None, padding=0):
        self.kernel_size, self.stride, self.padding, _ = pool_args("MaxUnpool2d", kernel_size, stride, padding, 1)

    def __call__(self, x, indices, output_size=None):
        check_x64(x, indices)
        x, unbatched = _batched("MaxUnpool2d", x)
        if tuple(jnp.shape(indices)) != tuple(jnp.shape(x))[unbatched:]:
            raise ValueError(f"MaxUnpool2d: indices must have the input's shape {tuple(jnp.shape(x))[unbatched:]}, "
                             f"got {tuple(jnp.shape(indices))}")
        indices = indices[None] if unbatched else indices
        check_dtype("MaxUnpool2d", "input", x.dtype.name)
        check_dtype("MaxUnpool2d", "indices", jnp.result_type(indices).name, kind="indices")
        size = unpool_out_size("MaxUnpool2d", x.shape[1:3], self.kernel_size, self.stride, self.padding,
                               output_size, hw=(1, 2))
        if not isinstance(indices, jax.core.Tracer) and np.size(indices):
            idx = np.asarray(indices)
            if idx.min() < 0 or idx.max() >= size[0] * size[1]:
                bad = idx.min() if idx.min() < 0 else idx.max()
                raise ValueError(f"MaxUnpool2d: found an invalid max index {bad}: the output planes are "
                                 f"{size[0]}×{size[1]}, so indices must lie in [0, {size[0] * size[1]})")
        y = _max_unpool2d(x, indices, size)
        return y[0] if unbatched else y


# ---------------------------------------------------------------- average pooling
def _divisors(n, k, s, p, out, count_include_pad) -> np.ndarray:
    """torch's avg-pool divisor per window: padding counts only inside [−p, n + p), never ceil's extra."""
    start = np.arange(out) * s - p
    end = np.minimum(start + k, n + p)
    if count_include_pad:
        return end - start
    return np.minimum(end, n) - np.maximum(start, 0)


@partial(jax.jit, static_argnames=("kernel", "stride", "padding", "pads", "out", "count_include_pad",
                                   "divisor_override"))
def _avg_pool2d(x, kernel, stride, padding, pads, out, count_include_pad, divisor_override=None):
    dt = compute_dtype(x.dtype.name)
    sums = jax.lax.reduce_window(x.astype(dt), np.zeros((), dt), jax.lax.add, (1, *kernel, 1),
                                 (1, *stride, 1), ((0, 0), *pads, (0, 0)))
    if divisor_override is not None:  # torch divides every window by it, padding or not
        divisors = jnp.asarray(divisor_override, dt)
    else:
        dh, dw = (_divisors(n, k, s, p, o, count_include_pad)
                  for n, k, s, p, o in zip(x.shape[1:3], kernel, stride, padding, out))
        divisors = jnp.asarray(np.outer(dh, dw)[None, :, :, None], dt)
    if jnp.issubdtype(dt, jnp.integer):  # torch's int64 kernel divides in integers, truncating toward 0
        return jax.lax.div(sums, jnp.broadcast_to(divisors, sums.shape))
    return (sums / divisors).astype(x.dtype)


class AvgPool2d(nnx.Module):
    """Mean over windows of NHWC input; stride defaults to the kernel.

    Implements torch's ceil_mode, its count_include_pad divisor and divisor_override (every window
    divided by that int instead), which Flax's avg_pool lacks.
    """

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                 divisor_override=None):
        self.kernel_size, self.stride, self.padding, _ = pool_args(
            "AvgPool2d", kernel_size, stride, padding, 1)
        check_divisor_override("AvgPool2d", divisor_override)
        self.ceil_mode, self.count_include_pad = bool(ceil_mode), bool(count_include_pad)
        self.divisor_override = divisor_override

    def __call__(self, x):
        x, unbatched = _batched("AvgPool2d", x)
        out, pads = _geometry("AvgPool2d", x, self.kernel_size, self.stride, self.padding, (1, 1),
                              self.ceil_mode)
        check_dtype("AvgPool2d", "input", x.dtype.name)
        y = _avg_pool2d(x, self.kernel_size, self.stride, self.padding, pads, out,
                        self.count_include_pad, self.divisor_override)
        return y[0] if unbatched else y


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
        shape = tuple(jnp.shape(x))
        x, unbatched = _batched("AdaptiveAvgPool2d", x, channels_ok=True)  # torch takes C = 0 here
        out = tuple(n if s is None else s for n, s in zip(x.shape[1:3], self.output_size))
        if 0 in x.shape[1:3]:
            raise ValueError(f"AdaptiveAvgPool2d: expected a non-empty input, got shape {shape}")
        check_dtype("AdaptiveAvgPool2d", "input", x.dtype.name)
        y = _adaptive_avg_pool2d(x, out)
        return y[0] if unbatched else y
