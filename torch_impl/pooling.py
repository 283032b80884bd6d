"""Pooling in PyTorch on NCHW input: max, average and adaptive average, with input validation.

Flax's twins implement torch's output-size formula, ceil_mode and divisors themselves (traps 7–10).
An input dtype torch's kernels lack (bool, complex; integers for the average pools but int64 for
AvgPool2d) raises the shared dtype message instead of the kernel's NotImplementedError.
"""
from __future__ import annotations

import torch
from torch import nn

from shape_rules import at_least, pair, pool_args, pool_out_size
from shape_rules.dtypes import KINDS, check_dtype

from torch_impl.checks import check_input

_MAX = frozenset(getattr(torch, n) for n in KINDS["floating or integer"][0])
_AVG = frozenset(getattr(torch, n) for n in KINDS["floating or int64"][0])


def _check_geometry(layer, x, kernel, stride, padding, dilation, ceil_mode):
    check_input(layer, x, None)
    for axis, n, k, s, p, d in zip(("height", "width"), x.shape[2:], kernel, stride, padding, dilation):
        pool_out_size(layer, axis, n, k, s, p, d, ceil_mode)


class MaxPool2d(nn.MaxPool2d):
    """Max over (dilated) windows of NCHW input; stride defaults to the kernel, padding is −inf.

    nn.MaxPool2d with validation (no return_indices); Flax's twin implements ceil_mode itself.
    """

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
        kernel, stride, padding, dilation = pool_args("MaxPool2d", kernel_size, stride, padding, dilation)
        super().__init__(kernel, stride, padding, dilation, ceil_mode=bool(ceil_mode))

    def forward(self, x):
        _check_geometry("MaxPool2d", x, self.kernel_size, self.stride, self.padding, self.dilation,
                        self.ceil_mode)
        if x.dtype not in _MAX:
            check_dtype("MaxPool2d", "input", x.dtype)
        return super().forward(x)


class AvgPool2d(nn.AvgPool2d):
    """Mean over windows of NCHW input; stride defaults to the kernel.

    nn.AvgPool2d with validation (no divisor_override); Flax's twin computes torch's divisors itself.
    """

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
        kernel, stride, padding, _ = pool_args("AvgPool2d", kernel_size, stride, padding, 1)
        super().__init__(kernel, stride, padding, ceil_mode=bool(ceil_mode),
                         count_include_pad=bool(count_include_pad))

    def forward(self, x):
        _check_geometry("AvgPool2d", x, self.kernel_size, self.stride, self.padding, (1, 1),
                        self.ceil_mode)
        if x.dtype not in _AVG:
            check_dtype("AvgPool2d", "input", x.dtype)
        return super().forward(x)


class AdaptiveAvgPool2d(nn.AdaptiveAvgPool2d):
    """Mean over the adaptive windows [⌊i·H/out⌋, ⌈(i+1)·H/out⌉) to a fixed NCHW output size.

    nn.AdaptiveAvgPool2d with validation; Flax has no adaptive pooling, so its twin is written out.
    """

    def __init__(self, output_size):
        size = pair("AdaptiveAvgPool2d", "output_size", output_size, allow_none=True)
        at_least("AdaptiveAvgPool2d", "output_size", tuple(1 if s is None else s for s in size), 1)
        super().__init__(size)

    def forward(self, x):
        check_input("AdaptiveAvgPool2d", x, None)
        if 0 in x.shape[2:]:
            raise ValueError(f"AdaptiveAvgPool2d: expected a non-empty input, got shape {tuple(x.shape)}")
        if not x.is_floating_point():
            check_dtype("AdaptiveAvgPool2d", "input", x.dtype)
        return super().forward(x)
