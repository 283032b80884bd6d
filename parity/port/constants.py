"""Source text for a constant array of the torch model (a buffer, a constant of an exported graph).

A buffer's values are part of what the model computes, so the port must hold them exactly. Most of
the large ones are made by a formula — a causal mask `tril(ones(n, n))`, `position_ids = arange(n)`,
a table of zeros — and the port writes that formula, which reads better than the numbers and stays
one line whatever n is. Only an array no formula here reproduces bit for bit is written out as a
literal, and only up to LITERAL_LIMIT values; beyond that the caller reports it as not portable.
"""
from __future__ import annotations

import re

import numpy as np

LITERAL_LIMIT = 4096  # values written out in the source at most: a larger literal is no longer code to read


def array_source(arr: np.ndarray, dtype_src: str) -> str | None:
    """A jnp expression equal to `arr` element for element (`dtype_src`: its jnp dtype, e.g.
    "jnp.bool_"), or None when `arr` is larger than LITERAL_LIMIT and no formula here makes it."""
    shape = tuple(arr.shape)
    if arr.size and np.all(arr == arr.flat[0]) and not np.isnan(arr.flat[0]):
        v = arr.flat[0].item()
        if v == 0 and not np.signbit(arr.flat[0]):
            return f"jnp.zeros({shape!r}, dtype={dtype_src})"
        if v == 1:
            return f"jnp.ones({shape!r}, dtype={dtype_src})"
        return f"jnp.full({shape!r}, {v!r}, dtype={dtype_src})"
    if arr.ndim >= 2 and arr.shape[-1] > 1 and arr.shape[-2] > 1:
        band = _band(arr)
        if band is not None:
            return band.format(ones=f"jnp.ones({shape!r}, dtype={dtype_src})")
    if arr.size > 1 and arr.dtype.kind in "iuf" and np.array_equal(arr.ravel(), np.arange(arr.size, dtype=arr.dtype)):
        src = f"jnp.arange({arr.size}, dtype={dtype_src})"
        return src if arr.ndim == 1 else f"{src}.reshape({shape!r})"
    if arr.size > LITERAL_LIMIT:
        return None
    values = re.sub(r"\b(nan|inf)\b", r"jnp.\1", repr(arr.tolist()))  # non-finite floats, as names
    return f"jnp.asarray({values}, dtype={dtype_src})"


def _band(arr: np.ndarray) -> str | None:
    """A 0/1 (or bool) array that is 1 exactly between two diagonals of its last two axes, the same in
    every leading slice — a causal mask `tril`, a sliding-window mask (GPT-Neo's local attention) — as a
    format string over `{ones}`; None otherwise."""
    if arr.dtype != bool and not np.isin(arr, (0, 1)).all():
        return None
    n, m = arr.shape[-2:]
    flat = arr.reshape(-1, n, m).astype(bool)
    if not (flat == flat[0]).all() or not flat[0].any():
        return None
    d = np.arange(m)[None, :] - np.arange(n)[:, None]  # j − i: the diagonal of each element
    lo, hi = int(d[flat[0]].min()), int(d[flat[0]].max())
    if not np.array_equal(flat[0], (d >= lo) & (d <= hi)):
        return None
    below = lo <= -(n - 1)  # nothing cut below the lowest diagonal
    above = hi >= m - 1
    tril = "jnp.tril({ones})" if hi == 0 else f"jnp.tril({{ones}}, {hi})"
    triu = "jnp.triu({ones})" if lo == 0 else f"jnp.triu({{ones}}, {lo})"
    if below and above:
        return None  # all ones: the fill above writes it
    if below:
        return tril
    if above:
        return triu
    return f"{tril} * {triu}"
