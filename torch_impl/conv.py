"""2-D convolution in PyTorch (NCHW input, OIHW weight), with input validation.

Flax's twin is NHWC with an HWIO kernel (trap 3); both use torch's padding rules (traps 5, 6).
"""
from __future__ import annotations

import torch
from torch import nn

# --------------------------------------------------------------- validation shared by the layers
# (the same messages as jax_impl's, with the layout named for each side)


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


def _check_input(layer: str, x: torch.Tensor, channels: int | None, channels_name: str = "in_channels"):
    """A 4-D NCHW input with the expected channel count, or a ValueError naming what was expected."""
    if x.dim() != 4:
        raise ValueError(f"{layer}: expected a 4-D input (N, C, H, W), got a {x.dim()}-D input "
                         f"of shape {tuple(x.shape)}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{layer}: expected {channels_name}={channels} channels on axis 1 "
                         f"(NCHW), got {x.shape[1]} (input shape {tuple(x.shape)})")


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


class Conv2d(nn.Conv2d):
    """2-D cross-correlation over NCHW input with a weight of shape (out, in_channels/groups, kh, kw).

    Flax's twin is NHWC/HWIO; unlike nn.Conv2d, a 3-D (unbatched) input is rejected, not accepted.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, *, dtype=torch.float32):
        name = "Conv2d"
        _at_least(name, "in_channels", (in_channels, in_channels), 1)
        _at_least(name, "out_channels", (out_channels, out_channels), 1)
        kernel_size = _at_least(name, "kernel_size", _pair(name, "kernel_size", kernel_size), 1)
        stride = _at_least(name, "stride", _pair(name, "stride", stride), 1)
        dilation = _at_least(name, "dilation", _pair(name, "dilation", dilation), 1)
        if not isinstance(groups, int) or groups < 1 or in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: groups must be a positive int dividing in_channels={in_channels} "
                             f"and out_channels={out_channels}, got groups={groups!r}")
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"{name}: padding must be an int, a pair, 'same' or 'valid', got {padding!r}")
            if padding == "same" and stride != (1, 1):
                raise ValueError(f"{name}: padding='same' needs stride=1 (as in torch), got stride={stride}")
        else:
            padding = _at_least(name, "padding", _pair(name, "padding", padding), 0)
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                         bias, dtype=dtype)

    def _pads(self) -> tuple:
        if self.padding == "same":
            return _same_padding(self.kernel_size, self.dilation)
        if self.padding == "valid":
            return ((0, 0), (0, 0))
        return tuple((p, p) for p in self.padding)

    def forward(self, x):
        _check_input("Conv2d", x, self.in_channels)
        _check_fits("Conv2d", tuple(x.shape[2:]), self._pads(), self.kernel_size, self.dilation)
        return super().forward(x)
