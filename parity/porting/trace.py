"""Recording what every leaf layer computes, on both sides, without editing either model.

torch: forward hooks on each leaf module (removed afterwards).

Flax NNX: for one run, the `__call__` of each leaf layer's class is replaced by a wrapper, and the
instances of the model being run are bound to a handler by identity; other instances of the same
classes pass straight through, and the classes get their own `__call__` back afterwards. Why this
and not the alternatives: `Module.sow` needs the user to edit the model; `nnx.capture(...,
method_outputs=...)` patches classes the same way but keeps only each module's outputs by path (not
the order of calls, their inputs or call sites), skips `__call__`s a class inherits and stores them
on the modules; a per-instance patch cannot work, because Python looks `__call__` up on the type.
The wrapper works for any nnx.Module tree (stock layers, the project's twins, users' own classes),
eagerly or under `jax.jit` (where modules merged inside the trace are bound by path), and is how
training-mode dropout masks are injected (the handler returns x·mask/(1−p) instead of calling).
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import os
import re
import sys
from dataclasses import dataclass, field

import flax
import jax
import numpy as np
import torch
from flax import nnx

from parity.porting import kinds

_LIB_DIRS = tuple(os.path.dirname(m.__file__) + os.sep for m in (torch, flax, jax, np))
_SKIP_DIRS = _LIB_DIRS + (os.path.dirname(__file__) + os.sep,)


# ---------------------------------------------------------------- where things are in the source
def rel(path: str) -> str:
    """A source path as the user knows it: after site-packages/ for installed libraries (also inside a
    virtual environment under the working directory), relative to the working directory when inside
    it, absolute otherwise."""
    if not path:
        return "?"
    path = os.path.abspath(path)
    if "site-packages" + os.sep in path:
        return path.split("site-packages" + os.sep, 1)[1]
    cwd = os.getcwd() + os.sep
    if path.startswith(cwd):
        return path[len(cwd):]
    return path


@functools.lru_cache(maxsize=512)
def class_source(cls) -> str:
    """'file:line' of a class definition, or '?' where Python cannot tell (cached: inspect parses
    the class's whole file to find it)."""
    try:
        return f"{rel(inspect.getsourcefile(cls))}:{inspect.getsourcelines(cls)[1]}"
    except (OSError, TypeError):
        return "?"


def _is_library(cls) -> bool:
    try:
        return (inspect.getsourcefile(cls) or "").startswith(_LIB_DIRS)
    except TypeError:
        return True


def _child(parent, key):
    if isinstance(key, int) or (isinstance(key, str) and key.isdigit()):
        try:
            return parent[int(key)]
        except (TypeError, KeyError, IndexError):
            pass
    return getattr(parent, str(key))


def defined_at(root, path: tuple) -> str:
    """'file:line' of the statement that created the layer at `path` (`self.conv1 = ...` in the
    __init__ of the first user class above it); the model class's definition when none is found."""
    for i in range(len(path) - 1, -1, -1):
        attr = path[i]
        if isinstance(attr, int) or str(attr).isdigit():
            continue
        try:
            parent = functools.reduce(_child, path[:i], root)
        except (AttributeError, IndexError, KeyError, TypeError):
            break
        pattern = re.compile(rf"\bself\.{re.escape(str(attr))}\b[^=\n]*=(?!=)")
        for cls in type(parent).__mro__:
            init = cls.__dict__.get("__init__")
            if init is None or _is_library(cls):
                continue
            try:
                lines, start = inspect.getsourcelines(init)
                file = rel(inspect.getsourcefile(init))
            except (OSError, TypeError):
                continue
            for j, line in enumerate(lines):
                if pattern.search(line):
                    return f"{file}:{start + j}"
    return class_source(type(root))


def call_site() -> str:
    """'file:line' of the nearest caller outside torch, Flax, JAX, NumPy and this package."""
    f = sys._getframe(1)
    while f is not None and f.f_code.co_filename.startswith(_SKIP_DIRS):
        f = f.f_back
    return f"{rel(f.f_code.co_filename)}:{f.f_lineno}" if f is not None else "?"


# ---------------------------------------------------------------- the leaf layers of a model
@dataclass(eq=False)
class Leaf:
    """One leaf layer of one side. `kind` is a kind of kinds.py, "other:<class>" for parameterless
    modules of no known kind, or None for a module with parameters of a kind pairing does not know."""

    side: str
    name: str  # dotted: torch's module name, or the Flax path joined by dots ("" is the model itself)
    path: tuple
    module: object = field(repr=False)
    kind: str | None
    has_params: bool
    cls: str = ""
    source: str = ""  # the class's definition
    defined: str = ""  # the statement that created it

    @property
    def label(self) -> str:
        return self.name or "(model)"


def torch_leaves(model: torch.nn.Module) -> dict[str, Leaf]:
    """Leaf modules of a torch model in definition order; a module of a known kind is a leaf even
    if it has children (they are its own business)."""
    out, inside = {}, []
    for name, m in model.named_modules():
        if any(name.startswith(p + ".") or p == "" for p in inside):
            continue
        kind = kinds.torch_kind(m)
        # a parametrised layer (torch.nn.utils.parametrize) is one layer: its parametrisations are its own
        whole = kind is not None or (torch.nn.utils.parametrize.is_parametrized(m)
                                     and [n for n, _ in m.named_children()] == ["parametrizations"])
        has_children = next(m.children(), None) is not None
        if not whole and has_children:
            continue
        has_params = next(m.parameters(), None) is not None
        if kind is None and not has_params:
            kind = kinds.other_kind(m)
        if whole or kind is not None:
            inside.append(name)
        path = tuple(name.split(".")) if name else ()
        out[name] = Leaf("torch", name, path, m, kind, has_params, type(m).__name__, class_source(type(m)),
                         defined_at(model, path))
    return out


def flax_name(path: tuple) -> str:
    return ".".join(str(p) for p in path)


def flax_leaves(model: nnx.Module) -> dict[str, Leaf]:
    """Leaf modules of an NNX model (nnx.iter_modules order, which sorts attribute names)."""
    mods = list(nnx.iter_modules(model))
    paths = [p for p, _ in mods]
    out, inside = {}, []
    for path, m in sorted(mods, key=lambda pm: len(pm[0])):
        if any(path[:len(p)] == p for p in inside):
            continue
        kind = kinds.flax_kind(m)
        has_children = any(len(q) > len(path) and q[:len(path)] == path for q in paths)
        if kind is None and has_children:
            continue
        has_params = bool(jax.tree.leaves(nnx.state(m, nnx.Param)))
        if kind is None and not has_params:
            kind = kinds.other_kind(m)
        if kind is not None:
            inside.append(path)
        out[flax_name(path)] = Leaf("flax", flax_name(path), path, m, kind, has_params, type(m).__name__,
                                    class_source(type(m)), defined_at(model, path))
    order = {p: i for i, p in enumerate(paths)}
    return dict(sorted(out.items(), key=lambda kv: order[kv[1].path]))


# ---------------------------------------------------------------- one recorded call
@dataclass(eq=False)
class Call:
    """One call of a leaf layer: its first positional argument and its output (NumPy, when arrays;
    only their shapes when the pass was traced abstractly)."""

    leaf: Leaf
    index: int  # the k-th call of this layer in the run (0-based)
    inp: np.ndarray | None
    out: np.ndarray | None
    called_at: str = "?"
    in_shape: tuple | None = None
    out_shape: tuple | None = None

    def __post_init__(self):
        if self.in_shape is None and self.inp is not None:
            self.in_shape = tuple(self.inp.shape)
        if self.out_shape is None and self.out is not None:
            self.out_shape = tuple(self.out.shape)


def recorded(side: str, leaf, module, x, out, kwargs=None) -> tuple:
    """What a call of `leaf` is compared by: its first positional argument and its output; a kind
    whose layers take several inputs or return a tuple (attention, recurrent layers) says otherwise in
    `extra["torch_record"]` / `extra["flax_record"]`: (module, x, out, kwargs) -> (x, out)."""
    try:
        rule = kinds.get(leaf.kind).extra.get(side + "_record") if leaf.kind else None
    except KeyError:  # "other:<class>" kinds
        rule = None
    return rule(module, x, out, kwargs or {}) if rule is not None else (x, out)


def _np(x):
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy().copy()
    if isinstance(x, jax.Array):
        return np.asarray(x)
    if isinstance(x, np.ndarray):
        return x.copy()
    return None


# ---------------------------------------------------------------- torch: forward hooks
@contextlib.contextmanager
def torch_tracer(leaves, calls: list | None, inject=None):
    """Record each leaf call into `calls` (None: record nothing); `inject(leaf, index, x, out)` may
    return a replacement output (training-mode dropout masks)."""
    counts: dict[str, int] = {}
    handles = []

    def hook_for(leaf):
        def hook(module, args, output):
            k = counts.get(leaf.name, 0)
            counts[leaf.name] = k + 1
            x = args[0] if args else None
            if inject is not None:
                new = inject(leaf, k, x, output)
                if new is not None:
                    output = new
            if calls is not None:
                rx, rout = recorded("torch", leaf, module, x, output)
                calls.append(Call(leaf, k, _np(rx), _np(rout), call_site()))
            return output
        return hook

    try:
        for leaf in leaves:
            handles.append(leaf.module.register_forward_hook(hook_for(leaf)))
        yield counts
    finally:
        for h in handles:
            h.remove()


# ---------------------------------------------------------------- Flax: class-level __call__ wrappers
_BOUND: dict[int, tuple] = {}  # id(module instance) → (handler, leaf)
_ACTIVE: set[int] = set()


def _wrapper(orig):
    @functools.wraps(orig)
    def __call__(self, *args, **kwargs):
        entry = _BOUND.get(id(self))
        if entry is None or id(self) in _ACTIVE:  # not ours, or a re-entrant (super()) call
            return orig(self, *args, **kwargs)
        handler, leaf = entry
        _ACTIVE.add(id(self))
        try:
            return handler(leaf, self, functools.partial(orig, self), args, kwargs)
        finally:
            _ACTIVE.discard(id(self))
    __call__._parity_original = orig
    return __call__


@contextlib.contextmanager
def patched(classes):
    """Give each class a wrapping `__call__` for the duration of the block, then its own back."""
    classes = [c for c in dict.fromkeys(classes)]
    originals = {c: getattr(c, "__call__") for c in classes}  # resolved before any class is patched
    own = {c: c.__dict__.get("__call__") for c in classes}
    try:
        for c in classes:
            setattr(c, "__call__", _wrapper(originals[c]))
        yield
    finally:
        for c in classes:
            if own[c] is None:
                delattr(c, "__call__")
            else:
                setattr(c, "__call__", own[c])


@contextlib.contextmanager
def bind(model, leaves: dict[str, Leaf], handler):
    """Route calls of `model`'s leaf layers (found by path, so a model merged inside a trace works
    too) to handler(leaf, module, call, args, kwargs); the classes must be `patched`."""
    ids = []
    try:
        for path, m in nnx.iter_modules(model):
            leaf = leaves.get(flax_name(path))
            if leaf is not None:
                _BOUND[id(m)] = (handler, leaf)
                ids.append(id(m))
        yield
    finally:
        for i in ids:
            _BOUND.pop(i, None)


def flax_recorder(calls: list | None, inject=None):
    """A handler recording each call into `calls`; `inject(leaf, index, module, x)` may return a
    replacement output (then the layer itself is not called)."""
    counts: dict[str, int] = {}

    def handler(leaf, module, call, args, kwargs):
        k = counts.get(leaf.name, 0)
        counts[leaf.name] = k + 1
        x = args[0] if args else None
        out = inject(leaf, k, module, x, kwargs) if inject is not None else None
        if out is None:
            out = call(*args, **kwargs)
        if calls is not None:
            rx, rout = recorded("flax", leaf, module, x, out, kwargs)
            calls.append(Call(leaf, k, _np(rx), _np(rout), call_site()))
        return out
    handler.counts = counts
    return handler
