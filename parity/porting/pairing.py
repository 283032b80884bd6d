"""Pairing a torch model's layers with a Flax NNX model's, and converting weights both ways.

The layers are paired by name when both models give every parametrised layer the same dotted name
(torch `layer1.0.conv1` ⇄ Flax path ('layer1', 0, 'conv1'); nnx.Sequential's `layers` step is
ignored), otherwise in execution order: the order in which one forward pass first calls them, found
by running both models once on the inputs. Not definition order: torch keeps attributes in the order
`__init__` assigns them but NNX iterates them sorted by name, so the two definition orders of the
same model differ; execution order is also the order in which a first divergence is sought. Layers
a pass never calls come last, in definition order. Each pair must be of the same kind and its
converted parameters must have the Flax layer's shapes; otherwise pairing refuses, naming the first
pair that fails. Conversions are the rules of parity/convert.py, so they are exact.
"""
from __future__ import annotations

import numpy as np
import torch
from flax import nnx

from parity.porting import kinds
from parity.porting.trace import Leaf, flax_name


class PortingError(ValueError):
    """The models or inputs cannot be compared as given; the message (one line) says why and what to do."""


def _where(leaf: Leaf) -> str:
    return f"{leaf.side} `{leaf.label}` ({leaf.cls}, {leaf.defined})"


class Pair:
    """A torch layer and the Flax layer that computes the same thing. `flatten` is (C, H·W, 1) for a
    Linear reading a flattened (C, H, W) map that Flax flattens in (H, W, C) order (docs/traps.md, trap 4)."""

    def __init__(self, index: int, kind: str, t: Leaf, f: Leaf, flatten=None):
        self.index, self.kind, self.torch, self.flax, self.flatten = index, kind, t, f, flatten
        self.flatten_candidate = flatten  # (C, H·W, 1) when torch's Linear reads a flattened map

    def describe(self) -> str:
        return f"pair {self.index + 1}: {_where(self.torch)} ⇄ {_where(self.flax)}"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "torch": self.torch.name, "flax": list(self.flax.path),
                "flatten_chw": list(self.flatten) if self.flatten else None}


# ---------------------------------------------------------------- nested pure dicts
def _get(tree: dict, path: tuple):
    for k in path:
        tree = tree[k]
    return tree


def _steps(key: str) -> list:
    """A dotted key's steps; digits are list positions, which nnx's pure dicts key by int
    (an nnx.Sequential's `layers.0`)."""
    return [int(step) if step.isdigit() else step for step in key.split(".")]


def _set(tree: dict, path: tuple, value: dict) -> None:
    """Put `value`'s arrays under `path`; a dotted key ("query.kernel") goes into sub-dicts."""
    for k in path:
        tree = tree.setdefault(k, {})
    for key, v in value.items():
        node, steps = tree, _steps(key)
        for step in steps[:-1]:
            node = node.setdefault(step, {})
        node[steps[-1]] = v


def _pick(node, key: str):
    """The array at a dotted key below `node` (a nested pure dict), or None."""
    for step in _steps(key):
        if not isinstance(node, dict) or step not in node:
            return None
        node = node[step]
    return node


def _flat(tree, prefix=()):
    for k, v in tree.items():
        if isinstance(v, dict):
            yield from _flat(v, prefix + (k,))
        else:
            yield prefix + (k,), v


def normalised_flax_name(model, path: tuple) -> str:
    """The Flax path as torch would name it: nnx.Sequential's `layers` step dropped."""
    out, node = [], model
    skip = False
    for k in path:
        child = node[k] if isinstance(k, int) else getattr(node, k)
        if not (skip and k == "layers"):
            out.append(str(k))
        skip = isinstance(child, nnx.Sequential)
        node = child
    return ".".join(out)


def torch_state(leaf: Leaf) -> dict:
    return {k: v.detach().cpu().numpy().copy() for k, v in leaf.module.state_dict().items()}


# ---------------------------------------------------------------- the pairing
class Pairing:
    """Which torch layer is which Flax layer, and the weight conversions between the two models."""

    def __init__(self, pairs, free, loose, strategy, notes, torch_leaves, flax_leaves, loose_layouts=None):
        self.pairs: list[Pair] = pairs  # layers with parameters, in torch's execution order
        self.free: list[Pair] = free  # parameterless layers paired by kind (dropout, pooling, flatten, ...)
        self.loose: list[tuple[str, tuple]] = loose  # torch parameter name ⇄ Flax path, outside any layer
        self.strategy, self.notes = strategy, notes
        self.torch_leaves, self.flax_leaves = torch_leaves, flax_leaves
        # torch parameter name → (to_flax, to_torch) for loose parameters the user gave a layout
        self.loose_layouts: dict = loose_layouts or {}

    def of_torch(self, name: str) -> Pair | None:
        for p in self.pairs + self.free:
            if p.torch.name == name:
                return p
        return None

    def of_flax(self, name: str) -> Pair | None:
        for p in self.pairs + self.free:
            if p.flax.name == name:
                return p
        return None

    def to_dict(self) -> dict:
        return {"strategy": self.strategy, "layers": [p.to_dict() for p in self.pairs],
                "parameterless": [p.to_dict() for p in self.free],
                "loose_parameters": [{"torch": t, "flax": list(f), "layout": self._layout_name(t)}
                                     for t, f in self.loose]}

    def _layout_name(self, t: str) -> str:
        fns = self.loose_layouts.get(t)
        return "same" if fns is None else getattr(fns, "name", "custom")

    # -- whole-model conversions (NumPy in, NumPy out)
    def torch_to_flax(self, sd: dict) -> dict:
        """A torch state_dict (NumPy) → the nested pure dict of the Flax model's paired arrays.
        Counters the Flax layer does not keep (nnx.BatchNorm has no num_batches_tracked) are dropped."""
        out: dict = {}
        for p in self.pairs:
            prefix = p.torch.name + "." if p.torch.name else ""
            whole = kinds.get(p.kind).to_flax is not None  # converting the whole layer: its sub-modules' arrays too
            part = {k[len(prefix):]: np.asarray(v) for k, v in sd.items()
                    if k.startswith(prefix) and (whole or "." not in k[len(prefix):])}
            conv = kinds.to_flax(p.kind, part, p.torch.module, p.flax.module, p.flatten)
            held = kinds.flax_arrays(p.kind, p.flax.module)
            if any(k in held for k in conv):  # a layer without arrays (InstanceNorm, affine=False) adds nothing
                _set(out, p.flax.path, {k: v for k, v in conv.items() if k in held})
        for t, f in self.loose:
            to_f = self.loose_layouts[t][0] if t in self.loose_layouts else _same
            _set(out, f[:-1], {f[-1]: np.asarray(to_f(np.asarray(sd[t])))})
        return out

    def flax_to_torch(self, pure: dict, params_only: bool = False) -> dict:
        """The nested pure dict of the Flax model (or of its gradients: `params_only`) → torch names and
        layouts. Every paired array present is converted; absent ones are skipped."""
        out = {}
        for p in self.pairs:
            try:
                node = _get(pure, p.flax.path)
            except (KeyError, IndexError, TypeError):
                continue
            names = kinds.get(p.kind).flax_paths(stats=not params_only)
            part = {k: np.asarray(_pick(node, k)) for k in names if _pick(node, k) is not None}
            prefix = p.torch.name + "." if p.torch.name else ""
            conv = kinds.to_torch(p.kind, part, p.torch.module, p.flax.module, p.flatten, grads=params_only)
            out.update({prefix + k: v for k, v in conv.items()})
        for t, f in self.loose:
            try:
                v = np.asarray(_get(pure, f))
            except (KeyError, IndexError, TypeError):
                continue
            out[t] = np.asarray(self.loose_layouts[t][1](v)) if t in self.loose_layouts else v
        return out

    # -- loading into models (in place)
    def load_flax(self, model, sd: dict) -> None:
        """Write a torch state_dict (NumPy) into the Flax model, each array in the dtype and on the
        device of the one it replaces; shapes were checked when pairing."""
        pure = self.torch_to_flax(sd)
        state = nnx.state(model)
        ref = nnx.to_pure_dict(state)
        for path, v in _flat(pure):
            r = _get(ref, path)
            if tuple(np.shape(r)) != tuple(np.shape(v)):
                raise PortingError(f"flax `{flax_name(path)}`: converted shape {np.shape(v)} ≠ held {np.shape(r)}")
        nnx.replace_by_pure_dict(state, _cast_like(ref, pure))
        nnx.update(model, state)

    def load_torch(self, model: torch.nn.Module, pure: dict) -> None:
        """Write the Flax model's arrays (a nested pure dict) into the torch model, in its dtypes."""
        sd = self.flax_to_torch(pure)
        ref = model.state_dict()
        with torch.no_grad():
            for k, v in sd.items():
                if tuple(ref[k].shape) != tuple(np.shape(v)):
                    raise PortingError(f"torch `{k}`: converted shape {np.shape(v)} ≠ held {tuple(ref[k].shape)}")
                ref[k].copy_(torch.as_tensor(np.array(v)).to(ref[k].dtype))  # a copy: JAX's arrays are read-only


def _cast_like(ref: dict, pure: dict) -> dict:
    import jax
    out = {}
    for k, v in pure.items():
        if isinstance(v, dict):
            out[k] = _cast_like(ref[k], v)
        else:
            r = ref[k]
            dev = next(iter(r.devices())) if hasattr(r, "devices") else None
            out[k] = jax.device_put(np.asarray(v).astype(r.dtype), dev)
    return out


# ---------------------------------------------------------------- building a pairing
def _first_calls(calls) -> dict[str, int]:
    order = {}
    for c in calls:
        order.setdefault(c.leaf.name, len(order))
    return order


def _ordered(leaves: dict, order: dict, want) -> list[Leaf]:
    defined = list(leaves)
    chosen = [lf for lf in leaves.values() if want(lf)]
    return sorted(chosen, key=lambda lf: (order.get(lf.name, len(order) + defined.index(lf.name)),))


def _unknown(leaves: dict) -> None:
    for lf in leaves.values():
        if lf.kind is None:
            raise PortingError(
                f"{_where(lf)} has parameters but is of no kind automatic pairing knows "
                f"({', '.join(kinds.param_kind_names())} and parameterless layers){_parametrised(lf)}; register "
                f"a kind for it (parity.porting.register_kind), or pass weights= naming its parameters")


def _parametrised(lf: Leaf) -> str:
    """Why a parametrised torch layer (torch.nn.utils.parametrize) is of no kind: the arrays it holds."""
    if lf.side != "torch" or not torch.nn.utils.parametrize.is_parametrized(lf.module):
        return ""
    names = [n for n, _ in lf.module.named_parameters() if n.startswith("parametrizations.")]
    return (f"; it is parametrised (torch.nn.utils.parametrize): it holds {', '.join(names)}, from which "
            f"{', '.join(lf.module.parametrizations)} is computed at every call")


def _kinds_line(seq) -> str:
    return ", ".join(lf.kind for lf in seq) or "none"


def _loose(torch_model, flax_model, tl: dict, fl: dict, named_t=frozenset(), named_f=frozenset()
           ) -> list[tuple[str, tuple]]:
    """Parameters held directly by non-leaf modules (a positional embedding, say), paired by name,
    then by shape where that is unambiguous; identity conversion. Those the user's mapping names
    (`named_t`, `named_f`) are left out."""
    t_leaf_names = {n for n, lf in tl.items() if lf.has_params}
    tl_loose = {}
    for name, p in torch_model.named_parameters():  # a leaf's own sub-modules' parameters are its own
        inside = "" in t_leaf_names or any(name.startswith(n + ".") for n in t_leaf_names if n)
        if not inside and name not in named_t:
            tl_loose[name] = tuple(p.shape)
    f_leaf_paths = {lf.path for lf in fl.values() if lf.has_params}
    fl_loose = {}
    for path, v in _flat(nnx.to_pure_dict(nnx.state(flax_model, nnx.Param))):
        if not any(path[:k] in f_leaf_paths for k in range(len(path))) and path not in named_f:
            fl_loose[path] = tuple(np.shape(v))
    pairs, left_f = [], dict(fl_loose)
    by_name = {normalised_flax_name(flax_model, p): p for p in fl_loose}
    left_t = []
    for t, shape in tl_loose.items():
        f = by_name.get(t)
        if f is not None and f in left_f and left_f[f] == shape:
            pairs.append((t, f))
            del left_f[f]
        else:
            left_t.append(t)
    for t in left_t:
        same = [f for f, s in left_f.items() if s == tl_loose[t]]
        if len(same) != 1 or sum(tl_loose[u] == tl_loose[t] for u in left_t) != 1:
            left = ", ".join(f"{flax_name(f)} {s}" for f, s in left_f.items()) or "none"
            raise PortingError(f"torch parameter `{t}` {tl_loose[t]} lies outside any known layer and no "
                               f"Flax parameter of that name or of that shape alone pairs with it "
                               f"(Flax ones left: {left})")
        pairs.append((t, same[0]))
        del left_f[same[0]]
    if left_f:
        f, s = next(iter(left_f.items()))
        raise PortingError(f"Flax parameter `{flax_name(f)}` {s} lies outside any known layer and pairs "
                           f"with no torch parameter")
    return pairs


def _last_map(calls, leaf):
    """The last 4-D activation recorded before `leaf`'s first call, when that call's input is 2-D and
    no Linear ran in between: (that call, the Linear's call), else (None, None)."""
    first = next((i for i, c in enumerate(calls) if c.leaf is leaf), None)
    if first is None or calls[first].in_shape is None or len(calls[first].in_shape) != 2:
        return None, None
    for c in reversed(calls[:first]):
        if c.leaf.kind == "linear":
            return None, None
        if c.out_shape is not None and len(c.out_shape) == 4:
            return c, calls[first]
    return None, None


def _flatten_of(pair: Pair, t_calls) -> tuple | None:
    """(C, H·W, 1) when the torch Linear reads a flattened map of C channels: the last 4-D activation
    before it (no Linear between) has C channels and C·H·W = in_features. Whether the Flax side
    flattens in (H, W, C) order, and so needs the rows permuted, `flatten_evidence` decides."""
    t_map, _ = _last_map(t_calls, pair.torch)
    if t_map is None:
        return None
    c, n_in = t_map.out_shape[1], pair.torch.module.in_features
    if n_in % c or n_in == c:
        return None
    return (c, n_in // c, 1)


def flatten_evidence(pair: Pair, f_calls, channels: int) -> str | None:
    """The order in which the Flax model flattened the map its Linear reads, seen in one recorded
    pass: "hwc" or "chw"; None where something else ran in between (functional pooling, say) and
    the data cannot tell."""
    f_map, f_lin = _last_map(f_calls, pair.flax)
    if f_map is None or f_map.out is None or f_lin.inp is None:
        return None
    a, x = f_map.out, f_lin.inp
    if a.shape[0] != x.shape[0] or a.size != x.size:
        return None
    n = x.shape[0]
    nhwc = a.shape[3] == channels and a.shape[1] != channels
    nchw = a.shape[1] == channels and a.shape[3] != channels
    if np.array_equal(a.reshape(n, -1), x) and (nhwc or nchw):
        return "hwc" if nhwc else "chw"
    if nhwc and np.array_equal(a.transpose(0, 3, 1, 2).reshape(n, -1), x):
        return "chw"
    if nchw and np.array_equal(a.transpose(0, 2, 3, 1).reshape(n, -1), x):
        return "hwc"
    return None


def build(torch_model, flax_model, tl: dict, fl: dict, t_calls, f_calls, *, mapping=None,
          layout: str = "nhwc", converter: bool = False) -> Pairing:
    """Pair the leaf layers (`tl`, `fl` from trace.torch_leaves / flax_leaves) using one recorded
    pass of each model (`t_calls`, `f_calls`). The user's `mapping` ({torch layer or parameter:
    Flax path, or (path, layout)}) is honoured first for what it names; the other layers pair
    automatically. With a `converter` (a weights callable), layers of no known kind are left to it
    instead of refused."""
    notes: list[str] = []
    t_order, f_order = _first_calls(t_calls), _first_calls(f_calls)
    never = [lf.label for lf in tl.values() if kinds.is_param_kind(lf.kind) and lf.name not in t_order]
    if never:
        notes.append(f"torch layers the pass never called (paired after the others, in definition order): "
                     f"{', '.join(never)}")
    named, named_loose, layouts = ([], [], {}) if mapping is None else _from_mapping(
        torch_model, flax_model, tl, fl, mapping)
    covered_t, covered_f = _covered(torch_model, flax_model, tl, fl, named, named_loose)
    rest_t = {n: lf for n, lf in tl.items() if n not in covered_t}
    rest_f = {n: lf for n, lf in fl.items() if lf.path not in covered_f}
    if converter:
        left = [lf.label for lf in list(rest_t.values()) + list(rest_f.values()) if lf.kind is None]
        if left:
            notes.append(f"layers of no known kind, converted by the weights callable and compared through the "
                         f"model's outputs only: {', '.join(left)}")
        rest_t = {n: lf for n, lf in rest_t.items() if lf.kind is not None}
        rest_f = {n: lf for n, lf in rest_f.items() if lf.kind is not None}
    _unknown(rest_t)
    _unknown(rest_f)
    names = aliases(torch_model)
    auto, strategy = _auto_pairs(flax_model, rest_t, rest_f, t_order, f_order, names)
    loose = named_loose + _loose(torch_model, flax_model, tl, fl, {t for t, _ in named_loose},
                                 {f for _, f in named_loose})
    if mapping is not None:
        strategy = "by the given mapping" + (f", the rest {strategy}" if auto else "")
    pairs = sorted(named + auto, key=lambda p: t_order.get(p.torch.name, len(t_order)))
    for i, p in enumerate(pairs):
        p.index = i
    for p in pairs:  # the layout's default for now; compare confirms it in the data
        if p.kind == "linear":
            p.flatten_candidate = _flatten_of(p, t_calls)
            p.flatten = p.flatten_candidate if layout == "nhwc" else None
    _check_shapes(pairs)
    free = _free_pairs(flax_model, tl, fl, t_order, f_order, "by name" if strategy.endswith("by name") else strategy,
                       notes, names)
    return Pairing(pairs, free, loose, strategy, notes, tl, fl, layouts)


def aliases(torch_model) -> dict[str, list[str]]:
    """torch's name of each module → every path it is reachable at: one module held at several paths
    (tied weights, parity/port/ties.py) is one layer, which NNX, holding it shared, may name by
    another of those paths than torch's `named_modules()` does."""
    paths: dict[int, list[str]] = {}
    for name, m in torch_model.named_modules(remove_duplicate=False):
        paths.setdefault(id(m), []).append(name)
    return {ps[0]: ps for ps in paths.values()}


def _by_name(f_names: dict, t: Leaf, names: dict):
    """The Flax leaf named as torch leaf `t` is at one of its paths, or None."""
    return next((f_names[n] for n in names.get(t.name, [t.name]) if n in f_names), None)


def _auto_pairs(flax_model, tl: dict, fl: dict, t_order, f_order, names=None) -> tuple[list[Pair], str]:
    """The layers with parameters paired by name (by any of a torch layer's paths, `names` from
    `aliases`) when every name agrees, else in execution order."""
    names = names or {}
    T = _ordered(tl, t_order, lambda lf: kinds.is_param_kind(lf.kind))
    F = _ordered(fl, f_order, lambda lf: kinds.is_param_kind(lf.kind))
    f_names = {normalised_flax_name(flax_model, lf.path): lf for lf in F}
    named = [_by_name(f_names, t, names) for t in T]
    if len(T) == len(F) and all(f is not None and f.kind == t.kind for t, f in zip(T, named)):
        return [Pair(i, t.kind, t, f) for i, (t, f) in enumerate(zip(T, named))], "by name"
    for i in range(max(len(T), len(F))):
        t, f = (T[i] if i < len(T) else None), (F[i] if i < len(F) else None)
        if t is None or f is None or t.kind != f.kind:
            first = (f"torch `{t.label}` ({t.kind}, {t.cls}, {t.defined})" if t else "no torch layer") + \
                    " with " + (f"flax `{f.label}` ({f.kind}, {f.cls}, {f.defined})" if f else "no Flax layer")
            raise PortingError(
                f"cannot pair the layers: layer {i + 1} in execution order pairs {first}; torch runs "
                f"{len(T)} layers [{_kinds_line(T)}], Flax {len(F)} [{_kinds_line(F)}]; pass "
                f"weights={{torch_name: flax_path, ...}} to pair them yourself")
    return [Pair(i, t.kind, t, f) for i, (t, f) in enumerate(zip(T, F))], "by execution order"


def _covered(torch_model, flax_model, tl, fl, named, named_loose) -> tuple[set, set]:
    """Leaves the mapping takes care of: the layers it pairs, and those all of whose parameters it names."""
    t_names = {t for t, _ in named_loose}
    f_paths = {f for _, f in named_loose}
    covered_t = {p.torch.name for p in named}
    covered_f = {p.flax.path for p in named}
    for name, lf in tl.items():
        params = [f"{name}.{k}" if name else k for k, _ in lf.module.named_parameters()]
        if params and all(q in t_names for q in params):
            covered_t.add(name)
    for lf in fl.values():
        params = [lf.path + path for path, _ in _flat(nnx.to_pure_dict(nnx.state(lf.module, nnx.Param)))]
        if params and all(tuple(q) in f_paths for q in params):
            covered_f.add(lf.path)
    return covered_t, covered_f


class _Layout(tuple):
    """(to_flax, to_torch) for one loose parameter, with the name the user gave it."""
    name = "custom"


def _same(a):
    return a


_LAYOUTS = {
    "same": (_same, _same),
    "T": (lambda a: np.ascontiguousarray(a.T), lambda a: np.ascontiguousarray(a.T)),
    "conv": (lambda a: np.ascontiguousarray(a.transpose(*range(2, a.ndim), 1, 0)),
             lambda a: np.ascontiguousarray(a.transpose(a.ndim - 1, a.ndim - 2, *range(a.ndim - 2)))),
}


def _layout(t_name: str, how) -> _Layout:
    if isinstance(how, str):
        if how not in _LAYOUTS:
            raise PortingError(f"weights mapping: `{t_name}`: layout {how!r} is none of {', '.join(_LAYOUTS)} "
                               f"or a (to_flax, to_torch) pair of functions")
        out = _Layout(_LAYOUTS[how])
        out.name = how
        return out
    if isinstance(how, (tuple, list)) and len(how) == 2 and all(callable(f) for f in how):
        return _Layout(how)
    raise PortingError(f"weights mapping: `{t_name}`: a layout is one of {', '.join(_LAYOUTS)} or a "
                       f"(to_flax, to_torch) pair of functions; got {type(how).__name__}")


def _split_target(target):
    """A mapping value: a Flax path ("a.0.b" or a tuple), or (path, layout) where layout is a name of
    _LAYOUTS or a (to_flax, to_torch) pair of functions."""
    if isinstance(target, (tuple, list)) and len(target) == 2:
        how = target[1]
        # a layout name, or a string after a dotted path (a misspelt layout, refused by _layout)
        named = isinstance(how, str) and (how in _LAYOUTS or (isinstance(target[0], str) and "." in target[0]))
        funcs = isinstance(how, (tuple, list)) and len(how) == 2 and all(callable(f) for f in how)
        if named or funcs:
            return target[0], how
    return target, None


def _from_mapping(torch_model, flax_model, tl, fl, mapping):
    """The pairs and loose parameters the user's mapping names, checked one by one."""
    if not isinstance(mapping, dict) or not mapping:
        raise PortingError("weights mapping must be a non-empty dict {torch_name: flax_path or (flax_path, layout)}")
    flax_params = nnx.to_pure_dict(nnx.state(flax_model, nnx.Param))
    t_params = dict(torch_model.named_parameters())
    by_path = {lf.path: lf for lf in fl.values()}
    pairs, loose, layouts = [], [], {}
    for t_name, target in mapping.items():
        target, how = _split_target(target)
        f_path = tuple(int(k) if k.isdigit() else k for k in target.split(".")) if isinstance(target, str) \
            else tuple(target)
        if t_name in tl and tl[t_name].has_params and how is None:
            t, f = tl[t_name], by_path.get(f_path)
            if f is None:
                raise PortingError(f"weights mapping: `{t_name}` → `{flax_name(f_path)}`: the Flax model has no "
                                   f"layer at that path (its layers: {', '.join(lf.label for lf in fl.values())})")
            if t.kind is None or f.kind != t.kind:
                raise PortingError(f"weights mapping: torch `{t_name}` is a {t.kind or 'layer of no known kind'} "
                                   f"({t.cls}) but flax `{f.label}` a {f.kind or 'layer of no known kind'} ({f.cls}); "
                                   f"map their parameters one by one, with layouts, instead")
            pairs.append(Pair(0, t.kind, t, f))
        elif t_name in t_params:
            try:
                _get(flax_params, f_path)
            except (KeyError, IndexError, TypeError):
                raise PortingError(f"weights mapping: `{t_name}` → `{flax_name(f_path)}`: no Flax parameter "
                                   f"at that path") from None
            loose.append((t_name, f_path))
            if how is not None:
                layouts[t_name] = _layout(t_name, how)
        else:
            raise PortingError(f"weights mapping: torch model has no layer or parameter `{t_name}`")
    return pairs, loose, layouts


def _free_pairs(flax_model, tl, fl, t_order, f_order, strategy, notes, names=None) -> list[Pair]:
    """Parameterless layers (dropout, pooling, flatten, others by class name), paired per kind in
    execution order where both sides call as many of that kind; by name when the layers were."""
    def free(leaves, order):
        return _ordered(leaves, order, lambda lf: not kinds.is_param_kind(lf.kind) and lf.kind is not None
                        and lf.name in order)
    T, F = free(tl, t_order), free(fl, f_order)
    out = []
    if strategy == "by name":
        f_names = {normalised_flax_name(flax_model, lf.path): lf for lf in F}
        for t in T:
            f = _by_name(f_names, t, names or {})
            if f is not None and f.kind == t.kind:
                out.append(Pair(len(out), t.kind, t, f))
        return out
    for kind in dict.fromkeys(lf.kind for lf in T + F):
        ts, fs = [t for t in T if t.kind == kind], [f for f in F if f.kind == kind]
        if len(ts) == len(fs):
            out += [Pair(0, kind, t, f) for t, f in zip(ts, fs)]
        elif ts and fs:
            notes.append(f"{kind} layers not compared one by one: torch calls {len(ts)}, Flax {len(fs)}")
    out.sort(key=lambda p: t_order[p.torch.name])
    for i, p in enumerate(out):
        p.index = i
    return out


def _check_shapes(pairs: list[Pair]) -> None:
    for p in pairs:
        conv = kinds.to_flax(p.kind, torch_state(p.torch), p.torch.module, p.flax.module, p.flatten)
        held = kinds.flax_arrays(p.kind, p.flax.module)
        for k, v in conv.items():
            if k not in held:
                if k == "num_batches_tracked":
                    continue  # a counter nnx.BatchNorm does not keep
                raise PortingError(f"cannot convert {p.describe()}: torch has `{_torch_name(p.kind, k)}`, "
                                   f"the Flax layer holds no `{k}`")
            if tuple(np.shape(v)) != tuple(held[k].shape):
                raise PortingError(f"cannot convert {p.describe()}: `{k}` converts to shape {tuple(np.shape(v))}, "
                                   f"the Flax layer holds {tuple(held[k].shape)}")
        for k in held:
            if k not in conv:
                raise PortingError(f"cannot convert {p.describe()}: the Flax layer holds `{k}`, torch has "
                                   f"no `{_torch_name(p.kind, k)}`")


def _torch_name(kind: str, flax_key: str) -> str:
    """The torch name of the array a Flax path holds, from the kind's record."""
    for a in kinds.get(kind).arrays:
        if a.flax == flax_key:
            return a.torch
    return flax_key
