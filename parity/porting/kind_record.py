"""The `Kind` record: what the comparer knows about one kind of layer in both frameworks (the
module docstring of parity/porting/kinds.py says what each field is for). Kept apart from the
registry so that the modules holding the stock records import it and nothing imports them back."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np


def _same(a, tm=None, fm=None):
    return a


@dataclass(frozen=True)
class Array:
    """One parameter or buffer. `to_flax(a, torch_module, flax_module)` and `to_torch(a, torch_module,
    flax_module)` change its layout (the identity by default); `stat` marks a buffer (running statistics), which is converted
    with the weights but has no gradient."""

    torch: str
    flax: str
    to_flax: Callable = _same
    to_torch: Callable = _same
    stat: bool = False


class Note(str):
    """A note (see `Kind.notes`) about a setting that bears on only some of what a pair of layers is
    compared by: `on` holds "output" (the layer's output and its gradients) and/or "statistics" (the
    running statistics a training-mode pass updates). A plain str bears on both. A divergence names,
    among the settings that differ, only those bearing on what diverged."""

    on: tuple = ("output", "statistics")

    def __new__(cls, text: str, on: tuple = ("output", "statistics")):
        note = super().__new__(cls, text)
        note.on = tuple(on)
        return note


def bears_on(note: str, what: str) -> bool:
    """Whether `note` bears on `what` ("output" or "statistics"); a plain str bears on both."""
    return what in getattr(note, "on", Note.on)


@dataclass(frozen=True)
class NoteContext:
    """What a kind's notes may depend on: the mode compared and the Flax layer's input shape."""

    train: bool = False
    dtype: str = "float32"
    flax_in_shape: tuple | None = None
    layout: str = "nhwc"


@dataclass(frozen=True)
class Kind:
    """One kind of layer in both frameworks (see the module docstring)."""

    name: str
    torch: tuple = ()
    flax: tuple = ()
    arrays: tuple[Array, ...] = ()
    notes: Callable | None = None  # (torch_module, flax_module, NoteContext) -> list[str]
    accepts_torch: Callable | None = None  # (torch_module) -> bool
    accepts_flax: Callable | None = None  # (flax_module) -> bool
    to_flax: Callable | None = None  # (torch part {name: array}, tm, fm) -> {flax path: array}
    to_torch: Callable | None = None  # (flax part {path: array}, tm, fm, grads: bool) -> {name: array}
    flax_names: tuple[str, ...] = ()  # with to_flax/to_torch: every Flax path the layer may hold
    channels_last: bool = False
    summary: str = ""  # one line for the table of kinds (README)
    doc: str = ""  # where its differences are explained (docs/traps.md, ...)
    extra: dict = field(default_factory=dict)
    flax_source: Callable | None = None  # (torch_module) -> (constructor source str, [comments])

    @property
    def has_params(self) -> bool:
        return bool(self.arrays) or self.to_flax is not None

    def flax_paths(self, stats: bool = True) -> tuple[str, ...]:
        if self.to_flax is not None:
            return self.flax_names
        return tuple(a.flax for a in self.arrays if stats or not a.stat)

    def stat_paths(self) -> tuple[str, ...]:
        return tuple(a.flax for a in self.arrays if a.stat)

    # -- conversions of one layer's arrays (NumPy), any subset present (gradients carry no statistics)
    def convert_to_flax(self, part: dict, tm=None, fm=None) -> dict:
        """torch names → Flax paths (relative to the layer), layouts changed."""
        part = {k: np.asarray(v) for k, v in part.items() if v is not None}
        if self.to_flax is not None:
            return self.to_flax(part, tm, fm)
        out = {}
        for a in self.arrays:
            if a.torch in part:
                out[a.flax] = np.asarray(a.to_flax(part[a.torch], tm, fm), order="C")
        unknown = set(part) - {a.torch for a in self.arrays}
        if unknown:
            raise KeyError(f"{self.name}: torch arrays {sorted(unknown)} belong to no array of this kind")
        return out

    def convert_to_torch(self, part: dict, tm=None, fm=None, grads: bool = False) -> dict:
        """Flax paths → torch names, layouts changed back; `grads` when the arrays are gradients
        (a kind whose torch side holds one array twice, as an LSTM's two biases, sends the Flax
        gradient to both)."""
        part = {k: np.asarray(v) for k, v in part.items() if v is not None}
        if self.to_torch is not None:
            return self.to_torch(part, tm, fm, grads)
        out = {}
        for a in self.arrays:
            if a.flax in part:
                out[a.torch] = np.asarray(a.to_torch(part[a.flax], tm, fm), order="C")
        return out

    def layer_notes(self, tm, fm, ctx: NoteContext) -> list[str]:
        out = []
        fdt = getattr(fm, "dtype", None)
        if self.has_params and fdt is not None and np.dtype(fdt) != np.dtype(ctx.dtype):
            out.append(f"Flax layer has dtype={np.dtype(fdt).name}: it computes in {np.dtype(fdt).name} "
                       f"whatever its parameters' dtype ({ctx.dtype} compared)")
        return out + (list(self.notes(tm, fm, ctx)) if self.notes else [])
