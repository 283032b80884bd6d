"""2-D convolution in Flax NNX (NHWC input, HWIO kernel), with torch's padding rules.

torch's twin is NCHW with an OIHW weight (trap 3). Flax's `nnx.Conv` defaults to padding 'SAME'
and reads 'SAME' differently for strided convolutions (traps 5, 6), so this layer computes its own
explicit padding pairs by torch's rules and calls `lax.conv_general_dilated`. The input must have the
layer's dtype (torch refuses a mix); float16/bfloat16 accumulate in float32 and round once, bias
included, as torch's kernels.
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from flax import nnx

from shape_rules import check_fits, conv_args, conv_pads
from shape_rules.dtypes import HALF, check_input_matches_layer, check_layer_dtype

from jax_impl.checks import check_input, check_x64


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
    acc = jnp.float32 if x.dtype.name in HALF else None  # trace-time: half accumulates in float32
    y = jax.lax.conv_general_dilated(x, kernel, window_strides=stride, padding="VALID",
                                     rhs_dilation=dilation, feature_group_count=groups,
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"), preferred_element_type=acc)
    y = y if bias is None else y + bias.astype(y.dtype)
    return y.astype(x.dtype)


class Conv2d(nnx.Module):
    """2-D cross-correlation over NHWC input with a kernel of shape (kh, kw, in_channels/groups, out).

    torch's twin is NCHW/OIHW; padding takes torch's int, pair, 'valid' or 'same' (not Flax's 'SAME').
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, *, dtype=jnp.float32, rngs):
        self.kernel_size, self.stride, self.padding, self.dilation = conv_args(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups)
        check_layer_dtype("Conv2d", jnp.dtype(dtype).name)
        check_x64(dtype=dtype)
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        shape = (*self.kernel_size, in_channels // groups, out_channels)
        self.kernel = nnx.Param(nnx.initializers.lecun_normal()(rngs.params(), shape, dtype))
        self.bias = nnx.Param(jnp.zeros((out_channels,), dtype)) if bias else None

    def _pads(self) -> tuple:
        return conv_pads(self.padding, self.kernel_size, self.dilation)

    def __call__(self, x):
        check_x64(x)
        check_input("Conv2d", x, self.in_channels)
        check_input_matches_layer("Conv2d", x.dtype.name, self.kernel[...].dtype.name)
        pads = self._pads()
        check_fits("Conv2d", x.shape[1:3], pads, self.kernel_size, self.dilation)
        bias = None if self.bias is None else self.bias[...]
        return _conv2d(x, self.kernel[...], bias, self.stride, pads, self.dilation, self.groups)
