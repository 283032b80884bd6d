"""A port's weights: torch's state dict converted into the generated Flax model's layout, written as
safetensors (flat names, "layer1.0.conv1.kernel"), and converted back bit for bit.

The conversion is the comparer's (parity/porting/pairing.py): layers paired by name, each layer's
arrays changed by its kind's layout rules (a linear weight transposed, a convolution kernel moved to
(*k, I, O), a transposed convolution's also flipped). Those rules only move and rename elements, so
torch → Flax → torch gives back the very same bits. The file holds every array the pairing converts
(parameters and running statistics); anything else in the Flax model (its random-number state) keeps
the value the constructor gave it.

`LOADER` is the source of `load_weights.py`, written beside the port: it needs NumPy, Flax and
safetensors only, so the port runs without torch or this project.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from flax import nnx

from parity.console import write_bytes_atomic
from parity.porting.api import pair_models

LOADER = '''"""Load `weights.safetensors` (written by `parity port`) into the generated model:

    from load_weights import load_weights
    load_weights(model, "weights.safetensors")

Each array is stored under its dotted path in the model ("layer1.0.conv1.kernel"), already in Flax's
layout; arrays the model does not hold, or holds in another shape, are refused by name.
"""

import numpy as np
from flax import nnx
from safetensors.numpy import load_file


def load_weights(model: nnx.Module, path: str) -> None:
    flat = load_file(path)
    state = nnx.state(model)
    pure = nnx.to_pure_dict(state)
    used = set()

    def fill(tree, prefix):
        for key, value in tree.items():
            name = f"{prefix}{key}"
            if isinstance(value, dict):
                fill(value, name + ".")
            elif name in flat:
                if np.shape(value) != flat[name].shape:
                    raise ValueError(f"{name}: the model holds {np.shape(value)}, the file {flat[name].shape}")
                tree[key] = flat[name]
                used.add(name)

    fill(pure, "")
    unknown = sorted(set(flat) - used)
    if unknown:
        raise ValueError(f"arrays the model does not hold: {unknown[:5]}")
    nnx.replace_by_pure_dict(state, pure)
    nnx.update(model, state)
'''


def flatten(tree: dict, prefix: str = "") -> dict[str, np.ndarray]:
    """A nested pure dict as {"a.0.b": array}."""
    out = {}
    for k, v in tree.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, name + "."))
        else:
            out[name] = np.ascontiguousarray(np.asarray(v))
    return out


def unflatten_like(flat: dict, model) -> dict:
    """{"a.0.b": array} as the nested pure dict of `model`'s state (integer keys where it has them)."""
    def walk(tree, prefix):
        out = {}
        for k, v in tree.items():
            name = f"{prefix}{k}"
            if isinstance(v, dict):
                sub = walk(v, name + ".")
                if sub:
                    out[k] = sub
            elif name in flat:
                out[k] = flat[name]
        return out
    return walk(nnx.to_pure_dict(nnx.state(model)), "")


def torch_state(torch_model) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy().copy() for k, v in torch_model.state_dict().items()}


def tied_names(torch_model) -> dict[str, str]:
    """Each further state-dict name of a tensor the state dict holds under several names (tied
    weights, parity/port/ties.py) → its first name."""
    first: dict[int, str] = {}
    out = {}
    for k, v in torch_model.state_dict(keep_vars=True).items():
        out[k] = first.setdefault(id(v), k)
    return {k: f for k, f in out.items() if k != f}


def to_flax(torch_model, flax_model, inputs, *, mapping: dict | None = None,
            layout: str = "nhwc") -> tuple[dict[str, np.ndarray], object]:
    """torch's state dict in the Flax model's layout, flat by dotted path, and the pairing used
    (`mapping`: {torch name: Flax path} for arrays of layers of no kind, as `compare`'s weights=)."""
    pairing = pair_models(torch_model, flax_model, inputs, weights=mapping, layout=layout)
    return flatten(pairing.torch_to_flax(torch_state(torch_model))), pairing


def to_torch(flat: dict, pairing, flax_model) -> dict[str, np.ndarray]:
    """The reverse: flat Flax arrays back into torch's names and layouts."""
    return pairing.flax_to_torch(unflatten_like(flat, flax_model))


def save(flat: dict, path: str | os.PathLike) -> Path:
    """safetensors, written atomically (a reader never sees half a file)."""
    from safetensors.numpy import save

    data = save(dict(sorted(flat.items())))
    return write_bytes_atomic(path, lambda f: f.write(data))


def load(path: str | os.PathLike) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(path))


def round_trip(torch_model, flat: dict, pairing, flax_model) -> dict:
    """torch → Flax (as written) → torch, against torch's own state dict: bit for bit, dtype for dtype.
    Running-statistics counters that the Flax model has no place for (BatchNorm's num_batches_tracked)
    are listed apart, not counted as mismatches."""
    sd = torch_state(torch_model)
    back = to_torch(flat, pairing, flax_model)
    for k, first in tied_names(torch_model).items():  # tied weights: the port holds one array for all names
        if k not in back and first in back:
            back[k] = back[first]
    mismatched = [k for k in sd if k in back and not (back[k].dtype == sd[k].dtype and back[k].shape == sd[k].shape
                                                       and np.array_equal(back[k], sd[k]))]
    absent = [k for k in sd if k not in back]
    return {"arrays": len(sd), "bit_exact": len(sd) - len(mismatched) - len(absent), "mismatched": mismatched,
            "not_in_port": absent, "ok": not mismatched and all(k.endswith("num_batches_tracked") for k in absent)}
