"""Layer kinds as data: one `Kind` record per kind of layer the comparer pairs between torch and
Flax NNX. Pairing, weight conversion in both directions, the notes on settings that differ and the
layout of each layer's activations all ask the record; adding a kind is adding one record (and its
tests). The stock records are in parity/porting/layer_kinds.py; `register` adds a user's own.

A record says
* which classes it is on each side (`torch`, `flax`; subclasses count), with an optional `accepts`
  test per side for classes that only sometimes fit;
* each parameter and buffer as an `Array`: its torch name, its Flax path relative to the layer
  ("kernel", or "query.kernel" inside a sub-module) and the layout transform each way; or, where
  arrays do not map one to one (a packed attention projection, an LSTM's gates), a `to_flax` /
  `to_torch` pair over the whole layer;
* `notes(tm, fm, ctx)`: the settings whose meaning differs between the two, each naming its entry in
  docs/traps.md;
* `channels_last`: whether the Flax layer's activations put channels last where torch puts them
  second (convolutions, pooling, batch and group norms), which the comparer undoes before comparing.

Conversions are transposes, reshapes, flips and renames: exact in any dtype.
"""
from __future__ import annotations

import torch
from flax import nnx

from parity.porting import attention_kinds, layer_kinds, recurrent_kinds
from parity.porting.kind_record import Array, Kind, NoteContext

__all__ = ["Array", "Kind", "NoteContext", "register", "unregister", "get", "all_kinds"]


# ---------------------------------------------------------------- the registry
# the stock records (parity/porting/layer_kinds.py, attention_kinds.py, recurrent_kinds.py), then users'
_KINDS: dict[str, Kind] = {k.name: k for k in layer_kinds.STOCK + attention_kinds.STOCK + recurrent_kinds.STOCK}


def register(kind: Kind, *, replace: bool = False) -> Kind:
    """Add a kind (a user's own layer, say); later records are asked first, so a user's kind for a
    subclass of a stock layer wins over the stock one. ValueError for a name already taken, unless
    `replace`."""
    if not isinstance(kind, Kind):
        raise TypeError(f"register: expected a parity.porting.Kind, got {type(kind).__name__}")
    if not kind.name or ":" in kind.name:
        raise ValueError(f"register: kind name {kind.name!r} must be non-empty, without ':'")
    if not kind.torch or not kind.flax:
        raise ValueError(f"register: kind {kind.name!r} names no torch class or no Flax class")
    if (kind.to_flax is None) != (kind.to_torch is None):
        raise ValueError(f"register: kind {kind.name!r} needs both to_flax and to_torch, or neither")
    if kind.to_flax is not None and not kind.flax_names:
        raise ValueError(f"register: kind {kind.name!r} converts with to_flax; list its Flax paths in flax_names")
    if kind.name in _KINDS and not replace:
        raise ValueError(f"register: a kind named {kind.name!r} exists already (pass replace=True)")
    _KINDS.pop(kind.name, None)
    _KINDS[kind.name] = kind
    return kind


def unregister(name: str) -> None:
    _KINDS.pop(name, None)


def get(name: str) -> Kind:
    if name not in _KINDS:
        raise KeyError(f"no layer kind {name!r}; known: {', '.join(_KINDS)}")
    return _KINDS[name]


def all_kinds() -> list[Kind]:
    return list(_KINDS.values())


def _match(m, side: str) -> Kind | None:
    for kind in reversed(all_kinds()):
        classes, accepts = (kind.torch, kind.accepts_torch) if side == "torch" else (kind.flax, kind.accepts_flax)
        if isinstance(m, classes) and (accepts is None or accepts(m)) and (side != "torch" or _holds(kind, m)):
            return kind
    return None


def _holds(kind: Kind, m: torch.nn.Module) -> bool:
    """A parametrised torch module (torch.nn.utils.parametrize: weight_norm, say) holds the
    parametrisation's parameters (`parametrizations.weight.original0`, ...), not the layer's own: it is
    of a kind only where the kind's arrays name all of them; else it is a layer of no known kind."""
    if not torch.nn.utils.parametrize.is_parametrized(m):
        return True
    names = {a.torch for a in kind.arrays}
    return bool(names) and all(n in names for n, _ in m.named_parameters())


def torch_kind(m: torch.nn.Module) -> str | None:
    k = _match(m, "torch")
    return k.name if k else None


def flax_kind(m: nnx.Module) -> str | None:
    k = _match(m, "flax")
    return k.name if k else None


def other_kind(m) -> str:
    """Parameterless modules of no known kind pair by class name (torch nn.GELU ⇄ a Flax `GELU`)."""
    return "other:" + type(m).__name__.lower()


def is_param_kind(name: str | None) -> bool:
    """A kind with parameters: such layers must pair one to one between the models."""
    return name is not None and not name.startswith("other:") and name in _KINDS and _KINDS[name].has_params


def param_kind_names() -> list[str]:
    return [k.name for k in all_kinds() if k.has_params]


# ---------------------------------------------------------------- one layer's arrays
def _node(m, path: str):
    for step in path.split(".")[:-1]:
        m = getattr(m, step, None)
        if m is None:
            return None, None
    return m, path.split(".")[-1]


def flax_arrays(kind: str, m) -> dict:
    """The arrays (parameters and statistics) a Flax layer of this kind holds, as Variables, keyed by
    their path relative to the layer."""
    out = {}
    for path in get(kind).flax_paths():
        owner, leaf = _node(m, path)
        v = getattr(owner, leaf, None) if owner is not None else None
        if isinstance(v, nnx.Variable):
            out[path] = v
    return out


def to_flax(kind: str, part: dict, tm=None, fm=None, flatten=None) -> dict:
    """One torch layer's state (NumPy, torch names) → its Flax arrays (paths relative to the layer).
    `flatten` (C, H·W, 1): a Linear reading a flattened map, its rows permuted (docs/traps.md, trap 4)."""
    if flatten and kind == "linear" and part.get("weight") is not None:
        from parity import convert
        return convert.flatten_linear_torch_to_flax({k: v for k, v in part.items() if v is not None}, flatten)
    return get(kind).convert_to_flax(part, tm, fm)


def to_torch(kind: str, part: dict, tm=None, fm=None, flatten=None, grads: bool = False) -> dict:
    """One Flax layer's arrays (NumPy, paths relative to the layer) → torch names and layouts (any
    subset of parameters and statistics, so gradients convert by the same rule as weights)."""
    if flatten and kind == "linear" and part.get("kernel") is not None:
        from parity import convert
        return convert.flatten_linear_flax_to_torch({k: v for k, v in part.items() if v is not None}, flatten)
    return get(kind).convert_to_torch(part, tm, fm, grads)


def notes(kind: str, tm, fm, *, train: bool, dtype: str, flax_in_shape=None, layout="nhwc") -> list[str]:
    """Settings of a paired torch/Flax layer that differ in meaning, each with its trap (none for the
    parameterless modules paired by class name, "other:<class>")."""
    if kind.startswith("other:"):
        return []
    return get(kind).layer_notes(tm, fm, NoteContext(train, dtype, flax_in_shape, layout))


def torch_dtype(dtype: str) -> torch.dtype:
    return getattr(torch, dtype)


def is_channels_last(name: str) -> bool:
    """Whether Flax layers of this kind hold activations channels-last (undone before comparing)."""
    return name in _KINDS and _KINDS[name].channels_last


# ---------------------------------------------------------------- whole models, by a map of their layers
def _spec(layer: str, spec) -> tuple[str, tuple | None]:
    """A layer spec: a kind's name, or ("flatten_linear", (C, H, W)) for a Linear reading a flattened map."""
    kind, args = (spec[0], tuple(spec[1:])) if isinstance(spec, tuple) else (spec, ())
    if kind == "flatten_linear":
        if len(args) != 1 or len(args[0]) != 3:
            raise ValueError(f"layer {layer!r}: ('flatten_linear', (C, H, W)) takes the map's shape")
        return "linear", tuple(args[0])
    if args:
        raise ValueError(f"layer {layer!r}: only 'flatten_linear' takes arguments, as ('flatten_linear', (C, H, W))")
    if kind not in _KINDS or not _KINDS[kind].has_params:
        raise ValueError(f"layer {layer!r}: unknown kind {kind!r}; known: "
                         f"{sorted(param_kind_names() + ['flatten_linear'])}")
    return kind, None


def _steps(name: str) -> tuple:
    """'features.0' → ('features', 0): NNX pure dicts key list entries by int."""
    return tuple(int(p) if p.isdigit() else p for p in name.split("."))


def model_to_flax(sd: dict, layers: dict) -> dict:
    """A whole model's torch state_dict (NumPy) → the nested Flax NNX pure dict of its twin, by the
    records of the kinds `layers` names ({dotted layer name: kind, or ("flatten_linear", (C, H, W))});
    every key of `sd` must belong to a listed layer, so nothing is dropped silently."""
    out: dict = {}
    left = set(sd)
    for name, spec in layers.items():
        kind, chw = _spec(name, spec)
        part = {k[len(name) + 1:]: v for k, v in sd.items() if k.startswith(name + ".")}
        if not part:
            raise KeyError(f"model_to_flax: no parameters under {name!r} in the state_dict")
        left -= {f"{name}.{k}" for k in part}
        node = out
        for key in _steps(name):
            node = node.setdefault(key, {})
        node.update(to_flax(kind, part, flatten=chw))
    if left:
        raise KeyError(f"model_to_flax: state_dict keys of no listed layer: {sorted(left)}")
    return out


def model_to_torch(params: dict, layers: dict) -> dict:
    """The nested Flax NNX pure dict of a model → its twin's torch state_dict (inverse of model_to_flax)."""
    out: dict = {}
    for name, spec in layers.items():
        kind, chw = _spec(name, spec)
        node = params
        for key in _steps(name):
            if key not in node:
                raise KeyError(f"model_to_torch: no layer {name!r} in the Flax parameters")
            node = node[key]
        part = {k: v for k, v in node.items() if v is not None}
        out.update({f"{name}.{k}": v for k, v in to_torch(kind, part, flatten=chw).items()})
    return out
