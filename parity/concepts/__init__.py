"""Every concept, as one plain list (one module per group family); `parity.registry` indexes it.

The float16, bfloat16, integer, bool and complex variants of parity/concepts/dtypes.py are folded
into the concepts they belong to here (`Variant.owner`): `activations.relu` runs in int32 as a row of
its own, not as a concept of the `dtypes` group."""
from parity.concept import Concept
from parity.concepts import basics, dtypes, layers, optim, training


def _fold(concepts: list[Concept], variants) -> list[Concept]:
    by_name = {c.name: c for c in concepts}
    for v in variants:
        if v.owner not in by_name:
            raise ValueError(f"a dtype variant belongs to {v.owner!r}, which is no concept")
        by_name[v.owner] = by_name[v.owner].with_variant(v)
    return [by_name[c.name] for c in concepts]


_flatten = [c for c in dtypes.CONCEPTS if c.group == "layers"]  # Flatten alone: listed beside Flatten → Linear
_layers = [c for lc in layers.CONCEPTS for c in ([*_flatten, lc] if lc.name == "layers.flatten_linear" else [lc])]
CONCEPTS = _fold([*basics.CONCEPTS, *_layers, *optim.CONCEPTS, *training.CONCEPTS,
                  *(c for c in dtypes.CONCEPTS if c not in _flatten)], dtypes.VARIANTS)
