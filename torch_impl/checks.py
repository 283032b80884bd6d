"""Input checks the PyTorch twin's layers share: an NCHW batch with the expected channel count, and
the (empty) twin of JAX's x64 warning.

Flax's twin checks NHWC; the layout-free rules both twins follow (shapes and dtypes) live in shape_rules.
"""
from __future__ import annotations

import torch


def check_input(layer: str, x: torch.Tensor, channels: int | None, channels_name: str = "in_channels",
                unbatched: bool = False):
    """A 4-D NCHW input with the expected channel count, or a ValueError naming what was expected.

    Channels are on axis 1 (Flax's twin: the last axis), as torch's layers expect. With `unbatched`,
    a 3-D (C, H, W) input is accepted too (Flax's twin: (H, W, C)), as torch's Conv2d and pooling
    layers accept an unbatched image; its channels are on axis 0.
    """
    if x.dim() != 4 and not (unbatched and x.dim() == 3):
        want = "a 3-D (C, H, W) or 4-D (N, C, H, W) input" if unbatched else "a 4-D input (N, C, H, W)"
        raise ValueError(f"{layer}: expected {want}, got a {x.dim()}-D input "
                         f"of shape {tuple(x.shape)}")
    axis = x.dim() - 3
    if channels is not None and x.shape[axis] != channels:
        raise ValueError(f"{layer}: expected {channels_name}={channels} channels on axis {axis} "
                         f"({'NCHW' if axis else 'CHW'}), got {x.shape[axis]} (input shape {tuple(x.shape)})")


def check_x64(*arrays, dtype=None) -> None:
    """Nothing to check: torch computes float64 whenever it is asked for.

    The twin of `jax_impl.checks.check_x64`, which warns when JAX's x64 mode is off (docs/traps.md, trap 25).
    """


def x64_checked(fn):
    """`fn` unchanged: the twin of `jax_impl.checks.x64_checked`, which JAX's x64 mode needs and torch does not."""
    return fn
