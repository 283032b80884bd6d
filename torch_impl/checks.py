"""Input checks the PyTorch twin's layers share: an NCHW batch with the expected channel count, and
the (empty) twin of JAX's x64 warning.

Flax's twin checks NHWC; the layout-free rules both twins follow (shapes and dtypes) live in shape_rules.
"""
from __future__ import annotations

import torch


def check_input(layer: str, x: torch.Tensor, channels: int | None, channels_name: str = "in_channels"):
    """A 4-D NCHW input with the expected channel count, or a ValueError naming what was expected.

    Channels are on axis 1 (Flax's twin: the last axis), as torch's layers expect.
    """
    if x.dim() != 4:
        raise ValueError(f"{layer}: expected a 4-D input (N, C, H, W), got a {x.dim()}-D input "
                         f"of shape {tuple(x.shape)}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{layer}: expected {channels_name}={channels} channels on axis 1 "
                         f"(NCHW), got {x.shape[1]} (input shape {tuple(x.shape)})")


def check_x64(*arrays, dtype=None) -> None:
    """Nothing to check: torch computes float64 whenever it is asked for.

    The twin of `jax_impl.checks.check_x64`, which warns when JAX's x64 mode is off (docs/traps.md, trap 25).
    """


def x64_checked(fn):
    """`fn` unchanged: the twin of `jax_impl.checks.x64_checked`, which JAX's x64 mode needs and torch does not."""
    return fn
