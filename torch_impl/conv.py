"""2-D convolution in PyTorch (NCHW input, OIHW weight), with input validation.

Flax's twin is NHWC with an HWIO kernel (trap 3); both use torch's padding rules (traps 5, 6).
An integer layer or an input of another dtype than the layer's raises the shared dtype message.
A 3-D unbatched (C, H, W) input and an empty batch (N = 0) run as in nn.Conv2d.
"""
from __future__ import annotations

import torch
from torch import nn

from shape_rules import check_fits, check_mode_padding, check_nonempty, conv_args, conv_pads
from shape_rules.dtypes import check_input_matches_layer, check_layer_dtype

from torch_impl.checks import check_input


class Conv2d(nn.Conv2d):
    """2-D cross-correlation over NCHW input with a weight of shape (out, in_channels/groups, kh, kw).

    Flax's twin is NHWC/HWIO (an unbatched input: (H, W, C) there, (C, H, W) here). stride, padding
    and dilation may be one-element tuples, as in nn.Conv2d; kernel_size may not (nn.Conv2d then
    builds a 1-D weight that fails in forward). padding_mode is nn.Conv2d's.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, padding_mode="zeros", *, dtype=torch.float32):
        kernel_size, stride, padding, dilation = conv_args(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups, padding_mode)
        check_layer_dtype("Conv2d", dtype)
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                         bias, padding_mode, dtype=dtype)

    def _pads(self) -> tuple:
        return conv_pads(self.padding, self.kernel_size, self.dilation)

    def forward(self, x):
        check_input("Conv2d", x, self.in_channels, unbatched=True)
        check_nonempty("Conv2d", tuple(x.shape), x.dim() == 4)
        if x.dtype != self.weight.dtype:
            check_input_matches_layer("Conv2d", x.dtype, self.weight.dtype)
        pads = self._pads()
        check_fits("Conv2d", tuple(x.shape[-2:]), pads, self.kernel_size, self.dilation)
        if self.padding_mode != "zeros":
            check_mode_padding("Conv2d", self.padding_mode, tuple(x.shape[-2:]), pads)
        return super().forward(x)
