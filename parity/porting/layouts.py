"""Reading a Flax activation in torch's layout: which tensors are channels-last (judged from their
shapes against torch's), and the moves that bring them back (docs/traps.md, traps 3, 4)."""
from __future__ import annotations

import numpy as np

from parity.porting import kinds


def is_nhwc(flax_shape, torch_shape, layout: str, channels_last_kind: bool = False) -> bool:
    """Whether a Flax activation is channels-last (NWC, NHWC, NDHWC) where torch's is channels-first,
    judged from its shape and torch's: the layout that makes the shapes agree; where both or neither
    do (C = H = W, say), channels-last for the layers of a channels-last kind (nnx.Conv and the
    project's twins take nothing else), `layout` for other 4-D tensors, and as-is otherwise (a
    sequence (N, L, D) is no image). A model taking NCHW at its boundary may well be
    NHWC inside, so each tensor is judged on its own."""
    if flax_shape is None or torch_shape is None or not 3 <= len(flax_shape) <= 5 \
            or len(torch_shape) != len(flax_shape):
        return False
    as_is = tuple(flax_shape) == tuple(torch_shape)
    moved = tuple(flax_shape) == (torch_shape[0], *torch_shape[2:], torch_shape[1])
    if as_is != moved:
        return moved
    return channels_last_kind or (layout == "nhwc" and len(flax_shape) == 4)


def _channels_first(value):
    return value.transpose(0, value.ndim - 1, *range(1, value.ndim - 1))


def to_torch_layout(value, torch_shape, layout: str, kind: str | None = None, which: str = "out",
                    flax_in_shape=None, torch_in_shape=None, flatten=None):
    """A Flax activation in torch's layout: a channels-last tensor → channels-first; a Flatten's output
    of an NHWC map reordered (H, W, C) → (C, H, W); the input of a Linear whose rows were permuted
    likewise (docs/traps.md, traps 3, 4); heads split by nnx.LinearGeneral ((N, L, H, D) for torch's
    (N, L, H·D)) merged again."""
    if value is None:
        return value
    cl = kind is not None and kinds.is_channels_last(kind)
    if 3 <= value.ndim <= 5 and is_nhwc(value.shape, torch_shape, layout, cl):
        return _channels_first(value)
    if which == "out" and kind == "flatten" and value.ndim == 2 and is_nhwc(flax_in_shape, torch_in_shape, layout):
        n, h, w, c = flax_in_shape
        return value.reshape(n, h, w, c).transpose(0, 3, 1, 2).reshape(n, -1)
    if which == "in" and kind == "linear" and flatten and value.ndim == 2:
        c, hw, _ = flatten
        return value.reshape(value.shape[0], hw, c).transpose(0, 2, 1).reshape(value.shape[0], -1)
    if torch_shape is not None and value.ndim != len(torch_shape) and value.size == int(np.prod(torch_shape)):
        k = min(value.ndim, len(torch_shape)) - 1  # the leading axes agree; the trailing ones split or merge
        if tuple(value.shape[:k]) == tuple(torch_shape[:k]):
            return value.reshape(torch_shape)
    return value


def channels_last_cotangents(cts, flax_shapes, layout: str) -> list:
    """torch's output cotangents in the layout of the Flax outputs (of `flax_shapes`): a channels-last
    output (NWC, NHWC, NDHWC) takes its cotangent channels-last too."""
    return [None if c is None else (np.moveaxis(c, 1, -1) if 3 <= c.ndim <= 5 and is_nhwc(sh, c.shape, layout)
                                    else c) for c, sh in zip(cts, list(flax_shapes) + [None] * len(cts))]
