"""2-D convolution in Flax NNX (NHWC input, HWIO kernel), with torch's padding rules.

torch's twin is NCHW with an OIHW weight (trap 3). Flax's `nnx.Conv` defaults to padding 'SAME'
and reads 'SAME' differently for strided convolutions (traps 5, 6), so this layer computes its own
explicit padding pairs by torch's rules and calls `lax.conv_general_dilated`, or, for a shallow
kernel (an image's first layer: kh·kw·in_channels small), one matrix product over the kernel's
windows (im2col), which XLA:CPU runs faster (docs/measurements.md, "Conv2d"). The input must have the layer's dtype
(torch refuses a mix); float16/bfloat16 accumulate in float32 and round once, bias included, as
torch's kernels. A 3-D unbatched (H, W, C) input is taken as torch's twin takes (C, H, W), and an
empty batch (N = 0) gives an empty result, as torch's.
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from flax import nnx

from shape_rules import check_fits, check_mode_padding, check_nonempty, conv_args, conv_pads
from shape_rules.dtypes import HALF, check_input_matches_layer, check_layer_dtype

from jax_impl.checks import check_input, check_x64

# im2col when the contraction of each output (kh·kw·in_channels) is at most this deep: XLA:CPU's
# convolution is slow for an image's few input channels, and a matrix product of such a shallow
# depth reads the input kh·kw times at little cost; deeper, im2col loses. The intermediate is kh·kw
# times the input. The timings that set the threshold: docs/measurements.md, "Conv2d".
IM2COL_MAX_DEPTH = 32


def _views(x, kernel_hw, stride, dilation, out):
    """Each kernel tap's strided view of `x`, in row-major tap order: (N, out_h, out_w, C) each."""
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel_hw, stride, dilation, out
    n, c = x.shape[0], x.shape[3]
    return [jax.lax.slice(x, (0, i * dh, j * dw, 0), (n, i * dh + (oh - 1) * sh + 1, j * dw + (ow - 1) * sw + 1, c),
                          (1, sh, sw, 1)) for i in range(kh) for j in range(kw)]


@partial(jax.jit, static_argnames=("stride", "padding", "dilation", "groups"))
def _conv2d(x, kernel, bias, stride, padding, dilation, groups):
    kh, kw, cin, cout = kernel.shape
    acc = jnp.float32 if x.dtype.name in HALF else None  # trace-time: half accumulates in float32
    out = tuple((n + lo + hi - d * (k - 1) - 1) // s + 1
                for n, (lo, hi), k, s, d in zip(x.shape[1:3], padding, (kh, kw), stride, dilation))
    if groups == 1 and kh * kw * cin <= IM2COL_MAX_DEPTH:
        # im2col: the taps' views side by side, (N, oh, ow, kh·kw·C) · (kh·kw·C, out): no convolution
        # op at all, so none of XLA:CPU's convolution-gradient crashes below either
        xp = jnp.pad(x, ((0, 0), *padding, (0, 0))) if any(map(any, padding)) else x
        cols = jnp.concatenate(_views(xp, (kh, kw), stride, dilation, out), axis=3)
        y = jax.lax.dot_general(cols, kernel.reshape(kh * kw * cin, cout), (((3,), (0,)), ((), ())),
                                preferred_element_type=acc)
    else:
        if stride == (1, 1):
            pads, xv = padding, x  # the convolution pads: no copy of the input
        else:
            # Strided: pad explicitly, crop to the rows and columns the windows read, then convolve
            # 'VALID'. Same values, but XLA:CPU (jax 0.10.2) aborts compiling the gradient of many
            # padded strided convolutions, float32 and float64 alike: with stride 2, kernel 2,
            # padding 1 on the width axis, 138 of 423 height configurations crashed, among them
            # unpadded ones whose crop is a no-op (tests/test_layers_sweep.py found the first). A
            # sweep of stride-1 configurations (kernel 1–4, padding 0–2, dilation 1–2 on the height,
            # five padded widths, groups 1–2, float32 and float64: 2,820 compiles) crashed none,
            # so stride 1 passes its padding to the convolution.
            xv = jnp.pad(x, ((0, 0), *padding, (0, 0)))
            used = [(o - 1) * s + d * (k - 1) + 1 for o, k, s, d in zip(out, (kh, kw), stride, dilation)]
            xv, pads = xv[:, :used[0], :used[1]], ((0, 0), (0, 0))
        y = jax.lax.conv_general_dilated(xv, kernel, window_strides=stride, padding=pads,
                                         rhs_dilation=dilation, feature_group_count=groups,
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"), preferred_element_type=acc)
    y = y if bias is None else y + bias.astype(y.dtype)
    return y.astype(x.dtype)


_NUMPY_PAD_MODES = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}  # torch's → jnp.pad's


@partial(jax.jit, static_argnames=("pads", "padding_mode"))
def _pad_mode(x, pads, padding_mode):
    """torch's non-zero padding modes: reflect (mirror without the edge), replicate, circular."""
    return jnp.pad(x, ((0, 0), *pads, (0, 0)), mode=_NUMPY_PAD_MODES[padding_mode])


class Conv2d(nnx.Module):
    """2-D cross-correlation over NHWC input with a kernel of shape (kh, kw, in_channels/groups, out).

    torch's twin is NCHW/OIHW; padding takes torch's int, pair, 'valid' or 'same' (not Flax's 'SAME').
    stride, padding and dilation may be one-element tuples, as in torch (kernel_size may not: torch
    then builds a 1-D weight that fails in forward). padding_mode is torch's: 'zeros', 'reflect',
    'replicate' or 'circular'.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, padding_mode="zeros", *, dtype=jnp.float32, rngs):
        self.kernel_size, self.stride, self.padding, self.dilation = conv_args(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups, padding_mode)
        self.padding_mode = padding_mode
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
        check_input("Conv2d", x, self.in_channels, unbatched=True)
        check_nonempty("Conv2d", jnp.shape(x), jnp.ndim(x) == 4)
        check_input_matches_layer("Conv2d", x.dtype.name, self.kernel[...].dtype.name)
        unbatched = jnp.ndim(x) == 3
        x = x[None] if unbatched else x
        pads = self._pads()
        check_fits("Conv2d", x.shape[1:3], pads, self.kernel_size, self.dilation)
        if self.padding_mode != "zeros" and any(map(any, pads)):
            check_mode_padding("Conv2d", self.padding_mode, x.shape[1:3], pads)
            x, pads = _pad_mode(x, pads, self.padding_mode), ((0, 0), (0, 0))
        bias = None if self.bias is None else self.bias[...]
        y = _conv2d(x, self.kernel[...], bias, self.stride, pads, self.dilation, self.groups)
        return y[0] if unbatched else y
