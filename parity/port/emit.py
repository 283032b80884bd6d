"""Writing the Flax NNX module file of `parity port` from the traced graphs (parity/port/graph.py).

Each module instance is written once as a class (its `__init__` building the layers from the layer
kinds' `flax_source`, its `__call__` from its graph through the op table of parity/port/ops.py), with
every literal of its constructors and shapes held as a numbered slot. Instances of one torch class
whose code is the same apart from those slots share one class: the slots on which they differ become
constructor parameters; instances whose code differs otherwise get separate classes (Name, Name2).

Values are tracked as torch sees them, plus whether a torch (N, C, *spatial) tensor is held
channels-last (N, *spatial, C), as Flax's convolutions, pools and norms want it: ops that care about
the channel axis have it remapped, or get the value back in torch's order with an explicit transpose.
"""
from __future__ import annotations

import ast
import math
import re
import subprocess
import sys
from dataclasses import dataclass, field

import torch
import torch.fx as fx
from torch import nn

from parity.port import attrs
from parity.port import graph as G
from parity.port import ops as O
from parity.port import parametrized as P
from parity.port import resample as R
from parity.port.constants import array_source

_RESERVED = {"jax", "jnp", "nnx", "math", "self", "rngs", "layer", "optax", "Layer", "layer_norm",
             "scaled_dot_product_attention", "attention_in_input_dtype"} | set(__builtins__ if isinstance(
                 __builtins__, dict) else dir(__builtins__)) | set(P.HELPERS) | set(R.HELPERS)

_DTYPES = {torch.float32: "jnp.float32", torch.float64: "jnp.float64", torch.float16: "jnp.float16",
           torch.bfloat16: "jnp.bfloat16", torch.int64: "jnp.int64", torch.int32: "jnp.int32",
           torch.int16: "jnp.int16", torch.int8: "jnp.int8", torch.uint8: "jnp.uint8", torch.bool: "jnp.bool_"}

HELPERS = {
    "frozen": '''
def frozen(layer, *names):
    """torch's requires_grad=False: these arrays become plain nnx.Variables, not nnx.Params, so that an
    optimiser over the Params (nnx.Optimizer(model, tx, wrt=nnx.Param)) leaves them as they are."""
    for name in names:
        setattr(layer, name, nnx.Variable(getattr(layer, name)[...]))
    return layer
''',
    "Layer": '''
class Layer(nnx.Module):
    """A parameterless torch layer (pooling, upsampling) kept a layer, so that its output is compared."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, x):
        return self.fn(x)
''',
    "layer_norm": '''
def layer_norm(x, n_axes, weight, bias, eps):
    """torch's F.layer_norm over the last `n_axes` axes (biased variance, two-pass)."""
    axes = tuple(range(-n_axes, 0))
    mean = jnp.mean(x, axis=axes, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=axes, keepdims=True)
    y = (x - mean) * jax.lax.rsqrt(var + eps)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y
''',
    "scaled_dot_product_attention": '''
def scaled_dot_product_attention(q, k, v, mask=None, is_causal=False, scale=None, enable_gqa=False):
    """torch's F.scaled_dot_product_attention (eval mode), softmax in the inputs' dtype: a boolean
    `mask` is True where a query attends, a float one is added to the scores."""
    if enable_gqa:
        k = jnp.repeat(k, q.shape[-3] // k.shape[-3], axis=-3)
        v = jnp.repeat(v, q.shape[-3] // v.shape[-3], axis=-3)
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = (q @ jnp.swapaxes(k, -2, -1)) * scale
    if is_causal:
        causal = jnp.tril(jnp.ones((q.shape[-2], k.shape[-2]), dtype=bool))
        scores = jnp.where(causal, scores, -jnp.inf)
    if mask is not None:
        scores = jnp.where(mask, scores, -jnp.inf) if mask.dtype == jnp.bool_ else scores + mask
    return jax.nn.softmax(scores, axis=-1) @ v
''',
    "attention_in_input_dtype": '''
def attention_in_input_dtype(query, key, value, bias=None, mask=None, **kwargs):
    """nnx.MultiHeadAttention's attention computed in the inputs' dtype (jax.nn.dot_product_attention,
    its default, takes the softmax in float32 whatever the inputs)."""
    weights = nnx.nn.attention.dot_product_attention_weights(query, key, bias, mask, **kwargs)
    return jnp.einsum("...hqk,...khd->...qhd", weights, value, precision=kwargs.get("precision"))
''',
} | P.HELPERS
HELPERS.update(R.HELPERS)  # average pooling with ceil_mode, interpolation (parity/port/resample.py)


@dataclass
class Problem:
    """Something the port could not write: `where` (torch source file:line), `what`, `why`."""

    where: str
    what: str
    why: str

    def line(self) -> str:
        return f"{self.what}: {self.why} ({self.where})"


class V:
    """A value of the traced forward: its source expression, its torch value, and whether it is a
    torch (N, C, *spatial) tensor held channels-last."""

    def __init__(self, src, val, cl=False, shape_of=None, hwc=None):
        self.src, self.val, self.cl, self.shape_of = src, val, cl, shape_of
        self.hwc = hwc  # (C, H, W): a channels-last map flattened in (H, W, C) order (cl is True then)


def _atomic(src: str) -> bool:
    depth, quote = 0, None
    for ch in src:
        if quote:
            if ch == quote:
                quote = None
            continue
        if ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth == 0 and (ch in " +-*/%@<>=&|^~!" or ch == ","):
            return False
    return True


def _perm_to_cl(r):
    return (0,) + tuple(range(2, r)) + (1,)


def _perm_to_cf(r):
    return (0, r - 1) + tuple(range(1, r - 1))


def _float_src(x: float) -> str:
    if math.isinf(x):
        return "-jnp.inf" if x < 0 else "jnp.inf"
    if math.isnan(x):
        return "jnp.nan"
    return repr(x)


@dataclass
class Code:
    """One instance's class, as a template: `\\x00k\\x00` marks literal slot k (`lits[k]`: source,
    parameter name hint, whether __call__ reads it)."""

    torch_cls: type
    path: str
    module: nn.Module
    in_cl: tuple
    out_cl: object = None
    signature: list = field(default_factory=list)
    init: list = field(default_factory=list)
    call: list = field(default_factory=list)
    lits: list = field(default_factory=list)
    helpers: set = field(default_factory=set)
    problems: list = field(default_factory=list)
    children: list = field(default_factory=list)  # (marker index, child path) in order
    tracer: str = "fx"
    specialised: list = field(default_factory=list)
    uses_math: bool = False
    has_linear: bool = False
    last_map_c: object = None

    def template(self) -> str:
        return "\n".join(["|".join(self.signature)] + self.init + ["---"] + self.call)


class Port:
    """The whole port: traces, per-instance code, then classes."""

    def __init__(self, model: nn.Module, traced: dict, root_in_cl: tuple, layout: str = "nhwc"):
        self.model, self.traced, self.layout = model, traced, layout
        self.codes: dict[str, Code] = {}
        self.root_in_cl = root_in_cl
        self.problems: list[Problem] = []

    def code_of(self, path: str, in_cl: tuple) -> Code:
        if path in self.codes:
            return self.codes[path]
        t = self.traced[path]
        code = Code(type(t.module), path, t.module, tuple(in_cl), tracer=t.tracer, specialised=list(t.specialised))
        self.codes[path] = code
        Body(self, code, t).write()
        return code


class Body:
    """Writes one instance's __init__ and __call__ (what ops.py's emitters call `e`)."""

    def __init__(self, port: Port, code: Code, traced: G.Traced):
        self.port, self.code, self.t = port, code, traced
        self.module = None  # the parameterless torch layer being written (its settings are read from it)
        self.node = None
        self._comments: list[str] = []
        self._cf_cache: dict = {}
        self._cl_cache: dict = {}
        self._names: set = set()
        self._last_hwc = None
        self.last_map_c = None  # channels of the last 4-D output of a torch layer call (no Linear since)
        self.out_cl = None
        self.seq_plans: dict = {}  # child name → list of element sources (nnx.Sequential)
        self.fn_plans: dict = {}  # child name → the Layer(...) holding a parameterless layer's function

    # ------------------------------------------------------------ what ops.py uses
    def lit(self, src: str, hint: str, in_call=True) -> str:
        self.code.lits.append((src, hint, in_call))
        return f"\x00{len(self.code.lits) - 1}\x00"

    def comment(self, text: str):
        if text not in self._comments:
            self._comments.append(text)

    def helper(self, name: str):
        self.code.helpers.add(name)
        if name == "scaled_dot_product_attention":
            self.code.uses_math = True

    def is_value(self, x) -> bool:
        return isinstance(x, V)

    def val(self, x):
        return x.val if isinstance(x, V) else x

    def dtype_of(self, x):
        v = self.val(x)
        return v.dtype if isinstance(v, torch.Tensor) else None

    def node_val(self):
        return self.node.meta.get("val") if self.node is not None else None

    def node_target_name(self):
        t = self.node.target if self.node is not None else ""
        return t if isinstance(t, str) else getattr(t, "__name__", "")

    def training_flag(self, v):
        return bool(self.val(v)) if not isinstance(v, V) else True

    def rank(self, x) -> int:
        v = self.val(x)
        return v.dim() if isinstance(v, torch.Tensor) else 0

    def axis(self, x, d) -> int:
        """torch dim `d` of `x` → the axis of the array the port holds."""
        r = self.rank(x)
        if isinstance(d, V):
            raise O.Unsupported("a dim computed at run time")
        if not (isinstance(x, V) and x.cl):
            return d
        d = d % r if r else d
        if isinstance(x, V) and x.cl:
            return 0 if d == 0 else (r - 1 if d == 1 else d - 1)
        return d

    def shape_src(self, x) -> str:
        xs = self.r(x, paren=True)
        if isinstance(x, V) and x.cl:
            return f"({xs}.shape[0], {xs}.shape[-1], *{xs}.shape[1:-1])"
        return f"{xs}.shape"

    def shape_of(self, x):
        return x.shape_of if isinstance(x, V) else None

    def cf(self, x):
        """`x` in torch's order (a transpose back from channels-last where needed)."""
        if not isinstance(x, V) or not x.cl:
            return x
        if x.src in self._cf_cache:
            return self._cf_cache[x.src]
        if x.hwc is not None:
            c, h, w = x.hwc
            name = self.fresh(f"{_base(x.src)}_chw")
            self.emit(f"{name} = jnp.transpose({x.src}.reshape(-1, {h}, {w}, {c}), (0, 3, 1, 2)).reshape("
                      f"{x.src}.shape[0], -1)", "(H, W, C) flattening → torch's (C, H, W) order")
            out = V(name, x.val, False)
            self._cf_cache[x.src] = out
            return out
        r = self.rank(x)
        name = self.fresh(f"{_base(x.src)}_nchw" if r == 4 else f"{_base(x.src)}_cf")
        self.emit(f"{name} = jnp.transpose({x.src}, {_perm_to_cf(r)})",
                  "channels-last → torch's (N, C, ...) order, which the torch code's semantics need here")
        out = V(name, x.val, False)
        self._cf_cache[x.src] = out
        return out

    def cl(self, x):
        """`x` channels-last (for convolutions, pools and norms over channels)."""
        if not isinstance(x, V) or x.cl or self.rank(x) < 3:
            return x
        if x.src in self._cl_cache:
            return self._cl_cache[x.src]
        r = self.rank(x)
        name = self.fresh(f"{_base(x.src)}_nhwc" if r == 4 else f"{_base(x.src)}_cl")
        self.emit(f"{name} = jnp.transpose({x.src}, {_perm_to_cl(r)})",
                  "torch's (N, C, ...) → channels-last, as Flax's convolutions, pools and norms take it")
        out = V(name, x.val, True)
        self._cl_cache[x.src] = out
        return out

    def same_layout(self, xs: list) -> list:
        tensors = [x for x in xs if isinstance(x, V) and isinstance(x.val, torch.Tensor)]
        if tensors and all(x.cl for x in tensors) and len({self.rank(x) for x in tensors}) == 1:
            return xs
        return [self.cf(x) for x in xs]

    def r(self, x, paren=False, lit=False) -> str:
        """The source of an argument."""
        if isinstance(x, V):
            s = x.src
            return f"({s})" if paren and not _atomic(s) else s
        if isinstance(x, bool) or x is None:
            return repr(x)
        if isinstance(x, int):
            s = self.lit(repr(x), self._hint()) if lit else repr(x)
            return f"({s})" if paren and x < 0 else s
        if isinstance(x, float):
            s = _float_src(x)
            return f"({s})" if paren and (x < 0 or s.startswith("-")) else s
        if isinstance(x, torch.dtype):
            if x not in _DTYPES:
                raise O.Unsupported(f"dtype {x}")
            return _DTYPES[x]
        if isinstance(x, torch.device):
            return "None"
        if isinstance(x, str):
            return repr(x)
        if x is Ellipsis:
            return "..."
        if isinstance(x, torch.Size):
            x = tuple(x)
        if isinstance(x, tuple):
            inner = ", ".join(self.r(v, lit=lit) for v in x)
            return f"({inner},)" if len(x) == 1 else f"({inner})"
        if isinstance(x, list):
            return f"[{', '.join(self.r(v, lit=lit) for v in x)}]"
        if isinstance(x, slice):
            return self.index(x)
        raise O.Unsupported(f"an argument of type {type(x).__name__}")

    def index(self, idx) -> str:
        def one(i):
            if isinstance(i, slice):
                parts = ["" if p is None else self.r(p) for p in (i.start, i.stop, i.step)]
                s = f"{parts[0]}:{parts[1]}"
                return s + (f":{parts[2]}" if parts[2] else "")
            if i is None:
                return "None"
            return self.r(i)
        if isinstance(idx, tuple):
            return ", ".join(one(i) for i in idx) if idx else "()"
        return one(idx)

    def _hint(self) -> str:
        return self.node.name if self.node is not None else "value"

    # ------------------------------------------------------------ statements
    def fresh(self, base: str) -> str:
        if self.t.tracer == "export":  # node names are numbered across the whole model: number per class
            base = re.sub(r"_\d+$", "", base)
        base = re.sub(r"\W", "_", base) or "v"
        if base[0].isdigit():
            base = "v_" + base
        name = base
        k = 2
        while name in self._names or name in _RESERVED or keyword(name):
            name = f"{base}_{k}"
            k += 1
        self._names.add(name)
        return name

    def emit(self, line: str, comment: str | None = None):
        comments = list(self._comments)
        self._comments = []
        if comment:
            comments.append(comment)
        for c in comments:
            self.code.call.append(f"# {c}")
        self.code.call.append(line)

    def problem(self, what: str, why: str, where: str, init=False):
        p = Problem(where, what, why)
        self.code.problems.append(p)
        self.port.problems.append(p)
        msg = p.line().replace("\\", "/")
        target = self.code.init if init else self.code.call
        target.append(f"raise NotImplementedError({msg!r})")
        return p

    # ------------------------------------------------------------ the forward
    def write(self):
        t = self.t
        if t.graph is None:
            self.problem(f"{type(t.module).__name__}.forward", f"cannot be traced ({t.error})", t.where)
            self.code.signature = ["*args"]
            self._write_init(used=set())
            return
        g = t.graph
        live = _live_nodes(g)
        env: dict = {}
        used_children: set = set()
        placeholders = t.placeholders or [n for n in g.nodes if n.op == "placeholder" and not n.meta.get("concrete")]
        in_cl = list(self.code.in_cl) + [False] * len(placeholders)
        for i, n in enumerate(placeholders):
            name = self.fresh(n.meta.get("port_name", n.target).lstrip("*"))
            self.code.signature.append(("*" if str(n.target).startswith("*") else "") + name)
            pv = n.meta.get("val")
            if str(n.target).startswith("*") and isinstance(pv, tuple):  # *args: one value per argument
                env[n] = tuple(V(f"{name}[{k}]", v, bool(in_cl[i + k]) and isinstance(v, torch.Tensor))
                               for k, v in enumerate(pv))
                continue
            env[n] = V(name, pv, bool(in_cl[i]) and isinstance(pv, torch.Tensor))
        if t.specialised:
            self.comment("traced with the example's values for: " + ", ".join(t.specialised[:4])
                         + (" ..." if len(t.specialised) > 4 else ""))
        for n in g.nodes:
            if n.op == "placeholder":
                if n.meta.get("concrete"):
                    env[n] = n.meta.get("val")
                continue
            if n not in live:
                continue
            self.node = n
            if n.op == "output":
                self._write_return(n, env)
                continue
            try:
                env[n] = self._node(n, env, used_children)
            except O.Unsupported as e:
                env[n] = self._failed(n, str(e))
            except Exception as e:  # noqa: BLE001 — any failure of one op is a problem of the port
                env[n] = self._failed(n, f"{type(e).__name__}: {e}")
        self._fold_loops()
        self.code.last_map_c = self.last_map_c
        self.code.has_linear = any(isinstance(m, nn.Linear) for m in self.t.module.modules())
        self._write_init(used_children)

    def _failed(self, n, why):
        what = _describe(n)
        self.problem(what, why, G.where_of(n, self.t.where))
        name = self.fresh(n.name)
        self.code.call.append(f"{name} = None  # not ported: see the line above")
        return V(name, n.meta.get("val"))

    def _write_return(self, n, env):
        out = fx.node.map_arg(n.args[0], lambda a: env[a])
        root = self.code.path == ""

        nchw = self.port.layout == "nchw"

        def fix(v):  # the root returns torch's layout, except 4-D maps under layout="nhwc"
            if isinstance(v, V) and v.cl and root and (nchw or self.rank(v) != 4 or v.hwc is not None):
                return self.cf(v)
            return v
        if isinstance(out, (tuple, list)):
            out = type(out)(fix(v) for v in out)
            self.code.out_cl = tuple(isinstance(v, V) and v.cl for v in out)
            self.emit(f"return {self.r(tuple(out)) if isinstance(out, tuple) else self.r(list(out))}")
        elif isinstance(out, dict):  # a ModelOutput / dict: a tuple of its values, in order
            self.code.out_cl = False
            vals = [fix(v) for v in out.values() if v is not None]
            self.emit(f"return ({''.join(self.r(v) + ', ' for v in vals)})", "torch returns "
                      f"{type(n.args[0]).__name__}({', '.join(k for k, v in out.items() if v is not None)}): a tuple")
        else:
            out = fix(out)
            self.code.out_cl = isinstance(out, V) and out.cl
            self.emit(f"return {self.r(out)}")

    def _node(self, n, env, used_children):
        args = fx.node.map_arg(n.args, lambda a: env[a])
        kwargs = fx.node.map_arg(n.kwargs, lambda a: env[a])
        val = n.meta.get("val")
        if "val_error" in n.meta:
            raise O.Unsupported(f"the torch op failed on the example ({n.meta['val_error']})")
        if n.op == "get_attr":
            return self._get_attr(n, val)
        if n.target is _getitem_fn and isinstance(args[0], (tuple, list)) and isinstance(args[1], int):
            return args[0][args[1]]  # an element of *args or of a Python tuple
        if n.op == "call_module":
            first = n.target.split(".")[0]
            used_children.add(first)
            return self._call_module(n, self.t.module.get_submodule(n.target), args, kwargs)
        rec = O.lookup(n.op, n.target)
        if rec is None:
            what = n.target if isinstance(n.target, str) else getattr(n.target, "__qualname__", str(n.target))
            mod = getattr(n.target, "__module__", "") or ""
            raise O.Unsupported(f"no entry in parity/port/ops.py for {'Tensor.' if n.op == 'call_method' else ''}"
                                f"{(mod + '.') if mod and mod != 'builtins' else ''}{what}")
        return self._apply(rec, n, args, kwargs, val)

    def _apply(self, rec, n, args, kwargs, val, module=None):
        self._last_hwc = None
        src, cl, shape_of = self._apply_expr(rec, args, kwargs, val, module)
        hwc, self._last_hwc = self._last_hwc, None
        if rec.inline or (isinstance(val, (int, float, torch.Size)) and not isinstance(val, bool) and _cheap(src)):
            return V(src, val, False, shape_of=shape_of)
        name = self.fresh(n.name)
        self.emit(f"{name} = {src}")
        return V(name, val, cl, hwc=hwc)

    def _apply_expr(self, rec, args, kwargs, val, module=None):
        """(source expression, channels-last?, the tensor a shape is of) of one op."""
        flat = self._hwc_flatten(rec, args, val)
        if flat is not None:
            return flat
        self.module = module
        try:
            keep_cl = None
            if rec.layout == "dim":
                args = _map_values(args, lambda x: self.cf(x) if x.hwc is not None else x)
            if rec.layout == "cf":
                args = _map_values(args, self.cf)
                kwargs = _map_values(kwargs, self.cf)
            elif rec.layout == "any":
                vals = [x for x in _flat_values((args, kwargs)) if isinstance(x.val, torch.Tensor)]
                full = [x for x in vals if x.val.numel() != 1]
                keep_cl = bool(full) and all(x.cl for x in full) and len({self.rank(x) for x in full}) == 1
                if not keep_cl:
                    args = _map_values(args, self.cf)
                    kwargs = _map_values(kwargs, self.cf)
            src = rec.emit(self, O.Args(args, kwargs, self.node))
        finally:
            self.module = None
        cl = False
        if isinstance(val, torch.Tensor) and val.dim() == 2 and rec.layout == "any" and keep_cl:
            hw = {x.hwc for x in _flat_values((args, kwargs)) if isinstance(x.val, torch.Tensor) and x.cl}
            if len(hw) == 1 and None not in hw:
                self._last_hwc = next(iter(hw))
                return src, True, None  # elementwise on an (H, W, C)-flattened vector: stays so
        if isinstance(val, torch.Tensor) and val.dim() >= 3:
            ins = [x for x in _flat_values((args, kwargs)) if isinstance(x.val, torch.Tensor)]
            if rec.layout == "any":
                cl = bool(keep_cl) and bool(ins) and val.dim() == max(self.rank(x) for x in ins)
            elif rec.layout == "dim":
                cl = _dim_out_cl(self, rec, ins, val, src)
        shape_of = args[0] if (isinstance(val, torch.Size) and rec.name in ("getattr", "size") and args
                               and isinstance(args[0], V) and isinstance(args[0].val, torch.Tensor)) else None
        return src, cl, shape_of

    def _hwc_flatten(self, rec, args, val):
        """A channels-last map (N, H, W, C) flattened into the vector a Linear reads: flattened in
        Flax's (H, W, C) order; the comparer and `pair_models(...).load_flax` permute that Linear's
        rows (docs/traps.md, trap 4). Elsewhere the vector goes back to torch's order."""
        if rec.name not in ("flatten", "view") or not args or not isinstance(args[0], V):
            return None
        x = args[0]
        if not (x.hwc is None and self.rank(x) == 4 and isinstance(val, torch.Tensor) and val.dim() == 2):
            return None
        n, c, h, w = x.val.shape
        if val.shape[1] != c * h * w or h * w == 1 or self.last_map_c != c:
            return None  # not what the comparer reads as a flattened map (parity/porting/pairing.py)
        x = self.cl(x)
        self._last_hwc = (c, h, w)
        self.comment("flattened channels-last, in (H, W, C) order: the Linear reading it gets its rows permuted "
                     "when torch's weights are loaded (docs/traps.md, trap 4)")
        return f"{self.r(x, paren=True)}.reshape({self.r(x, paren=True)}.shape[0], -1)", True, None

    def _get_attr(self, n, val):
        target = n.target
        if P.attr_source(target) is not None and P.is_parametrized(self.t.module):
            return V(P.attr_source(target), val, False)
        if "." in target:  # a sub-module's parameter or buffer, read here (parity/port/attrs.py)
            return V(attrs.sub_module_array(self, n, target, val), val, False)
        name = target
        self._names.add(name)
        own = dict(self.t.module.named_parameters(recurse=False)) | dict(self.t.module.named_buffers(recurse=False))
        if name not in own and isinstance(val, torch.Tensor):  # a constant of the exported graph
            src = array_source(val.detach().cpu().numpy(), _DTYPES.get(val.dtype, "jnp.float32"))
            if src is None:
                raise O.Unsupported(f"constant `{name}` has {val.numel()} values and no formula makes them")
            return V(src, val)
        if isinstance(val, nn.Parameter):
            return V(f"self.{name}[...]", val, False)
        if isinstance(val, torch.Tensor):
            return V(f"self.{name}[...]", val, False)
        return V(repr(val), val)

    # ------------------------------------------------------------ sub-modules
    def _attr(self, target: str) -> str:
        out, node = "self", self.t.module
        for step in target.split("."):
            if isinstance(node, nn.Sequential):
                out += ".layers"  # nnx.Sequential holds its elements in `layers`
            out += f"[{step}]" if step.isdigit() else f".{step}"
            node = getattr(node, step) if not step.isdigit() else node[int(step)]
        return out

    def _call_module(self, n, m, args, kwargs):
        out = self._call_module_(n, m, args, kwargs)
        val = n.meta.get("val")
        if isinstance(m, nn.Linear):
            self.last_map_c = None
        elif isinstance(val, torch.Tensor) and val.dim() == 4 and (G.kind_of(m) is not None or isinstance(
                m, G.PARAMETERLESS)):
            self.last_map_c = val.shape[1]
        elif n.target.replace(".", "") and (self.code.path + "." + n.target).strip(".") in self.port.codes:
            child = self.port.codes[(self.code.path + "." + n.target).strip(".")]
            if child.last_map_c is not None or child.has_linear:
                self.last_map_c = child.last_map_c
        return out

    def _call_module_(self, n, m, args, kwargs):
        val = n.meta.get("val")
        attr = self._attr(n.target)
        kind = G.kind_of(m)
        if isinstance(m, G.PARAMETERLESS) and not isinstance(m, nn.Dropout):
            kind = None
        if kind is not None and kind.name == "dropout":
            x = args[0]
            name = self.fresh(n.name)
            self.emit(f"{name} = {attr}({self.r(x)})")
            return V(name, val, x.cl if isinstance(x, V) else False, hwc=getattr(x, "hwc", None))
        if kind is not None:
            if not kwargs:
                _check_forward(m, kind, args)
            return self._call_layer(n, m, kind, attr, args, kwargs, val)
        rec = O.lookup("call_module", m)
        if rec is not None and isinstance(m, _POOLS) and "." not in n.target and len(args) == 1 and not kwargs:
            # a pooling layer stays a (parameterless) layer: the comparer sees its output
            x = self.cl(args[0]) if self.rank(args[0]) >= 3 else args[0]
            h = V("h", x.val, x.cl)
            mark = len(self.code.call)
            src, cl, _ = self._apply_expr(rec, [h], {}, val, module=m)
            if len(self.code.call) == mark:
                self.fn_plans.setdefault(n.target, f"Layer(lambda h: {src})")
                self.code.helpers.add("Layer")
                name = self.fresh(n.name)
                self.emit(f"{name} = {attr}({self.r(x)})")
                return V(name, val, cl)
            del self.code.call[mark:]
        if rec is not None and isinstance(m, G.PARAMETERLESS):
            return self._apply(rec, n, args, kwargs, val, module=m)
        if isinstance(m, nn.Sequential):
            return self._call_sequential(n, m, attr, args, val)
        full = n.target if not self.code.path else f"{self.code.path}.{n.target}"
        if isinstance(m, (nn.ModuleList, nn.ModuleDict)) or full not in self.port.traced:
            raise O.Unsupported(f"{type(m).__name__} is no layer kind (parity.porting.kinds) and was not traced")
        args = _inputs_of(m, self.port.traced[full], args, kwargs)
        kwargs = {}
        args = [self.cf(a) if isinstance(a, V) and a.hwc is not None else a for a in args]
        child = self.port.code_of(full, tuple(isinstance(a, V) and a.cl for a in args))
        want = child.in_cl
        args = [self.cl(a) if (i < len(want) and want[i]) else self.cf(a) for i, a in enumerate(args)]
        kwargs = {k: self.cf(v) for k, v in kwargs.items()}
        name = self.fresh(n.name)
        arg_src = [self.r(a) for a in args] + [f"{k}={self.r(v)}" for k, v in kwargs.items()]
        self.emit(f"{name} = {attr}({', '.join(arg_src)})")
        self.code.call[-1] = self.code.call[-1] + f"\x02{n.target}\x02"  # a call a loop may fold
        oc = child.out_cl
        return V(name, val, bool(oc) if isinstance(oc, bool) else False)

    def _call_layer(self, n, m, kind, attr, args, kwargs, val):
        name = self.fresh(n.name)
        if kind.name == "multihead_attention":
            q = args[0]
            k = args[1] if len(args) > 1 else kwargs.get("key")
            v = args[2] if len(args) > 2 else kwargs.get("value")
            for bad in ("key_padding_mask", "attn_mask"):
                if kwargs.get(bad) is not None:
                    raise O.Unsupported(f"nn.MultiheadAttention {bad}= (masks are not mapped yet)")
            if kwargs.get("is_causal"):
                raise O.Unsupported("nn.MultiheadAttention is_causal=True")
            q, k, v = self.cf(q), self.cf(k), self.cf(v)
            srcs = [self.r(x) for x in (q, k, v)]
            if not m.batch_first:
                srcs = [f"jnp.swapaxes({s}, 0, 1)" for s in srcs]
            call = f"{attr}({', '.join(srcs)})"
            if not m.batch_first:
                call = f"jnp.swapaxes({call}, 0, 1)"
            need = kwargs.get("need_weights", True)
            if need:
                self.comment("attention weights (torch's need_weights=True) are not computed: None")
            self.emit(f"{name} = ({call}, None)", "nnx.MultiHeadAttention returns the output alone")
            return V(name, val)
        if kind.name in ("lstm", "gru", "rnn"):
            if len(args) > 1 and args[1] is not None or kwargs.get("hx") is not None:
                raise O.Unsupported(f"nn.{type(m).__name__} with an initial state")
            x = self.cf(args[0])
            self.emit(f"{name} = ({attr}({self.r(x)}), None)",
                      "the final states (torch's second output) are not computed: None")
            return V(name, val)
        x = args[0]
        if len(args) > 1 or kwargs:
            raise O.Unsupported(f"{type(m).__name__} called with more than its input")
        if kind.channels_last:
            x = self.cl(x)
        elif not (kind.name == "linear" and isinstance(x, V) and x.hwc is not None):
            x = self.cf(x)
        self.emit(f"{name} = {attr}({self.r(x)})")
        if kind.name == "embedding" and m.padding_idx is not None:
            # torch never updates the padding row: its gradient is zero; nnx.Embed has no padding_idx
            self.emit(f"{name} = jnp.where(({self.r(x)} == {m.padding_idx})[..., None], "
                      f"jax.lax.stop_gradient({name}), {name})",
                      f"torch padding_idx={m.padding_idx}: that row gets no gradient")
        return V(name, val, bool(kind.channels_last) and isinstance(val, torch.Tensor) and val.dim() >= 3)

    def _call_sequential(self, n, m, attr, args, val):
        """An nn.Sequential called whole: nnx.Sequential where every element takes the layout the
        one before gives it; otherwise its elements are called one by one."""
        x = args[0]
        elems, cur = [], x
        whole = True
        full = self.code.path + "." + n.target if self.code.path else n.target
        for i, child in enumerate(m):
            kind = None if isinstance(child, G.PARAMETERLESS) and not isinstance(child, nn.Dropout) else G.kind_of(child)
            r = self.rank(cur)
            if kind is not None and kind.name != "dropout":
                src, notes = _layer_source(child, kind)
                if r >= 3 and isinstance(cur, V) and cur.cl != bool(kind.channels_last) and i > 0:
                    whole = False
                if i == 0 and r >= 3 and isinstance(cur, V) and cur.cl != bool(kind.channels_last):
                    cur = self.cl(cur) if kind.channels_last else self.cf(cur)
                cur = V("h", self._seq_vals(m)[i + 1], bool(kind.channels_last) and r >= 3)
                elems.append(("layer", src, notes))
            elif kind is not None:  # dropout
                elems.append(("layer", f"nnx.Dropout({child.p:g}, rngs=rngs)", []))
                cur = V("h", self._seq_vals(m)[i + 1], cur.cl if isinstance(cur, V) else False)
            elif isinstance(child, G.PARAMETERLESS):
                rec = O.lookup("call_module", child)
                if rec is None:
                    raise O.Unsupported(f"{type(child).__name__} has no entry in parity/port/ops.py")
                mark = len(self.code.call)
                v_in = V("h", self._seq_vals(m)[i], cur.cl if isinstance(cur, V) else False)
                src, cl, _ = self._apply_expr(rec, [v_in], {}, self._seq_vals(m)[i + 1], module=child)
                if len(self.code.call) > mark:  # it needed a layout change: not a plain element
                    del self.code.call[mark:]
                    whole = False
                elems.append(("fn", f"lambda h: {src}", []))
                cur = V("h", self._seq_vals(m)[i + 1], cl)
            else:
                sub_path = f"{full}.{i}"
                if sub_path not in self.port.traced:
                    raise O.Unsupported(f"{type(child).__name__} inside nn.Sequential `{full}` was not traced")
                ccode = self.port.code_of(sub_path, (bool(cur.cl) if isinstance(cur, V) else False,))
                oc = ccode.out_cl
                cur = V("h", self._seq_vals(m)[i + 1], bool(oc) if isinstance(oc, bool) else False)
                elems.append(("module", sub_path, []))
        self.seq_plans[n.target] = elems
        if not whole:
            raise O.Unsupported("an nn.Sequential whose elements need layout changes between them "
                                "(call its elements one by one in the torch code)")
        name = self.fresh(n.name)
        self.emit(f"{name} = {attr}({self.r(x)})")
        return V(name, val, bool(cur.cl) if isinstance(cur, V) else False)

    # ------------------------------------------------------------ loops over nn.ModuleList
    def _fold_loops(self):
        lines = self.code.call
        out, i = [], 0
        pat = re.compile(r"^(\w+) = (self(?:\.\w+)+)\[(\d+)\]\(([^()]*)\)\x02([\w.]+)\x02$")
        while i < len(lines):
            m = pat.match(lines[i])
            if m and m.group(3) == "0":
                base = m.group(2)
                lst = self.t.module.get_submodule(m.group(5).rsplit(".", 1)[0])
                run = [m]
                j = i + 1
                while j < len(lines):
                    m2 = pat.match(lines[j])
                    if not (m2 and m2.group(2) == base and int(m2.group(3)) == len(run)):
                        break
                    prev = run[-1].group(1)
                    a2 = [s.strip() for s in m2.group(4).split(",")]
                    a1 = [s.strip() for s in run[-1].group(4).split(",")]
                    if a2[0] != prev or a2[1:] != a1[1:]:
                        break
                    run.append(m2)
                    j += 1
                later = "\n".join(lines[j:])
                inner_used = any(re.search(rf"\b{r.group(1)}\b", later) for r in run[:-1])
                if len(run) == len(lst) and len(run) > 1 and not inner_used:
                    var = run[-1].group(1)
                    a = [s.strip() for s in run[0].group(4).split(",")]
                    rest = "".join(f", {s}" for s in a[1:])
                    out.append(f"{var} = {a[0]}")
                    out.append(f"for layer in {base}:")
                    out.append(f"    {var} = layer({var}{rest})")
                    i = j
                    continue
            out.append(re.sub("\x02[^\x02]*\x02", "", lines[i]))
            i += 1
        self.code.call = out

    # ------------------------------------------------------------ __init__
    def _write_init(self, used: set):
        mod = self.t.module
        for name, child in mod.named_children():
            if name == "parametrizations" and P.is_parametrized(mod):
                try:
                    self.code.init += P.init_source(mod, lambda src, hint: self.lit(src, hint, in_call=False))
                except O.Unsupported as e:
                    self.problem(f"parametrisations of `{self.code.path}`", str(e), self.t.where, init=True)
                continue
            self._init_child(name, child, self.code.path + "." + name if self.code.path else name)
        for name, p in mod.named_parameters(recurse=False):
            shape = self.lit(repr(tuple(p.shape)), f"{name}_shape", in_call=False)
            self.code.init.append("# a parameter of its own: torch's values are loaded by name")
            self.code.init.append(f"self.{name} = nnx.Param(jnp.zeros({shape}, dtype=jnp.float32))")
        for name, b in mod.named_buffers(recurse=False):
            if b is None:
                continue
            src = array_source(b.detach().cpu().numpy(), _DTYPES.get(b.dtype, "jnp.float32"))
            if src is None:
                self.problem(f"buffer `{name}`", f"{b.numel()} values are too many to write into the source "
                             "and no formula makes them", self.t.where, init=True)
                continue
            self.code.init.append("# a torch buffer (not a parameter): its values, as a formula or written out")
            self.code.init.append(f"self.{name} = nnx.Variable({src})")

    def _init_child(self, name, child, full):
        attr = f"self.{name}"
        try:
            expr, notes = self._child_expr(child, full, name)
        except (NotImplementedError, O.Unsupported) as e:
            self.problem(f"{type(child).__name__} `{full}`", str(e), G.source_of(type(child)), init=True)
            self.code.init.append(f"{attr} = None  # not ported: see the line above")
            return
        if expr is None:
            return
        for c in notes:
            self.code.init.append(f"# {c}")
        self.code.init.append(f"{attr} = {expr}")
        for h in HELPERS:
            if re.search(rf"\b{h}\b", expr):
                self.code.helpers.add(h)

    def _child_expr(self, child, full, name):
        kind = None if isinstance(child, G.PARAMETERLESS) and not isinstance(child, nn.Dropout) else G.kind_of(child)
        if kind is not None:
            src, notes = _layer_source(child, kind)
            return self._slot_ctor(src, name), notes
        if isinstance(child, G.PARAMETERLESS):
            if name in self.fn_plans:
                return self.fn_plans[name], [f"torch {type(child).__name__}: a parameterless layer"]
            return None, []
        if isinstance(child, nn.Sequential):
            plan = self.seq_plans.get(name)
            elems, notes = [], []
            for i, sub in enumerate(child):
                if plan is not None:
                    how, src, nts = plan[i]
                    if how == "module":
                        src = self._child_ref(src)
                    elif how == "layer":
                        src = self._slot_ctor(src, f"{name}_{i}")
                else:
                    src, nts = self._child_expr(sub, f"{full}.{i}", f"{name}_{i}")
                    if src is None:
                        src = _fn_of(sub)
                notes += [f"[{i}] {c}" for c in nts]
                elems.append(src)
            return f"nnx.Sequential({', '.join(elems)})", notes
        if isinstance(child, nn.ModuleList):
            elems, notes = [], []
            for i, sub in enumerate(child):
                src, nts = self._child_expr(sub, f"{full}.{i}", f"{name}_{i}")
                if src is None:
                    src = _fn_of(sub)
                notes += [f"[{i}] {c}" for c in nts]
                elems.append(src)
            if len(set(elems)) == 1 and len(elems) > 1 and "\x01" not in elems[0] and "\x00" not in elems[0]:
                return f"nnx.List([{elems[0]} for _ in range({len(elems)})])", notes
            return f"nnx.List([{', '.join(elems)}])", notes
        if isinstance(child, nn.ModuleDict):
            raise O.Unsupported("nn.ModuleDict is not mapped yet")
        if full in self.port.traced:
            return self._child_ref(full), []
        if any(True for _ in child.parameters()):
            raise O.Unsupported(f"{type(child).__name__} has parameters but is no layer kind and was never called")
        return None, []

    def _child_ref(self, full):
        if full not in self.port.codes:  # built but never called here: written with torch's layout
            self.port.code_of(full, ())
        self.code.children.append(full)
        return f"\x01{len(self.code.children) - 1}\x01"

    def _slot_ctor(self, src: str, name: str) -> str:
        """A layer constructor with each literal argument a slot (named `<attribute>_<argument>`)."""
        try:
            call = ast.parse(src, mode="eval").body
        except SyntaxError:
            return src
        if not isinstance(call, ast.Call):
            return src
        spans = []
        import inspect
        pnames = []
        try:
            fn = eval(ast.unparse(call.func), {"nnx": __import__("flax").nnx})  # noqa: S307 — our own source
            pnames = [p for p in inspect.signature(fn.__init__).parameters if p != "self"]
        except Exception:  # noqa: BLE001
            pass
        for i, a in enumerate(call.args):
            spans.append((a, pnames[i] if i < len(pnames) else f"arg{i}"))
        for kw in call.keywords:
            if kw.arg and kw.arg != "rngs":
                spans.append((kw.value, kw.arg))
        out = src
        for node, pname in sorted(spans, key=lambda s: -s[0].col_offset):
            try:
                ast.literal_eval(node)
            except ValueError:
                continue
            text = src[node.col_offset:node.end_col_offset]
            out = out[:node.col_offset] + self.lit(text, f"{name}_{pname}", in_call=False) + out[node.end_col_offset:]
        # the slots were numbered right to left: renumber them left to right
        return _renumber(out, self.code)


def _inputs_of(m, traced, args, kwargs) -> list:
    """The values a call of sub-module `m` passes for the inputs its trace took (its tensors)."""
    import inspect
    if traced.tracer == "export":  # its inputs are the call's tensors, flattened in order
        def flat(x):
            if isinstance(x, V) and isinstance(x.val, (tuple, list)):
                return [w for i, v in enumerate(x.val) for w in flat(V(f"{x.src}[{i}]", v))]
            if isinstance(x, (tuple, list)):
                return [w for v in x for w in flat(v)]
            if isinstance(x, dict):
                return [w for v in x.values() for w in flat(v)]
            return [x]
        leaves = [v for v in flat(list(args) + list(kwargs.values()))
                  if isinstance(v, V) and isinstance(v.val, torch.Tensor)]
        out = []
        for ph in traced.placeholders:  # the exported graph names its inputs after the caller's nodes:
            pv = ph.meta.get("val")      # each must match one tensor of the call by shape and dtype
            same = [v for v in leaves if pv is not None and tuple(v.val.shape) == tuple(pv.shape)
                    and v.val.dtype == pv.dtype]
            if len(same) != 1:
                raise O.Unsupported(f"cannot tell which tensor of the call is the exported "
                                    f"{type(m).__name__}'s input `{ph.target}` ({len(same)} of its shape)")
            out.append(same[0])
        return out
    sig = inspect.signature(type(m).forward)
    try:
        b = sig.bind(m, *args, **kwargs)
    except TypeError as e:
        raise O.Unsupported(f"the call does not match {type(m).__name__}.forward ({e})") from None
    varkw = next((b.arguments.get(p.name, {}) for p in sig.parameters.values() if p.kind == p.VAR_KEYWORD), {})
    out = []
    for name in traced.input_names:
        if name.startswith("*"):
            out.extend(b.arguments.get(name[1:], ()))
        elif name in b.arguments:
            out.append(b.arguments[name])
        else:
            out.append(varkw.get(name))
    return out


def _renumber(src: str, code: Code) -> str:
    ids = [int(k) for k in re.findall("\x00(\\d+)\x00", src)]
    if not ids:
        return src
    lo = min(ids)
    vals = {k: code.lits[k] for k in ids}
    order = sorted(ids, key=lambda k: src.index(f"\x00{k}\x00"))
    for new, old in zip(sorted(ids), order):
        code.lits[new] = vals[old]
    mapping = {old: new for new, old in zip(sorted(ids), order)}
    del lo
    return re.sub("\x00(\\d+)\x00", lambda mm: f"\x00{mapping[int(mm.group(1))]}\x00", src)


_getitem_fn = __import__("operator").getitem
_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
          nn.Upsample)


def keyword(name: str) -> bool:
    import keyword as kw
    return kw.iskeyword(name)


def _base(src: str) -> str:
    m = re.match(r"\w+", src)
    return m.group(0) if m else "x"


def _cheap(src: str) -> bool:
    return len(src) < 40


def _describe(n) -> str:
    if n.op == "call_method":
        return f"Tensor.{n.target}"
    if n.op == "call_module":
        return f"self.{n.target}"
    t = n.target
    return f"{getattr(t, '__module__', '') or ''}.{getattr(t, '__qualname__', str(t))}".lstrip(".")


def _map_values(x, fn):
    if isinstance(x, V):
        return fn(x)
    if isinstance(x, tuple) and not hasattr(x, "_fields"):
        return tuple(_map_values(v, fn) for v in x)
    if isinstance(x, list):
        return [_map_values(v, fn) for v in x]
    if isinstance(x, dict):
        return {k: _map_values(v, fn) for k, v in x.items()}
    if isinstance(x, slice):
        return slice(_map_values(x.start, fn), _map_values(x.stop, fn), _map_values(x.step, fn))
    return x


def _flat_values(x):
    if isinstance(x, V):
        yield x
    elif isinstance(x, (tuple, list)):
        for v in x:
            yield from _flat_values(v)
    elif isinstance(x, dict):
        for v in x.values():
            yield from _flat_values(v)
    elif isinstance(x, slice):
        yield from _flat_values((x.start, x.stop, x.step))


def _dim_out_cl(e, rec, ins, val, src) -> bool:
    if rec.name in O.CHANNELS_LAST_OUT:  # they take their input channels-last (e.cl), whatever it was
        return True
    cl_ins = [x for x in ins if x.cl]
    if not cl_ins:
        return False
    r_in = e.rank(cl_ins[0])
    if val.dim() == r_in:
        return True
    return False


def _live_nodes(g) -> set:
    out = next(n for n in g.nodes if n.op == "output")
    live, stack = set(), [out]
    while stack:
        n = stack.pop()
        if n in live:
            continue
        live.add(n)
        stack.extend(n.all_input_nodes)
    return live


def _layer_source(m, kind):
    if kind.flax_source is None:
        raise O.Unsupported(f"layer kind {kind.name!r} has no flax_source")
    src, notes = kind.flax_source(m)
    frozen = [p for p, v in m.named_parameters(recurse=False) if not v.requires_grad]
    if frozen:
        names = {a.torch: a.flax for a in kind.arrays}
        if any(p not in names for p in frozen):
            raise O.Unsupported(f"{type(m).__name__} with frozen parameters {frozen} of a kind converted whole")
        src = f"frozen({src}, {', '.join(repr(names[p]) for p in frozen)})"
        notes = [*notes, f"torch requires_grad=False on {', '.join(frozen)}: plain nnx.Variables, not nnx.Params, "
                         f"so that nothing training the Params moves them"]
    return src, notes


def _check_forward(m, kind, args):
    """A subclass of a layer's torch class whose forward computes something else on the example (a
    channels-first LayerNorm, a positional embedding with an offset) is not that layer."""
    base = next((c for c in kind.torch if isinstance(m, c)), None)
    if base is None or type(m).forward is base.forward:
        return
    vals = [a.val if isinstance(a, V) else a for a in args]
    try:
        with torch.no_grad():
            same = torch.equal(base.forward(m, *vals), m(*vals))
    except Exception:  # noqa: BLE001 — it does not even take the same inputs
        same = False
    if not same:
        raise O.Unsupported(f"{type(m).__name__} subclasses {base.__name__} but its forward computes something "
                            f"else: the {kind.name} kind's Flax layer would compute {base.__name__}'s")


def _fn_of(m) -> str:
    """A parameterless layer inside an nnx.Sequential / nnx.List that the forward never called."""
    rec = O.lookup("call_module", m)
    if isinstance(m, nn.ReLU):
        return "jax.nn.relu"
    if rec is None:
        raise O.Unsupported(f"{type(m).__name__} has no entry in parity/port/ops.py")
    raise O.Unsupported(f"{type(m).__name__} inside a container the forward never called")


def _seq_vals(self, seq):
    cache = getattr(self, "_seq_cache", None)
    if cache is None:
        cache = self._seq_cache = {}
    if id(seq) not in cache:
        x = self.node.args[0].meta.get("val")
        vals = [x]
        with torch.no_grad():
            for c in seq:
                x = c(x)
                vals.append(x)
        cache[id(seq)] = vals
    return cache[id(seq)]


Body._seq_vals = _seq_vals


# ---------------------------------------------------------------- classes from instances
def assemble(port: Port, root_path: str = "") -> tuple[str, str, list[str], str]:
    """Group the instances' code into classes and write the file: (source, root class, classes, build)."""
    codes = port.codes
    resolved: dict[str, str] = {}  # instance path → construction expression (template, with the parent's slots)
    classes: list[tuple[str, str, Code]] = []  # (class name, body, representative)
    class_of: dict[str, tuple[str, list]] = {}  # path → (class name, [(param, lit index)])
    names_used: dict[str, int] = {}
    pending = dict(codes)
    rounds = 0
    while pending and rounds < 1000:
        rounds += 1
        ready = [p for p, c in pending.items() if all(ch in class_of or ch not in codes for ch in c.children)]
        if not ready:
            break
        by_cls: dict = {}
        for p in ready:
            by_cls.setdefault(pending[p].torch_cls, []).append(p)
        # a class is grouped when all of its pending instances are ready
        for cls, paths in by_cls.items():
            if any(c.torch_cls is cls and p not in paths for p, c in pending.items()):
                continue
            for p in paths:
                _resolve_children(codes[p], class_of, codes)
            groups: list[list[str]] = []
            for p in sorted(paths, key=lambda p: (p.count("."), p)):
                for g in groups:
                    if codes[g[0]].template() == codes[p].template():
                        g.append(p)
                        break
                else:
                    groups.append([p])
            for gi, g in enumerate(groups):
                base = cls.__name__
                k = names_used.get(base, 0) + 1
                names_used[base] = k
                cname = base if k == 1 else f"{base}{k}"
                why = None
                if k > 1:
                    why = _why_differ(codes[groups[0][0]], codes[g[0]])
                body, params = _class_source(cname, [codes[p] for p in g], why)
                classes.append((cname, body, codes[g[0]]))
                for p in g:
                    class_of[p] = (cname, [(pn, codes[p].lits[k_][0]) for pn, k_ in params])
            for p in paths:
                pending.pop(p)
    for p in pending:
        port.problems.append(Problem(codes[p].path, f"class of `{p}`", "could not be ordered"))
    root = class_of[root_path][0]
    order = _definition_order(classes, root)
    helpers = set().union(*(c.helpers for _, _, c in classes)) if classes else set()
    uses_math = any(c.uses_math for _, _, c in classes)
    bodies = "\n\n".join(body for _, body, _ in order)
    del resolved
    return bodies, root, [c for c, _, _ in order], helpers, uses_math


def _resolve_children(code: Code, class_of, codes):
    """Child markers → `ChildClass(param=<slot>, ..., rngs=rngs)` (slots in this instance's code)."""
    def sub(m):
        path = code.children[int(m.group(1))]
        cname, params = class_of[path]
        args = []
        for pn, val in params:
            args.append(f"{pn}=\x00{len(code.lits)}\x00")
            code.lits.append((val, f"{path.rsplit('.', 1)[-1]}_{pn}" if not path.rsplit('.', 1)[-1].isdigit()
                              else pn, False))
        return f"{cname}({', '.join(args + ['rngs=rngs'])})"
    code.init = [re.sub("\x01(\\d+)\x01", sub, line) for line in code.init]


def _why_differ(a: Code, b: Code) -> str:
    if a.in_cl != b.in_cl:
        return "its inputs arrive in another layout (channels-last or not)"
    la, lb = a.template().splitlines(), b.template().splitlines()
    for x, y in zip(la, lb):
        if x != y:
            return "its traced code differs: " + _plain(y, b)[:80]
    return "its traced code differs in length"


def _plain(line: str, code: Code) -> str:
    return re.sub("\x00(\\d+)\x00", lambda m: code.lits[int(m.group(1))][0], line)


def _class_source(cname: str, group: list[Code], why: str | None):
    rep = group[0]
    n = len(rep.lits)
    differ = [k for k in range(n) if len({c.lits[k][0] for c in group}) > 1]
    params, taken = [], set()
    pname = {}
    for k in differ:
        hint = re.sub(r"\W", "_", rep.lits[k][1]).strip("_") or "value"
        if hint[0].isdigit():
            hint = "p_" + hint
        name, j = hint, 2
        while name in taken or name in _RESERVED:
            name, j = f"{hint}_{j}", j + 1
        taken.add(name)
        pname[k] = name
        params.append((name, k))

    def fill(line: str, in_init: bool) -> str:
        def sub(m):
            k = int(m.group(1))
            if k in pname:
                return pname[k] if in_init else f"self.{pname[k]}"
            return rep.lits[k][0]
        return re.sub("\x00(\\d+)\x00", sub, line)

    lines = []
    doc = f"Port of torch `{class_name(rep.torch_cls)}` ({G.source_of(rep.torch_cls)})"
    if rep.tracer == "export":
        doc += "; traced with torch.export: shapes are specialised to the example's"
    lines.append(f"class {cname}(nnx.Module):")
    if why:
        lines.append(f"    # a separate class for {rep.torch_cls.__name__}: {why}")
    lines.append(f'    """{doc}."""')
    lines.append("")
    sig = "".join(f"{p}, " for p, _ in params)
    lines.append(f"    def __init__(self, {sig}*, rngs: nnx.Rngs):")
    body_init = []
    for p, k in params:
        if any(f"\x00{k}\x00" in ln for ln in rep.call):
            body_init.append(f"self.{p} = {p}")
    body_init += [_list_comprehension(fill(ln, True)) for ln in rep.init]
    if not body_init:
        body_init = ["del rngs  # no layers of its own"]
    lines += [f"        {ln}" for ln in body_init]
    lines.append("")
    sig = ", ".join(["self"] + rep.signature)
    lines.append(f"    def __call__({sig}):")
    call = [fill(ln, False) for ln in rep.call] or ["raise NotImplementedError('no forward')"]
    for ln in call:
        lines.append(f"        {ln}" if ln else "")
    return "\n".join(lines), params


def _list_comprehension(line: str) -> str:
    """`self.x = nnx.List([A(...), A(...)])` with equal elements → a list comprehension."""
    if "nnx.List([" not in line:
        return line
    try:
        tree = ast.parse(line)
    except SyntaxError:
        return line
    stmt = tree.body[0]
    val = getattr(stmt, "value", None)
    if not (isinstance(val, ast.Call) and val.args and isinstance(val.args[0], ast.List)):
        return line
    elts = val.args[0].elts
    if len(elts) < 2 or len({ast.dump(e) for e in elts}) != 1:
        return line
    target = ast.unparse(stmt.targets[0])
    return f"{target} = nnx.List([{ast.unparse(elts[0])} for _ in range({len(elts)})])"


def _definition_order(classes, root):
    """Children before the classes that build them; the root last."""
    by_name = {c: (c, b, code) for c, b, code in classes}
    out, seen = [], set()

    def visit(name):
        if name in seen:
            return
        seen.add(name)
        _, body, _ = by_name[name]
        for other in by_name:
            if other != name and re.search(rf"\b{re.escape(other)}\(", body.split("def __call__")[0]):
                visit(other)
        out.append(by_name[name])
    for c, _, _ in classes:
        if c != root:
            visit(c)
    visit(root)
    return out


def file_source(bodies: str, helpers: set, uses_math: bool, doc_lines: list[str]) -> str:
    helper_src = "\n\n\n".join(HELPERS[h].strip() for h in sorted(helpers))
    text = bodies + "\n" + helper_src
    third = []
    if re.search(r"\bjax\.", text):
        third.append("import jax")
    if re.search(r"\bjnp\.", text):
        third.append("import jax.numpy as jnp")
    third.append("from flax import nnx")
    imports = "\n".join(third)
    if uses_math or re.search(r"\bmath\.", text):
        imports = "import math\n\n" + imports
    doc = '"""' + "\n".join(doc_lines).replace('"""', "'''") + '\n"""'
    parts = [doc, imports]
    if helper_src:
        parts.append(helper_src)
    parts.append(bodies)
    src = "\n\n\n".join(p.strip("\n") for p in parts) + "\n"
    return src


def format_source(src: str) -> str:
    """`ruff format` where ruff is installed (the source is valid and readable without it)."""
    try:
        from ruff.__main__ import find_ruff_bin
        exe = find_ruff_bin()
    except Exception:  # noqa: BLE001 — ruff is optional
        return src
    try:
        res = subprocess.run([exe, "format", "--isolated", "-"], input=src, capture_output=True, text=True,
                             timeout=60)
    except (OSError, subprocess.SubprocessError):
        return src
    return res.stdout if res.returncode == 0 and res.stdout else src


def class_name(cls) -> str:
    """`module.Class`; a class from a file the comparer loaded by path (its module is named
    `_parity_user_<file>_<hash>`) is named by its class alone, the file being given beside it."""
    module = cls.__module__ or ""
    return cls.__qualname__ if module.startswith("_parity_user_") else f"{module}.{cls.__qualname__}"


__all__ = ["Problem", "Port", "class_name", "assemble", "file_source", "format_source", "HELPERS", "sys"]
