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

from parity.port import parametrized as P
from parity.port import subclass
from parity.porting import kinds

# parameterless torch.nn layers a port writes as functions (parity/port/ops.py has their records)
PARAMETERLESS = (nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Softmax, nn.LogSoftmax, nn.LeakyReLU,
                 nn.ELU, nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.Softplus, nn.Identity, nn.Flatten, nn.Dropout,
                 nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d,
                 nn.AdaptiveAvgPool2d, nn.Upsample)


def kind_of(m: nn.Module):
    """The layer kind of a torch module (parity.porting.kinds), or None; None too for an instance of a
    kind's class whose own forward computes something else (parity/port/subclass.py): it is traced."""
    if m in subclass.TRACED:
        return None
    return kinds._match(m, "torch")


def is_layer(m: nn.Module) -> bool:
    """A module a port keeps whole: a layer of a known kind, or a parameterless torch.nn layer."""
    return kind_of(m) is not None or isinstance(m, PARAMETERLESS)


def source_of(cls) -> str:
    cls = P.defining_class(cls)
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

    def __index__(self):  # a real int where Python needs one (slicing a real sequence): specialised
        self.tracer.note(self.node, "index")
        return int(self._val())

    def __len__(self):
        if not isinstance(self._val(), (torch.Size, tuple, list)):
            self.tracer.note(self.node, "len")
        return len(self._val())


def _clone(v):
    if isinstance(v, torch.Tensor):
        return v.clone()
    if isinstance(v, (list, tuple)) and not hasattr(v, "_fields"):
        return type(v)(_clone(x) for x in v)
    return v


_FACTORIES = ("ones", "zeros", "full", "empty", "arange", "eye", "tensor", "rand", "randn", "finfo", "iinfo")


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
        self.proxy_buffer_attributes = True  # buffers are graph values too (position ids, masks)
        self._inputs = list(inputs)
        self._root = None
        self._computing = False
        self._real_names: set = set()
        self.specialised: list[str] = []

    def is_leaf_module(self, m, qualname):
        return m is not self._root

    def call_module(self, m, forward, args, kwargs):
        if not self._computing and P.inside_parametrizations(self._root, m):  # the weight it computes
            return forward(*args, **kwargs)
        if self._computing or not _has_proxy((args, kwargs)):  # a real computation (a node's value)
            return forward(*args, **kwargs)
        try:
            self.path_of_module(m)
        except NameError:  # a module outside the tree (a kernel wrapper, say): its ops are traced inline
            return forward(*args, **kwargs)
        return super().call_module(m, forward, args, kwargs)

    def getattr(self, attr, attr_val, parameter_proxy_cache):
        if self._computing:
            return attr_val
        return super().getattr(attr, attr_val, parameter_proxy_cache)

    def create_arg(self, a):
        out = super().create_arg(a)
        if isinstance(a, torch.Tensor) and isinstance(out, fx.Node) and "val" not in out.meta:
            out.meta["val"] = a  # a tensor constant fx made an attribute (get_attr), outside create_proxy
        return out

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
        if not isinstance(v, (torch.Size, tuple, list)):
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
            elif kind == "call_method" and target == "to_tuple" and isinstance(a[0], tuple):
                # transformers' `if not isinstance(output, tuple): output = output.to_tuple()` sees a
                # proxy, not the tuple the call really returned, which the real code keeps as it is
                val = a[0]
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

    def trace_module(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[fx.Graph, list]:
        """Trace `module`'s forward as called with `args`/`kwargs`: the tensors it was given become the
        graph's inputs (named as in its signature); every other argument (None, flags, sizes) is held at
        the value it had. Returns (graph, input names, '*name' for a *args)."""
        self._root = module
        cls = type(module)
        sig = inspect.signature(cls.forward)
        bound = sig.bind(module, *args, **kwargs)
        names, inputs, call, consts = [], [], [], {}
        # before a bound *args, the named parameters go positionally (a keyword there would clash)
        star = [p.name for p in sig.parameters.values() if p.kind == p.VAR_POSITIONAL and p.name in bound.arguments]
        positional = bool(star)
        for i, (name, prm) in enumerate(sig.parameters.items()):
            if i == 0:
                continue
            if name not in bound.arguments:
                continue
            v = bound.arguments[name]
            if prm.kind == prm.VAR_POSITIONAL:
                positional = False
                names.append("*" + name)
                inputs.extend(v)
                call.append(f"*{name}")
            elif prm.kind == prm.VAR_KEYWORD:
                for k, kv in v.items():
                    if _is_data(kv):
                        names.append(k)
                        inputs.append(kv)
                        call.append(f"{k}={k}")
                    else:
                        consts[k] = kv
                        call.append(f"{k}=__c[{k!r}]")
            elif _is_data(v):
                names.append(name)
                inputs.append(v)
                call.append(f"{name}" if prm.kind == prm.POSITIONAL_ONLY or positional else f"{name}={name}")
            else:
                consts[name] = v
                call.append(f"__c[{name!r}]" if prm.kind == prm.POSITIONAL_ONLY or positional
                            else f"{name}=__c[{name!r}]")
        params = ", ".join(["self"] + names)
        src = f"def forward({params}):\n    return __orig(self, {', '.join(call)})\n"
        env = {"__orig": cls.forward, "__c": consts}
        exec(src, env)  # noqa: S102 — a shim whose inputs are exactly the tensors the call passed
        shim = type(cls.__name__, (cls,), {"forward": env["forward"], "__module__": cls.__module__})
        self._inputs = list(_clone(tuple(inputs)))
        self._real_names = {n.lstrip("*") for n in names}
        saved = {name: getattr(torch, name) for name in _FACTORIES}
        module.__class__ = shim
        try:
            for name, fn in saved.items():
                setattr(torch, name, self._factory(fn))
            return self.trace(module), names
        finally:
            module.__class__ = cls
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
    input_names: list = field(default_factory=list)
    owner: object = None  # the module whose graph this is, when it is not `module` (torch.export)
    placeholders: list = field(default_factory=list)  # torch.export: the graph's inputs in call order
    call_kinds: list = field(default_factory=list)  # torch.export: which flattened call inputs it takes


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


def _is_data(v) -> bool:
    """A value the port takes as an input (a tensor, or a tuple or list holding one)."""
    if isinstance(v, torch.Tensor):
        return True
    if isinstance(v, (tuple, list)):
        return any(_is_data(x) for x in v)
    return False


def trace_instance(module: nn.Module, path: str, args: tuple, kwargs: dict) -> Traced:
    """fx-trace one module's own forward on its recorded call."""
    t = Traced(module, path, args, kwargs, where=source_of(type(module)))
    tracer = ConcreteTracer([])
    try:
        with torch.no_grad():
            t.graph, t.input_names = tracer.trace_module(module, args, kwargs)
        t.specialised = tracer.specialised
    except Exception as e:  # noqa: BLE001 — reported as a problem, or handed to torch.export
        tb = traceback.extract_tb(e.__traceback__)
        frames = [f for f in tb if "torch/fx" not in f.filename and "parity/port" not in f.filename
                  and f.filename != "<string>"]
        if frames:
            from parity.porting.trace import rel
            t.where = f"{rel(frames[-1].filename)}:{frames[-1].lineno}"
        t.error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return t


def trace_model(model: nn.Module, inputs: tuple) -> dict:
    """{dotted path: Traced} for the root and every module that is not a layer, in definition order;
    instances never called in the example pass are left out."""
    calls = record_calls(model, inputs)
    subclass.decide(model, calls)
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
            if name == "parametrizations" and P.is_parametrized(m):  # traced inline into m's forward
                continue
            visit(child, f"{path}.{name}" if path else name)

    visit(model, "")
    failed = [t for t in out.values() if t.graph is None]
    if failed:
        _export_fallback(model, inputs, failed)
    return out


def _export_fallback(model, inputs, failed):
    """Modules fx could not trace get the graph torch.export gives them (unflattened: one graph per
    module, its sub-modules called by name, ATen ops, shapes specialised to the example's)."""
    try:
        ep, unflat = export_graphs(model, inputs)
    except Exception as e:  # noqa: BLE001 — then the fx error stands, with this one added
        for t in failed:
            t.error = f"{t.error}; torch.export failed too ({type(e).__name__}: {str(e).splitlines()[0][:200]})"
        return
    for t in failed:
        try:
            sub = unflat.get_submodule(t.path) if t.path else unflat
            g = sub.graph
        except Exception as e:  # noqa: BLE001
            t.error = f"{t.error}; no exported graph for it ({type(e).__name__}: {e})"
            continue
        for n in g.nodes:
            if n.op == "get_attr" and "val" not in n.meta:
                v = sub
                for step in n.target.split("."):
                    v = getattr(v, step, None)
                n.meta["val"] = v
        t.graph, t.tracer, t.owner = g, "export", sub
        phs = [n for n in g.nodes if n.op == "placeholder"]
        t.input_names = [n.target for n in phs]
        t.placeholders = phs
        t.specialised = ["all shapes (torch.export)"]


def _call_order(ep, path) -> list:
    """The exported module's inputs in the order its call passes them (flattened args, then kwargs)."""
    for entry in ep.module_call_graph:
        if entry.fqn == path and entry.signature is not None:
            return [getattr(a, "name", None) for a in entry.signature.inputs]
    return []


def _call_kinds(ep, path) -> list:
    """Per flattened input of the exported module's call: whether the graph takes it (a tensor)."""
    for entry in ep.module_call_graph:
        if entry.fqn == path and entry.signature is not None:
            return [type(a).__name__ == "TensorArgument" for a in entry.signature.inputs]
    return []


def _flat_input_names(t) -> list:
    """Names for the flattened tensors of a recorded call: the parameter's, numbered when it holds several."""
    from torch.utils import _pytree
    sig = inspect.signature(type(t.module).forward)
    params = [p for p in list(sig.parameters)[1:]]
    out = []
    items = [(params[i] if i < len(params) else f"arg{i}", v) for i, v in enumerate(t.args)] + list(t.kwargs.items())
    for name, v in items:
        leaves = [x for x in _pytree.tree_leaves(v) if isinstance(x, torch.Tensor)]
        out += [name] if len(leaves) == 1 else [f"{name}_{i}" for i in range(len(leaves))]
    return out


def export_graphs(model: nn.Module, inputs: tuple, preserve: tuple = ()):
    """torch.export of the whole model, unflattened into per-submodule graphs (aten ops, shapes
    specialised to the example's): the fallback where fx fails. `preserve`: module paths whose call
    signatures are kept (their inputs in call order)."""
    ep = torch.export.export(model, tuple(inputs), strict=False, preserve_module_call_signature=tuple(preserve))
    return ep, torch.export.unflatten(ep)
