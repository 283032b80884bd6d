"""Tracing a torch model for `parity port`: one graph per module instance, each module's own forward
with its sub-modules kept whole (calls to them are graph nodes), so that every torch class becomes one
Flax class whose `__call__` is written from its graph.

The tracer is torch.fx's, run *concretely*: every node also carries the real value it computes on the
example inputs (`node.meta["val"]`), so shapes and dtypes are known, and Python code that needs a
real number (`math.sqrt(head_dim)`, `if x.shape[1] > 1:`, `len(x)`) gets the example's value, which
the port then holds as a constant (noted in `Traced.specialised`). Where fx cannot trace a module
at all (Hugging Face models mostly: keyword-only control flow, data-dependent Python), the model is
traced with torch.export instead (`export_graphs`): per-submodule aten graphs, shapes specialised.
"""
from __future__ import annotations

import inspect
import re
import traceback
from dataclasses import dataclass, field

import torch
import torch.fx as fx
from torch import nn
from torch.fx.node import map_arg

from parity.porting import kinds

# parameterless torch.nn layers a port writes as functions (parity/port/ops.py has their records)
PARAMETERLESS = (nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Softmax, nn.LogSoftmax, nn.LeakyReLU,
                 nn.ELU, nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.Softplus, nn.Identity, nn.Flatten, nn.Dropout,
                 nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d,
                 nn.AdaptiveAvgPool2d, nn.Upsample)


def kind_of(m: nn.Module):
    """The layer kind of a torch module (parity.porting.kinds), or None."""
    return kinds._match(m, "torch")


def is_layer(m: nn.Module) -> bool:
    """A module a port keeps whole: a layer of a known kind, or a parameterless torch.nn layer."""
    return kind_of(m) is not None or isinstance(m, PARAMETERLESS)


def source_of(cls) -> str:
    try:
        path = inspect.getsourcefile(cls)
        line = inspect.getsourcelines(cls)[1]
    except (OSError, TypeError):
        return "?"
    from parity.porting.trace import rel
    return f"{rel(path)}:{line}"


def where_of(node: fx.Node, fallback: str) -> str:
    """'file:line' of the torch code that made `node` (the last frame of its stack trace)."""
    st = node.stack_trace or ""
    found = [f for f in re.findall(r'File "([^"]+)", line (\d+)', st)
             if "/torch/" not in f[0] and "/parity/port/" not in f[0]]
    if found:
        from parity.porting.trace import rel
        path, line = found[-1]
        return f"{rel(path)}:{line}"
    return fallback


class _ConcreteProxy(fx.Proxy):
    """A proxy that knows its value on the example inputs, for what Python must have as a number."""

    def _val(self):
        return self.node.meta.get("val")

    def __float__(self):
        self.tracer.note(self.node, "float")
        return float(self._val())

    def __int__(self):
        self.tracer.note(self.node, "int")
        return int(self._val())

    def __len__(self):
        self.tracer.note(self.node, "len")
        return len(self._val())


def _clone(v):
    if isinstance(v, torch.Tensor):
        return v.clone()
    if isinstance(v, (list, tuple)) and not hasattr(v, "_fields"):
        return type(v)(_clone(x) for x in v)
    return v


_FACTORIES = ("ones", "zeros", "full", "empty", "arange", "eye", "tensor", "rand", "randn")


def _has_proxy(x) -> bool:
    if isinstance(x, fx.Proxy):
        return True
    if isinstance(x, (list, tuple)):
        return any(_has_proxy(v) for v in x)
    if isinstance(x, dict):
        return any(_has_proxy(v) for v in x.values())
    return False


class ConcreteTracer(fx.Tracer):
    """torch.fx tracing of one module's own forward: every sub-module is a leaf (one class per torch
    class is written, each from its own graph), layers of a known kind and parameterless torch.nn layers
    included; each node carries its value on the example inputs."""

    def __init__(self, inputs: list):
        super().__init__()
        self.record_stack_traces = True
        self._inputs = list(inputs)
        self._root = None
        self._computing = False
        self._real_names: set = set()
        self.specialised: list[str] = []

    def is_leaf_module(self, m, qualname):
        return m is not self._root

    def call_module(self, m, forward, args, kwargs):
        if self._computing or not _has_proxy((args, kwargs)):  # a real computation (a node's value)
            return forward(*args, **kwargs)
        return super().call_module(m, forward, args, kwargs)

    def getattr(self, attr, attr_val, parameter_proxy_cache):
        if self._computing:
            return attr_val
        return super().getattr(attr, attr_val, parameter_proxy_cache)

    def note(self, node, how):
        self.specialised.append(f"{node.name} ({how}: the example's value is used)")

    def proxy(self, node):
        return _ConcreteProxy(node, self)

    def to_bool(self, obj):
        v = obj.node.meta.get("val")
        self.note(obj.node, "bool")
        return bool(v)

    def iter(self, obj):
        v = obj.node.meta.get("val")
        self.note(obj.node, "iter")
        return iter([obj[i] for i in range(len(v))])

    def keys(self, obj):
        return obj.node.meta.get("val").keys()

    def create_proxy(self, kind, target, args, kwargs, name=None, type_expr=None, proxy_factory_fn=None):
        p = super().create_proxy(kind, target, args, kwargs, name, type_expr, proxy_factory_fn)
        node = p.node
        val = None
        self._computing = True
        try:
            a = map_arg(node.args, lambda n: _clone(n.meta.get("val")))
            kw = map_arg(node.kwargs, lambda n: _clone(n.meta.get("val")))
            if kind == "placeholder" and str(target).startswith("*"):
                val, self._inputs = tuple(self._inputs), []
            elif kind == "placeholder" and target in self._real_names:
                val = self._inputs.pop(0) if self._inputs else None
            elif kind == "placeholder":  # an argument the call left to its default: fx specialises it
                node.meta["concrete"] = True
                val = node.args[0] if node.args else None
            elif kind == "get_attr":
                val = self._root
                for step in target.split("."):
                    val = getattr(val, step)
            elif kind == "call_function":
                val = target(*a, **kw)
            elif kind == "call_method":
                val = getattr(a[0], target)(*a[1:], **kw)
            elif kind == "call_module":
                val = self._root.get_submodule(target)(*a, **kw)
        except Exception as e:  # noqa: BLE001 — the emitter reports nodes without a value
            node.meta["val_error"] = f"{type(e).__name__}: {e}"
        finally:
            self._computing = False
        node.meta["val"] = val
        return p

    def trace_module(self, module: nn.Module, n_args: int, kw_names=()) -> fx.Graph:
        self._root = module
        sig = inspect.signature(module.forward)
        params = list(sig.parameters.values())
        concrete = {}
        given = n_args
        self._real_names = {p.name for p in params[:n_args] if p.kind != p.VAR_POSITIONAL} | set(kw_names)
        self._real_names |= {p.name for p in params if p.kind == p.VAR_POSITIONAL}
        for i, prm in enumerate(params):
            if prm.kind in (prm.VAR_POSITIONAL, prm.VAR_KEYWORD):
                continue
            if i >= given and prm.name not in kw_names:
                concrete[prm.name] = prm.default if prm.default is not prm.empty else None
        saved = {name: getattr(torch, name) for name in _FACTORIES}
        try:
            for name, fn in saved.items():
                setattr(torch, name, self._factory(fn))
            return self.trace(module, concrete_args=concrete or None)
        finally:
            for name, fn in saved.items():
                setattr(torch, name, fn)

    def _factory(self, fn):
        """torch.ones(t, t) with t a proxy: torch's argument parser refuses proxies as sizes."""
        def wrapper(*args, **kwargs):
            if _has_proxy((args, kwargs)) and not self._computing:
                return self.create_proxy("call_function", fn, args, kwargs)
            return fn(*args, **kwargs)
        return wrapper


@dataclass
class Traced:
    """One module instance: its graph (None where tracing failed) and how it was traced."""

    module: nn.Module
    path: str  # dotted name in the root ('' for the root)
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    graph: fx.Graph | None = None
    tracer: str = "fx"
    error: str | None = None
    specialised: list = field(default_factory=list)
    where: str = "?"


def record_calls(model: nn.Module, inputs: tuple) -> dict:
    """{module: (args, kwargs)} of each module's first call in one forward pass on `inputs`."""
    seen: dict = {}
    handles = []

    def hook(m, args, kwargs):
        if m not in seen:
            seen[m] = (_clone(tuple(args)), {k: _clone(v) for k, v in kwargs.items()})

    for m in model.modules():
        handles.append(m.register_forward_pre_hook(hook, with_kwargs=True))
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        for h in handles:
            h.remove()
    return seen


def trace_instance(module: nn.Module, path: str, args: tuple, kwargs: dict) -> Traced:
    """fx-trace one module's own forward on its recorded call."""
    t = Traced(module, path, args, kwargs, where=source_of(type(module)))
    order = list(inspect.signature(module.forward).parameters)
    kwargs = {k: kwargs[k] for k in sorted(kwargs, key=lambda k: order.index(k) if k in order else len(order))}
    t.kwargs = kwargs
    tracer = ConcreteTracer(list(_clone(args)) + [_clone(v) for v in kwargs.values()])
    try:
        with torch.no_grad():
            t.graph = tracer.trace_module(module, len(args), tuple(kwargs))
        t.specialised = tracer.specialised
    except Exception as e:  # noqa: BLE001 — reported as a problem, or handed to torch.export
        tb = traceback.extract_tb(e.__traceback__)
        frames = [f for f in tb if "torch/fx" not in f.filename and "parity/port" not in f.filename]
        if frames:
            from parity.porting.trace import rel
            t.where = f"{rel(frames[-1].filename)}:{frames[-1].lineno}"
        t.error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return t


def trace_model(model: nn.Module, inputs: tuple) -> dict:
    """{dotted path: Traced} for the root and every module that is not a layer, in definition order;
    instances never called in the example pass are left out."""
    calls = record_calls(model, inputs)
    out: dict[str, Traced] = {}

    def visit(m, path):
        if path and is_layer(m):
            return
        if isinstance(m, (nn.Sequential, nn.ModuleList, nn.ModuleDict)):
            for name, child in m.named_children():
                visit(child, f"{path}.{name}" if path else name)
            return
        if m in calls:
            args, kw = calls[m]
            out[path] = trace_instance(m, path, args, kw)
        for name, child in m.named_children():
            visit(child, f"{path}.{name}" if path else name)

    visit(model, "")
    return out


def export_graphs(model: nn.Module, inputs: tuple):
    """torch.export of the whole model, unflattened into per-submodule graphs (aten ops, shapes
    specialised to the example's): the fallback where fx fails."""
    ep = torch.export.export(model, tuple(inputs), strict=False)
    return ep, torch.export.unflatten(ep)
