"""2-D convolution in Flax NNX (NHWC input, HWIO kernel), with torch's padding rules.

torch's twin is NCHW with an OIHW weight (trap 3). Flax's `nnx.Conv` defaults to padding 'SAME'
and reads 'SAME' differently for strided convolutions (traps 5, 6), so this layer computes its own
explicit padding pairs by torch's rules and calls `lax.conv_general_dilated`.
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from flax import nnx

# --------------------------------------------------------------- validation shared by the layers
# (the same messages as torch_impl's, with the layout named for each side)


def _pair(layer: str, name: str, v, allow_none: bool = False) -> tuple:
    """An int or a pair of ints as a pair; a clear TypeError otherwise."""
    vals = tuple(v) if isinstance(v, (tuple, list)) else (v, v)
    ok = len(vals) == 2 and all((x is None and allow_none) or
                                (isinstance(x, int) and not isinstance(x, bool)) for x in vals)
    if not ok:
        raise TypeError(f"{layer}: {name} must be an int or a pair of ints, got {v!r}")
    return vals


def _at_least(layer: str, name: str, vals: tuple, lo: int) -> tuple:
    if any(x < lo for x in vals):
        raise ValueError(f"{layer}: {name} must be >= {lo}, got {vals[0] if vals[0] == vals[1] else vals}")
    return vals


def _check_input(layer: str, x, channels: int | None, channels_name: str = "in_channels"):
    """A 4-D NHWC input with the expected channel count, or a ValueError naming what was expected."""
    if jnp.ndim(x) != 4:
        raise ValueError(f"{layer}: expected a 4-D input (N, H, W, C), got a {jnp.ndim(x)}-D input "
                         f"of shape {tuple(jnp.shape(x))}")
    if channels is not None and x.shape[-1] != channels:
        raise ValueError(f"{layer}: expected {channels_name}={channels} channels on the last axis "
                         f"(NHWC), got {x.shape[-1]} (input shape {tuple(x.shape)})")


def _check_fits(layer: str, size: tuple, pads: tuple, kernel: tuple, dilation: tuple):
    """The (dilated) kernel fits in the padded input, as torch requires."""
    for axis, n, (lo, hi), k, d in zip(("height", "width"), size, pads, kernel, dilation):
        extent = d * (k - 1) + 1
        if extent > n + lo + hi:
            raise ValueError(f"{layer}: kernel_size {k} (dilated extent {extent}) is larger than the "
                             f"padded input {axis} {n + lo + hi} ({n} + padding {lo}+{hi})")


def _same_padding(kernel: tuple, dilation: tuple) -> tuple:
    """torch's padding='same': total d·(k−1) per axis, the odd pixel on the right/bottom (trap 6)."""
    return tuple((d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2) for k, d in zip(kernel, dilation))


# --------------------------------------------------------------- the layer


@partial(jax.jit, static_argnames=("stride", "padding", "dilation", "groups"))
def _conv2d(x, kernel, bias, stride, padding, dilation, groups):
    # Pad explicitly and crop to the rows and columns the windows read, then convolve 'VALID'.
    # Same values as conv padding; but the gradient then never needs negative padding, on which
    # XLA:CPU's float64 compile aborts the process (jax 0.10.2: e.g. stride 2, kernel 2,
    # padding 1 on a 1-pixel-high input; tests/test_layers_sweep.py found it).
    x = jnp.pad(x, ((0, 0), *padding, (0, 0)))
    used = [(n - d * (k - 1) - 1) // s * s + d * (k - 1) + 1
            for n, k, s, d in zip(x.shape[1:3], kernel.shape[:2], stride, dilation)]
    x = x[:, :used[0], :used[1]]
    y = jax.lax.conv_general_dilated(x, kernel, window_strides=stride, padding="VALID",
                                     rhs_dilation=dilation, feature_group_count=groups,
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y if bias is None else y + bias


class Conv2d(nnx.Module):
    """2-D cross-correlation over NHWC input with a kernel of shape (kh, kw, in_channels/groups, out).

    torch's twin is NCHW/OIHW; padding takes torch's int, pair, 'valid' or 'same' (not Flax's 'SAME').
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, *, dtype=jnp.float32, rngs):
        name = "Conv2d"
        _at_least(name, "in_channels", (in_channels, in_channels), 1)
        _at_least(name, "out_channels", (out_channels, out_channels), 1)
        self.kernel_size = _at_least(name, "kernel_size", _pair(name, "kernel_size", kernel_size), 1)
        self.stride = _at_least(name, "stride", _pair(name, "stride", stride), 1)
        self.dilation = _at_least(name, "dilation", _pair(name, "dilation", dilation), 1)
        if not isinstance(groups, int) or groups < 1 or in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: groups must be a positive int dividing in_channels={in_channels} "
                             f"and out_channels={out_channels}, got groups={groups!r}")
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"{name}: padding must be an int, a pair, 'same' or 'valid', got {padding!r}")
            if padding == "same" and self.stride != (1, 1):
                raise ValueError(f"{name}: padding='same' needs stride=1 (as in torch), got stride={stride}")
            self.padding = padding
        else:
            self.padding = _at_least(name, "padding", _pair(name, "padding", padding), 0)
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        shape = (*self.kernel_size, in_channels // groups, out_channels)
        self.kernel = nnx.Param(nnx.initializers.lecun_normal()(rngs.params(), shape, dtype))
        self.bias = nnx.Param(jnp.zeros((out_channels,), dtype)) if bias else None

    def _pads(self) -> tuple:
        if self.padding == "same":
            return _same_padding(self.kernel_size, self.dilation)
        if self.padding == "valid":
            return ((0, 0), (0, 0))
        return tuple((p, p) for p in self.padding)

    def __call__(self, x):
        _check_input("Conv2d", x, self.in_channels)
        pads = self._pads()
        _check_fits("Conv2d", x.shape[1:3], pads, self.kernel_size, self.dilation)
        bias = None if self.bias is None else self.bias[...]
        return _conv2d(x, self.kernel[...], bias, self.stride, pads, self.dilation, self.groups)
