"""Input checks the JAX twin's layers share: an NHWC batch with the expected channel count, and the
x64 warning.

torch's twin checks NCHW; the layout-free rules both twins follow (shapes and dtypes) live in shape_rules.
"""
from __future__ import annotations

import functools
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np

_WIDE = {np.dtype(np.float64): "float32", np.dtype(np.complex128): "complex64"}
_x64_warned = False


def check_input(layer: str, x, channels: int | None, channels_name: str = "in_channels",
                unbatched: bool = False):
    """A 4-D NHWC input with the expected channel count, or a ValueError naming what was expected.

    Channels are on the last axis (torch's twin: axis 1), as Flax's layers expect. With `unbatched`,
    a 3-D (H, W, C) input is accepted too (torch's twin: (C, H, W)), as torch's Conv2d and pooling
    layers accept an unbatched image.
    """
    if jnp.ndim(x) != 4 and not (unbatched and jnp.ndim(x) == 3):
        want = "a 3-D (H, W, C) or 4-D (N, H, W, C) input" if unbatched else "a 4-D input (N, H, W, C)"
        raise ValueError(f"{layer}: expected {want}, got a {jnp.ndim(x)}-D input "
                         f"of shape {tuple(jnp.shape(x))}")
    if channels is not None and x.shape[-1] != channels:
        raise ValueError(f"{layer}: expected {channels_name}={channels} channels on the last axis "
                         f"(NHWC), got {x.shape[-1]} (input shape {tuple(x.shape)})")


def check_x64(*arrays, dtype=None) -> None:
    """Warn once per process when float64 is asked for while `jax_enable_x64` is off (docs/traps.md, trap 25).

    Without x64 JAX silently computes a float64 NumPy input (or a `dtype='float64'` request) in
    float32, where torch computes in float64. Only NumPy inputs and dtype requests can carry float64
    then (a JAX array cannot), so JAX arrays and tracers cost one isinstance check; nothing syncs.
    """
    if _x64_warned:
        return
    wide = None
    if dtype is not None and np.dtype(dtype) in _WIDE:
        wide = np.dtype(dtype)
    for a in arrays:
        if isinstance(a, (np.ndarray, np.generic)) and a.dtype in _WIDE:
            wide = a.dtype
    if wide is not None and not jax.config.jax_enable_x64:
        _warn_x64(wide)


def _warn_x64(wide: np.dtype) -> None:
    global _x64_warned
    _x64_warned = True
    level, frame = 2, sys._getframe(1)  # point at the first caller outside jax_impl
    while frame is not None and frame.f_globals.get("__name__", "").startswith("jax_impl."):
        level, frame = level + 1, frame.f_back
    warnings.warn(f"jax_enable_x64 is off: {wide.name} input computes in {_WIDE[wide]}; enable it with "
                  f"jax.config.update('jax_enable_x64', True)", UserWarning, stacklevel=level)


def x64_checked(fn):
    """The jitted leaf `fn` behind `check_x64` on its positional arguments.

    `jax.jit` turns a float64 NumPy input into float32 before the leaf's body sees it, so the check
    runs outside; `__wrapped__` keeps the leaf's source and signature.
    """
    @functools.wraps(fn)
    def leaf(*args, **kwargs):
        check_x64(*args)
        return fn(*args, **kwargs)
    return leaf
