"""Input checks the JAX twin's layers share: an NHWC batch with the expected channel count.

torch's twin checks NCHW; the layout-free rules both twins follow live in shape_rules.
"""
from __future__ import annotations

import jax.numpy as jnp


def check_input(layer: str, x, channels: int | None, channels_name: str = "in_channels"):
    """A 4-D NHWC input with the expected channel count, or a ValueError naming what was expected.

    Channels are on the last axis (torch's twin: axis 1), as Flax's layers expect.
    """
    if jnp.ndim(x) != 4:
        raise ValueError(f"{layer}: expected a 4-D input (N, H, W, C), got a {jnp.ndim(x)}-D input "
                         f"of shape {tuple(jnp.shape(x))}")
    if channels is not None and x.shape[-1] != channels:
        raise ValueError(f"{layer}: expected {channels_name}={channels} channels on the last axis "
                         f"(NHWC), got {x.shape[-1]} (input shape {tuple(x.shape)})")
