"""Pooling in PyTorch on NCHW input: max, average and adaptive average, with input validation.

Flax's twins implement torch's output-size formula, ceil_mode and divisors themselves (traps 7–10).
"""
from __future__ import annotations

from torch import nn

from torch_impl.conv import _at_least, _check_input, _pair


def _pool_args(layer, kernel_size, stride, padding, dilation):
    kernel = _at_least(layer, "kernel_size", _pair(layer, "kernel_size", kernel_size), 1)
    stride = kernel if stride is None else _at_least(layer, "stride", _pair(layer, "stride", stride), 1)
    padding = _at_least(layer, "padding", _pair(layer, "padding", padding), 0)
    dilation = _at_least(layer, "dilation", _pair(layer, "dilation", dilation), 1)
    if any(p > k // 2 for p, k in zip(padding, kernel)):
        raise ValueError(f"{layer}: padding must be at most half of kernel_size (as in torch), "
                         f"got padding={padding} for kernel_size={kernel}")
    return kernel, stride, padding, dilation


def _out_size(layer, axis, n, k, s, p, d, ceil_mode) -> int:
    """torch's pooling output size; in ceil_mode the last window must start inside input or left padding."""
    out = (n + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= n + p:
        out -= 1
    if out < 1:
        raise ValueError(f"{layer}: kernel_size {k} (dilated extent {d * (k - 1) + 1}) is larger than "
                         f"the padded input {axis} {n + 2 * p} (output size would be {out})")
    for o in range(out):  # only a dilated window can skip over the whole input
        start = o * s - p
        if not any(0 <= start + j * d < n for j in range(k)):
            raise ValueError(f"{layer}: with dilation {d}, the window at output {axis} index {o} reads "
                             f"only padding (input {axis} {n}); torch returns -inf there and its "
                             f"gradient writes out of bounds, so both twins reject it")
    return out


def _check_geometry(layer, x, kernel, stride, padding, dilation, ceil_mode):
    _check_input(layer, x, None)
    for axis, n, k, s, p, d in zip(("height", "width"), x.shape[2:], kernel, stride, padding, dilation):
        _out_size(layer, axis, n, k, s, p, d, ceil_mode)


class MaxPool2d(nn.MaxPool2d):
    """Max over (dilated) windows of NCHW input; stride defaults to the kernel, padding is −inf.

    nn.MaxPool2d with validation (no return_indices); Flax's twin implements ceil_mode itself.
    """

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
        kernel, stride, padding, dilation = _pool_args("MaxPool2d", kernel_size, stride, padding, dilation)
        super().__init__(kernel, stride, padding, dilation, ceil_mode=bool(ceil_mode))

    def forward(self, x):
        _check_geometry("MaxPool2d", x, self.kernel_size, self.stride, self.padding, self.dilation,
                        self.ceil_mode)
        return super().forward(x)


class AvgPool2d(nn.AvgPool2d):
    """Mean over windows of NCHW input; stride defaults to the kernel.

    nn.AvgPool2d with validation (no divisor_override); Flax's twin computes torch's divisors itself.
    """

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
        kernel, stride, padding, _ = _pool_args("AvgPool2d", kernel_size, stride, padding, 1)
        super().__init__(kernel, stride, padding, ceil_mode=bool(ceil_mode),
                         count_include_pad=bool(count_include_pad))

    def forward(self, x):
        _check_geometry("AvgPool2d", x, self.kernel_size, self.stride, self.padding, (1, 1),
                        self.ceil_mode)
        return super().forward(x)


class AdaptiveAvgPool2d(nn.AdaptiveAvgPool2d):
    """Mean over the adaptive windows [⌊i·H/out⌋, ⌈(i+1)·H/out⌉) to a fixed NCHW output size.

    nn.AdaptiveAvgPool2d with validation; Flax has no adaptive pooling, so its twin is written out.
    """

    def __init__(self, output_size):
        size = _pair("AdaptiveAvgPool2d", "output_size", output_size, allow_none=True)
        _at_least("AdaptiveAvgPool2d", "output_size", tuple(1 if s is None else s for s in size), 1)
        super().__init__(size)

    def forward(self, x):
        _check_input("AdaptiveAvgPool2d", x, None)
        if 0 in x.shape[2:]:
            raise ValueError(f"AdaptiveAvgPool2d: expected a non-empty input, got shape {tuple(x.shape)}")
        return super().forward(x)
