"""Average pooling with ceil_mode / divisor_override, and interpolation, as `parity port` writes them.

Flax's pooling has no ceil_mode and jax.image.resize is not torch's interpolation (it antialiases when
downsampling and has no align_corners), so the generated file gets small helpers that follow torch's
CPU kernels: `avg_pool` (torch's output size, last-window rule and divisors), `interpolate_linear`
((bi/tri)linear, align_corners either way, torch's source index and weights) and `interpolate_nearest`
(torch's float32 source index). `HELPERS` holds their source (emit.py writes the ones a port uses into
its file); `avg_pool_call`, `linear_call` and `nearest_call` write the calls for parity/port/ops.py.
"""
from __future__ import annotations

import numpy as np

AVG_POOL = '''
def avg_pool(x, kernel, stride, padding, ceil_mode=False, count_include_pad=True, divisor_override=None):
    """torch's F.avg_pool1d/2d/3d on channels-last x (N, *spatial, C): torch's output size (ceil_mode
    adds a last, partial window, which must start inside the input or its left padding); each window's
    sum (zeros beyond the input) divided by torch's divisor: the window clipped to the padded input
    (count_include_pad), to the input (otherwise), or divisor_override."""
    pads, divisor = [], 1
    for axis, (n, k, s, p) in enumerate(zip(x.shape[1:-1], kernel, stride, padding)):
        out = (n + 2 * p - k + (s - 1 if ceil_mode else 0)) // s + 1
        if ceil_mode and (out - 1) * s >= n + p:
            out -= 1
        pads.append((p, max(p, (out - 1) * s + k - n - p)))
        start = jnp.arange(out) * s - p
        end = jnp.minimum(start + k, n + p)
        if not count_include_pad:
            start, end = jnp.maximum(start, 0), jnp.minimum(end, n)
        shape = [1] * x.ndim
        shape[axis + 1] = out
        divisor = divisor * (end - start).reshape(shape)
    window, strides = (1, *kernel, 1), (1, *stride, 1)
    sums = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, [(0, 0), *pads, (0, 0)])
    if divisor_override:
        divisor = divisor_override
    return sums / jnp.asarray(divisor, x.dtype)
'''

INTERPOLATE_LINEAR = '''
def interpolate_linear(x, size, align_corners=False, scales=None):
    """torch's F.interpolate(mode="linear" / "bilinear" / "trilinear", antialias=False) on channels-last
    x (N, *spatial, C) to the spatial `size`; `scales`: the scale factors torch's kernel is given (None:
    input size / output size). One axis after the other, the last first, as torch's kernel nests them."""
    scales = scales or (None,) * len(size)
    for axis in reversed(range(len(size))):
        x = _linear_axis(x, axis + 1, size[axis], align_corners, scales[axis])
    return x


def _linear_axis(x, axis, out, align_corners, scale):
    """torch's linear interpolation along one axis: output i is x[i0]·(1 − λ) + x[i1]·λ, i1 = min(i0 + 1,
    n − 1), the source index computed in x's dtype (float32 at least) as torch's CPU kernel does (its
    floor is floorf: taken in float32). An unchanged size is still x·1 + x·0 there (NaN where x is ±inf)."""
    n = x.shape[axis]
    if out == n:
        i0, lam1 = jnp.arange(n), jnp.zeros(n, x.dtype)
        i1 = i0
    else:
        dtype = jnp.promote_types(x.dtype, jnp.float32)
        dst = jnp.arange(out, dtype=dtype)
        if align_corners:
            src = dst * (jnp.asarray(n - 1, dtype) / (out - 1) if out > 1 else 0)
        else:
            ratio = jnp.asarray(1 / scale, dtype) if scale else jnp.asarray(n, dtype) / out
            src = jnp.maximum(ratio * (dst + 0.5) - 0.5, 0)
        i0 = jnp.minimum(jnp.floor(src.astype(jnp.float32)).astype(dtype), n - 1)
        lam1 = jnp.clip(src - i0, 0, 1).astype(x.dtype)
        i0 = i0.astype(jnp.int32)
        i1 = jnp.minimum(i0 + 1, n - 1)
    shape = [1] * x.ndim
    shape[axis] = out
    return jnp.take(x, i0, axis=axis) * (1 - lam1).reshape(shape) + jnp.take(x, i1, axis=axis) * lam1.reshape(shape)
'''

INTERPOLATE_NEAREST = '''
def interpolate_nearest(x, size, exact=False, scales=None):
    """torch's F.interpolate(mode="nearest" or "nearest-exact") on channels-last x (N, *spatial, C) to the
    spatial `size`: output i reads input min(⌊i·r⌋, n − 1) (nearest-exact: ⌊(i + 0.5)·r⌋), r torch's
    float32 ratio (1 / scale, or input size / output size) and the product rounded to float32 as there."""
    scales = scales or (None,) * len(size)
    for axis, (out, scale) in enumerate(zip(size, scales)):
        n = x.shape[axis + 1]
        ratio = jnp.asarray(1 / scale, jnp.float32) if scale else jnp.asarray(n, jnp.float32) / out
        dst = jnp.arange(out, dtype=jnp.float32)
        if exact:
            src = jnp.floor((dst + 0.5) * ratio)
        elif out in (n, 2 * n):  # torch's kernel: a copy, or i // 2, without the float32 product
            src = dst // (out // n)
        else:
            src = jnp.floor(dst * ratio)
        x = jnp.take(x, jnp.minimum(src.astype(jnp.int32), n - 1), axis=axis + 1)
    return x
'''

HELPERS = {"avg_pool": AVG_POOL, "interpolate_linear": INTERPOLATE_LINEAR, "interpolate_nearest": INTERPOLATE_NEAREST}


def avg_pool_call(x: str, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override) -> str:
    """The `avg_pool` call for torch's settings (`kernel`, `stride`, `padding`: one int per spatial axis)."""
    extra = f", divisor_override={divisor_override!r}" if divisor_override else ""
    return (f"avg_pool({x}, {tuple(kernel)}, {tuple(stride)}, {tuple(padding)}, ceil_mode={bool(ceil_mode)}, "
            f"count_include_pad={bool(count_include_pad)}{extra})")


def linear_call(x: str, size, align_corners, scales) -> str:
    extra = f", scales={tuple(scales)}" if scales else ""
    return f"interpolate_linear({x}, {tuple(size)}, align_corners={bool(align_corners)}{extra})"


def nearest_call(x: str, size, exact, scales) -> str:
    extra = f", scales={tuple(scales)}" if scales else ""
    return f"interpolate_nearest({x}, {tuple(size)}{', exact=True' if exact else ''}{extra})"


def nearest_repeats(in_size, out_size, scales) -> list | None:
    """Per axis, how often torch's nearest interpolation repeats each input (the `jnp.repeat` a port can
    write instead of `interpolate_nearest`), or None where its float32 source index is no repeat (it is
    none for 2 → 82: output 41 reads input 0)."""
    reps = []
    for n, o, scale in zip(in_size, out_size, scales or (None,) * len(in_size)):
        ratio = np.float32(1 / scale) if scale else np.float32(n) / np.float32(o)
        src = np.minimum(np.floor(np.arange(o, dtype=np.float32) * ratio), n - 1)
        if o in (n, 2 * n):
            src = np.arange(o) // (o // n)
        if o % n or not np.array_equal(src, np.arange(o) // (o // n)):
            return None
        reps.append(o // n)
    return reps
