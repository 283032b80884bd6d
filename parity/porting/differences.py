"""Known differences a user may accept by name: real, documented differences between a stock Flax
layer and its torch counterpart that are no porting bug, so that the rest of the model is still
judged. An accepted difference is measured all the same, and the report lists where it applied and
how large it was.

    compare(torch_model, flax_model, x, train=True, accept=["batchnorm_biased_variance"])
"""
from __future__ import annotations

from dataclasses import dataclass

from flax import nnx


@dataclass(frozen=True)
class KnownDifference:
    """One difference: the kind of layer and the torch array it touches, and where it is explained."""

    name: str
    kind: str
    torch_array: str
    flax_classes: tuple
    what: str
    doc: str

    def applies(self, pair) -> bool:
        return pair.kind == self.kind and isinstance(pair.flax.module, self.flax_classes)


KNOWN = {d.name: d for d in (
    KnownDifference(
        "batchnorm_biased_variance", "batchnorm", "running_var", (nnx.BatchNorm,),
        "stock nnx.BatchNorm updates its running variance with the biased batch variance, torch with the "
        "unbiased one: a factor n/(n−1) on the new batch's share after a training-mode pass",
        "docs/traps.md, trap 12"),
)}


def check(accept) -> tuple[KnownDifference, ...]:
    """The accepted differences by name; ValueError naming the unknown one and the known ones."""
    if accept is None:
        return ()
    if isinstance(accept, str):
        accept = (accept,)
    out = []
    for name in accept:
        if name not in KNOWN:
            raise ValueError(f"accept: no known difference {name!r}; known: {', '.join(KNOWN)}")
        out.append(KNOWN[name])
    return tuple(dict.fromkeys(out))
