"""Pooling in PyTorch on NCHW input: max (with indices), max unpooling, average and adaptive average,
with input validation.

Flax's twins implement torch's output-size formula, ceil_mode and divisors themselves (traps 7–10).
An input dtype torch's kernels lack (bool, complex; integers for the average pools but int64 for
AvgPool2d, and for MaxUnpool2d) raises the shared dtype message instead of the kernel's
NotImplementedError. Every layer takes a 3-D unbatched (C, H, W) input and an empty batch (N = 0),
as torch's layers do.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from shape_rules import (at_least, check_divisor_override, check_nonempty, pair, pool_args, pool_out_size,
                         unpool_out_size)
from shape_rules.dtypes import KINDS, check_dtype

from torch_impl.checks import check_input

_MAX = frozenset(getattr(torch, n) for n in KINDS["floating or integer"][0])
_AVG = frozenset(getattr(torch, n) for n in KINDS["floating or int64"][0])


def _check_geometry(layer, x, kernel, stride, padding, dilation, ceil_mode):
    check_input(layer, x, None, unbatched=True)
    check_nonempty(layer, tuple(x.shape), x.dim() == 4)
    for axis, n, k, s, p, d in zip(("height", "width"), x.shape[-2:], kernel, stride, padding, dilation):
        pool_out_size(layer, axis, n, k, s, p, d, ceil_mode)


class MaxPool2d(nn.MaxPool2d):
    """Max over (dilated) windows of NCHW input; stride defaults to the kernel, padding is −inf.

    nn.MaxPool2d with validation; Flax's twin implements ceil_mode, ties and NaN itself.
    `return_indices=True` also returns torch's indices (the flat index h·W + w of each maximum in
    its image and channel's H×W plane), which `MaxUnpool2d` takes back; Flax's twin returns the
    same numbers laid out NHWC.
    """

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False):
        kernel, stride, padding, dilation = pool_args("MaxPool2d", kernel_size, stride, padding, dilation)
        super().__init__(kernel, stride, padding, dilation, return_indices=bool(return_indices),
                         ceil_mode=bool(ceil_mode))

    def forward(self, x):
        _check_geometry("MaxPool2d", x, self.kernel_size, self.stride, self.padding, self.dilation,
                        self.ceil_mode)
        if x.dtype not in _MAX:
            check_dtype("MaxPool2d", "input", x.dtype)
        return super().forward(x)


class MaxUnpool2d(nn.MaxUnpool2d):
    """The partial inverse of MaxPool2d on NCHW input: each value written at its index, zeros elsewhere.

    nn.MaxUnpool2d with validation: the output size (torch's default or `output_size`: (H, W) or a
    batched input's NCHW shape), the indices' shape and dtype (int64; int32, what Flax's twin
    returns with JAX's x64 off, is cast) and their range (checked with a host read, as torch's CPU
    kernel does; its CUDA kernel does not) are checked before the kernel runs.
    """

    def __init__(self, kernel_size, stride=None, padding=0):
        kernel, stride, padding, _ = pool_args("MaxUnpool2d", kernel_size, stride, padding, 1)
        super().__init__(kernel, stride, padding)

    def forward(self, x, indices, output_size=None):
        check_input("MaxUnpool2d", x, None, unbatched=True)
        check_nonempty("MaxUnpool2d", tuple(x.shape), x.dim() == 4)
        if tuple(indices.shape) != tuple(x.shape):
            raise ValueError(f"MaxUnpool2d: indices must have the input's shape {tuple(x.shape)}, "
                             f"got {tuple(indices.shape)}")
        if not x.is_floating_point():
            check_dtype("MaxUnpool2d", "input", x.dtype)
        if indices.dtype != torch.int64:
            check_dtype("MaxUnpool2d", "indices", indices.dtype, kind="indices")
        size = unpool_out_size("MaxUnpool2d", tuple(x.shape[-2:]), self.kernel_size, self.stride, self.padding,
                               output_size, hw=(2, 3))
        if indices.numel():
            lo, hi = int(indices.min()), int(indices.max())
            if lo < 0 or hi >= size[0] * size[1]:
                raise ValueError(f"MaxUnpool2d: found an invalid max index {lo if lo < 0 else hi}: the output "
                                 f"planes are {size[0]}×{size[1]}, so indices must lie in [0, {size[0] * size[1]})")
        return F.max_unpool2d(x, indices.long(), self.kernel_size, self.stride, self.padding, size)


class AvgPool2d(nn.AvgPool2d):
    """Mean over windows of NCHW input; stride defaults to the kernel.

    nn.AvgPool2d with validation (divisor_override: None or a non-zero int); Flax's twin computes
    torch's divisors itself.
    """

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                 divisor_override=None):
        kernel, stride, padding, _ = pool_args("AvgPool2d", kernel_size, stride, padding, 1)
        check_divisor_override("AvgPool2d", divisor_override)
        super().__init__(kernel, stride, padding, ceil_mode=bool(ceil_mode),
                         count_include_pad=bool(count_include_pad), divisor_override=divisor_override)

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
        check_input("AdaptiveAvgPool2d", x, None, unbatched=True)
        if 0 in x.shape[-2:]:
            raise ValueError(f"AdaptiveAvgPool2d: expected a non-empty input, got shape {tuple(x.shape)}")
        if not x.is_floating_point():
            check_dtype("AdaptiveAvgPool2d", "input", x.dtype)
        return super().forward(x)
