"""Input checks the PyTorch twin's layers share: an NCHW batch with the expected channel count.

Flax's twin checks NHWC; the layout-free rules both twins follow live in shape_rules.
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
