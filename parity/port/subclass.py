"""Subclasses of a layer kind's torch class whose own forward computes something else.

Hugging Face's ConvNextLayerNorm is an nn.LayerNorm that, with data_format="channels_first", moves
channels last around LayerNorm's forward; OPT's learned positional embedding is an nn.Embedding whose
forward takes the attention mask and looks up cumulative positions plus 2; Gemma's word embedding is
an nn.Embedding whose output is scaled. The kind's Flax layer would compute the parent class's
function, so a port treats such an instance like any class of no kind: its forward is traced (its
`super().forward(...)` call becomes the functional op, F.layer_norm, F.embedding) and its parameters
keep torch's names, listed in the port's weights mapping, which is how the comparer and the weights
converter pair them (parity/porting/pairing.py: a layer all of whose parameters the mapping names
is paired by the mapping, not by its kind).

An overriding forward that computes the parent's value on the example call (ConvNextLayerNorm with
data_format="channels_last") stays a layer of its kind: the kind's Flax layer computes it.
"""
from __future__ import annotations

import weakref

import torch
from torch import nn

from parity.porting import kinds

# instances a port traces into although their class is a kind's (decided per model by `decide`)
TRACED = weakref.WeakSet()


def overridden_base(m: nn.Module) -> type | None:
    """The kind's torch class `m` is an instance of, where `m`'s class overrides its forward; else None."""
    kind = kinds._match(m, "torch")
    if kind is None:
        return None
    base = next((c for c in kind.torch if isinstance(m, c)), None)
    if base is None or type(m).forward is base.forward:
        return None
    return base


def _equal(a, b) -> bool:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return a is None and b is None


def computes_base(m: nn.Module, base: type, args: tuple, kwargs: dict) -> bool:
    """Whether `m`'s own forward gives, on its recorded call, exactly what `base.forward` gives."""
    try:
        with torch.no_grad():
            return _equal(base.forward(m, *args, **kwargs), type(m).forward(m, *args, **kwargs))
    except Exception:  # noqa: BLE001 — the parent's forward does not even take this call
        return False


def decide(model: nn.Module, calls: dict) -> None:
    """Mark the instances of `model` (called as `calls` recorded: {module: (args, kwargs)}) whose
    class overrides its kind's forward with something else on their call."""
    for m in model.modules():
        TRACED.discard(m)
        base = overridden_base(m)
        if base is not None and m in calls and not computes_base(m, base, *calls[m]):
            TRACED.add(m)
