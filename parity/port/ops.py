"""The mapping table of `parity port`: torch functions, tensor methods, operators and parameterless
torch.nn layers → jnp / jax.nn / lax source computing what TORCH computes (its defaults, not JAX's:
`F.gelu` is the exact erf form, `torch.var` is unbiased, `softmax` takes the axis it is given).

One `Op` record per operation, as the layer kinds are records: `targets` (the callables, method names
as "method:view", torch.nn classes, or aten overload names as "aten:linear"), `emit(e, a)` writing the
expression (`e`: the emitter of parity/port/emit.py, `a`: the call's arguments by torch's names), and
`layout`, saying what the op does with channels-last values (a torch (N, C, *spatial) tensor held
(N, *spatial, C)): "any" (elementwise: kept channels-last where every full-rank operand is), "dim" (the
emitter maps its own dim arguments), "cf" (inputs are put back in torch's order first; the default).
An operation without a record is a problem of the port (parity/port/generate.py reports it).
"""
from __future__ import annotations

import builtins
import math
import operator
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from parity.port import resample as R


class Unsupported(Exception):
    """An op whose arguments this table cannot port (the message says why)."""


@dataclass(frozen=True)
class Op:
    name: str
    targets: tuple
    emit: Callable  # (emitter, Args) -> source expression
    layout: str = "cf"  # "any" | "dim" | "cf"
    inline: bool = False  # an expression cheap enough to write where it is used (shapes, dtypes)


class Args:
    """A call's arguments, read by position or by torch's keyword name."""

    def __init__(self, args, kwargs, node=None):
        self.args, self.kwargs, self.node = list(args), dict(kwargs), node

    def __call__(self, i, name, default=None):
        if i is not None and i < len(self.args):
            return self.args[i]
        return self.kwargs.get(name, default)

    def has(self, i, name):
        return (i is not None and i < len(self.args)) or name in self.kwargs

    def rest(self, i):
        return self.args[i:]


_TABLE: dict = {}


def op(name, *targets, layout="cf", inline=False):
    def deco(fn):
        rec = Op(name, targets, fn, layout, inline)
        for t in targets:
            _TABLE[t] = rec
        return fn
    return deco


def lookup(kind: str, target) -> Op | None:
    """The record for an fx node's target: call_function (the callable), call_method (its name),
    call_module (the torch.nn layer)."""
    if kind == "call_method":
        return _TABLE.get(f"method:{target}")
    if kind == "call_module":
        for cls in type(target).__mro__:
            if cls in _TABLE:
                return _TABLE[cls]
        return None
    if kind == "aten":
        return _TABLE.get(f"aten:{target}")
    if isinstance(target, torch._ops.OpOverload):  # torch.export's ATen ops, by their packet name
        return _TABLE.get(f"aten:{target.overloadpacket.__name__}")
    try:
        return _TABLE.get(target)
    except TypeError:
        return None


def mapped() -> list[str]:
    """Every op the table maps, by name (for reports)."""
    return sorted({rec.name for rec in _TABLE.values()})


def _m(*names):
    return tuple(f"method:{n}" for n in names)


# ---------------------------------------------------------------- operators (elementwise)
_BINARY = {operator.add: "+", operator.sub: "-", operator.mul: "*", operator.truediv: "/",
           operator.floordiv: "//", operator.mod: "%", operator.pow: "**", operator.and_: "&",
           operator.or_: "|", operator.xor: "^", operator.eq: "==", operator.ne: "!=", operator.lt: "<",
           operator.le: "<=", operator.gt: ">", operator.ge: ">=", operator.iadd: "+", operator.isub: "-",
           operator.imul: "*", operator.itruediv: "/"}


def _binary(sym):
    def emit(e, a):
        return f"{e.r(a(0, 'input'), paren=True)} {sym} {e.r(a(1, 'other'), paren=True)}"
    return emit


for _f, _s in _BINARY.items():
    _TABLE[_f] = Op(f"operator {_s}", (_f,), _binary(_s), "any")
for _name, _s in (("add", "+"), ("sub", "-"), ("mul", "*"), ("div", "/"), ("eq", "=="), ("ne", "!="),
                  ("lt", "<"), ("le", "<="), ("gt", ">"), ("ge", ">=")):
    def _arith(e, a, _s=_s, _name=_name):
        alpha = a(2, "alpha", 1)
        other = a(1, "other")
        if alpha != 1:
            return f"{e.r(a(0, 'input'), paren=True)} {_s} {e.r(alpha)} * {e.r(other, paren=True)}"
        if _name == "div" and a(None, "rounding_mode") is not None:
            mode = a(None, "rounding_mode")
            fn = "jnp.floor_divide" if mode == "floor" else "jnp.trunc"
            if mode == "floor":
                return f"jnp.floor_divide({e.r(a(0, 'input'))}, {e.r(other)})"
            return f"{fn}({e.r(a(0, 'input'))} / {e.r(other, paren=True)})"
        return f"{e.r(a(0, 'input'), paren=True)} {_s} {e.r(other, paren=True)}"
    rec = Op(f"torch.{_name}", (getattr(torch, _name), f"method:{_name}", f"method:__{_name}__"), _arith, "any")
    for t in rec.targets:
        _TABLE[t] = rec
_TABLE[torch.true_divide] = _TABLE[torch.div]
_TABLE["method:truediv"] = _TABLE[torch.div]


@op("neg", operator.neg, torch.neg, *_m("neg"), layout="any")
def _neg(e, a):
    return f"-{e.r(a(0, 'input'), paren=True)}"


@op("invert", operator.invert, torch.logical_not, torch.bitwise_not, *_m("logical_not", "bitwise_not"), layout="any")
def _invert(e, a):
    x = a(0, "input")
    if e.dtype_of(x) == torch.bool:
        return f"~{e.r(x, paren=True)}"
    return f"jnp.logical_not({e.r(x)})" if e.node_target_name() == "logical_not" else f"~{e.r(x, paren=True)}"


@op("matmul", operator.matmul, torch.matmul, torch.bmm, torch.mm, *_m("matmul", "bmm", "mm"))
def _matmul(e, a):
    return f"{e.r(a(0, 'input'), paren=True)} @ {e.r(a(1, 'other'), paren=True)}"


@op("pow", torch.pow, *_m("pow"), layout="any")
def _pow(e, a):
    return f"{e.r(a(0, 'input'), paren=True)} ** {e.r(a(1, 'exponent'), paren=True)}"


def _unary(name, fmt, *targets):
    def emit(e, a):
        return fmt.format(x=e.r(a(0, "input")))
    rec = Op(name, targets, emit, "any")
    for t in targets:
        _TABLE[t] = rec


_unary("exp", "jnp.exp({x})", torch.exp, *_m("exp"))
_unary("log", "jnp.log({x})", torch.log, *_m("log"))
_unary("sqrt", "jnp.sqrt({x})", torch.sqrt, *_m("sqrt"))
_unary("rsqrt", "jax.lax.rsqrt({x})", torch.rsqrt, *_m("rsqrt"))
_unary("abs", "jnp.abs({x})", torch.abs, *_m("abs"), builtins.abs)
_unary("tanh", "jnp.tanh({x})", torch.tanh, *_m("tanh"), F.tanh, nn.Tanh)
_unary("sigmoid", "jax.nn.sigmoid({x})", torch.sigmoid, *_m("sigmoid"), F.sigmoid, nn.Sigmoid)
_unary("sin", "jnp.sin({x})", torch.sin, *_m("sin"))
_unary("cos", "jnp.cos({x})", torch.cos, *_m("cos"))
_unary("erf", "jax.lax.erf({x})", torch.erf, *_m("erf"))
_unary("relu", "jax.nn.relu({x})", torch.relu, F.relu, *_m("relu"), nn.ReLU)
_unary("relu6", "jax.nn.relu6({x})", F.relu6, nn.ReLU6)
_unary("silu", "jax.nn.silu({x})", F.silu, nn.SiLU)
_unary("mish", "{x} * jnp.tanh(jax.nn.softplus({x}))", F.mish, nn.Mish)
_unary("hardswish", "jax.nn.hard_swish({x})", F.hardswish, nn.Hardswish)
_unary("hardsigmoid", "jax.nn.hard_sigmoid({x})", F.hardsigmoid, nn.Hardsigmoid)
_unary("identity", "{x}", nn.Identity, *_m("contiguous", "clone"), torch.clone)
_unary("floor", "jnp.floor({x})", torch.floor, *_m("floor"))
_unary("ceil", "jnp.ceil({x})", torch.ceil, *_m("ceil"))
_unary("detach", "jax.lax.stop_gradient({x})", *_m("detach"))


@op("math.sqrt", math.sqrt)
def _math_sqrt(e, a):
    return f"math.sqrt({e.r(a(0, 'x'))})"


@op("float()", builtins.float)
def _pyfloat(e, a):
    return f"float({e.r(a(0, 'x'))})"


@op("gelu", F.gelu, nn.GELU, layout="any")
def _gelu(e, a):
    approx = a(1, "approximate", "none")
    if e.module is not None:
        approx = e.module.approximate
    e.comment("torch's GELU is the exact erf form unless approximate='tanh'; jax.nn.gelu's default is tanh")
    return f"jax.nn.gelu({e.r(a(0, 'input'))}, approximate={approx == 'tanh'})"


@op("leaky_relu", F.leaky_relu, nn.LeakyReLU, layout="any")
def _leaky(e, a):
    slope = e.module.negative_slope if e.module is not None else a(1, "negative_slope", 0.01)
    return f"jax.nn.leaky_relu({e.r(a(0, 'input'))}, negative_slope={slope!r})"


@op("elu", F.elu, nn.ELU, layout="any")
def _elu(e, a):
    alpha = e.module.alpha if e.module is not None else a(1, "alpha", 1.0)
    return f"jax.nn.elu({e.r(a(0, 'input'))}, alpha={alpha!r})"


@op("softplus", F.softplus, nn.Softplus, layout="any")
def _softplus(e, a):
    beta = e.module.beta if e.module is not None else a(1, "beta", 1.0)
    thr = e.module.threshold if e.module is not None else a(2, "threshold", 20.0)
    x = e.r(a(0, "input"), paren=True)
    return f"jnp.where({x} * {beta!r} > {thr!r}, {x}, jax.nn.softplus({x} * {beta!r}) / {beta!r})"


@op("dropout", F.dropout, *_m("dropout"))
def _fdropout(e, a):
    if a(2, "training", True) and e.training_flag(a(2, "training", True)):
        raise Unsupported("functional dropout in training mode (write an nnx.Dropout layer)")
    e.comment("F.dropout with training=False: the identity")
    return e.r(a(0, "input"))


@op("clamp", torch.clamp, torch.clip, *_m("clamp", "clip"), layout="any")
def _clamp(e, a):
    lo, hi = a(1, "min"), a(2, "max")
    return f"jnp.clip({e.r(a(0, 'input'))}, {e.r(lo)}, {e.r(hi)})"


@op("where", torch.where, layout="any")
def _where(e, a):
    return f"jnp.where({e.r(a(0, 'condition'))}, {e.r(a(1, 'input'))}, {e.r(a(2, 'other'))})"


@op("masked_fill", *_m("masked_fill"), torch.masked_fill)
def _masked_fill(e, a):
    return f"jnp.where({e.r(a(1, 'mask'))}, {e.r(a(2, 'value'))}, {e.r(a(0, 'input'))})"


@op("tril", torch.tril, *_m("tril"))
def _tril(e, a):
    return f"jnp.tril({e.r(a(0, 'input'))}, {e.r(a(1, 'diagonal', 0))})"


@op("triu", torch.triu, *_m("triu"))
def _triu(e, a):
    return f"jnp.triu({e.r(a(0, 'input'))}, {e.r(a(1, 'diagonal', 0))})"


# ---------------------------------------------------------------- dtypes
@op("to", *_m("to", "type"))
def _to(e, a):
    x = a(0, "input")
    for v in a.rest(1) + [a(None, "dtype")]:
        if isinstance(e.val(v), torch.dtype):
            return f"{e.r(x, paren=True)}.astype({e.r(v)})"
        if e.is_value(v) and isinstance(e.val(v), torch.Tensor):
            return f"{e.r(x, paren=True)}.astype({e.r(v, paren=True)}.dtype)"
    return e.r(x)  # a device move: nothing to do


@op("type_as", *_m("type_as"))
def _type_as(e, a):
    return f"{e.r(a(0, 'input'), paren=True)}.astype({e.r(a(1, 'other'), paren=True)}.dtype)"


def _cast(dtype):
    def emit(e, a):
        return f"{e.r(a(0, 'input'), paren=True)}.astype({dtype})"
    return emit


for _n, _d in (("float", "jnp.float32"), ("double", "jnp.float64"), ("half", "jnp.float16"), ("long", "jnp.int64"),
               ("int", "jnp.int32"), ("bool", "jnp.bool_"), ("bfloat16", "jnp.bfloat16")):
    _TABLE[f"method:{_n}"] = Op(f"Tensor.{_n}()", (f"method:{_n}",), _cast(_d), "any")


# ---------------------------------------------------------------- shapes
@op("getattr", builtins.getattr, inline=True)
def _getattr(e, a):
    x, name = a(0, "obj"), a(1, "name")
    v = e.val(x)
    if isinstance(v, (torch.finfo, torch.iinfo)) and name in ("min", "max", "eps", "tiny", "bits"):
        return f"{e.r(x, paren=True)}.{name}"
    if hasattr(v, "keys") and not isinstance(v, torch.Tensor):  # a ModelOutput / dict: the port holds a tuple
        keys = list(v.keys())
        if name in keys:
            return f"{e.r(x, paren=True)}[{keys.index(name)}]"
        if getattr(v, name, 0) is None:  # a field left None: not in the tuple
            return "None"
    if name == "shape":
        return e.shape_src(x)
    if name == "dtype":
        return f"{e.r(x, paren=True)}.dtype"
    if name == "device":
        return "None"
    if name == "ndim":
        return f"{e.r(x, paren=True)}.ndim"
    if name == "T":
        return f"{e.r(e.cf(x), paren=True)}.T"
    if name == "mT":
        return f"jnp.swapaxes({e.r(e.cf(x))}, -2, -1)"
    raise Unsupported(f"attribute `{name}` of a tensor")


@op("addmm", torch.addmm, *_m("addmm"))
def _addmm(e, a):
    beta, alpha = a(None, "beta", 1), a(None, "alpha", 1)
    bias, x, w = a(0, "input"), a(1, "mat1"), a(2, "mat2")
    mm = f"{e.r(x, paren=True)} @ {e.r(w, paren=True)}"
    if alpha != 1:
        mm = f"{e.r(alpha)} * ({mm})"
    b = e.r(bias, paren=True) if beta == 1 else f"{e.r(beta)} * {e.r(bias, paren=True)}"
    return f"{b} + {mm}"


@op("gather", torch.gather, *_m("gather"))
def _gather(e, a):
    return f"jnp.take_along_axis({e.r(a(0, 'input'))}, {e.r(a(2, 'index'))}, axis={a(1, 'dim')})"


@op("diff", torch.diff, *_m("diff"))
def _diff(e, a):
    x, n, d = a(0, "input"), a(1, "n", 1), a(2, "dim", -1)
    pre, app = a(3, "prepend"), a(4, "append")
    extra = (f", prepend={e.r(pre)}" if pre is not None else "") + (f", append={e.r(app)}" if app is not None else "")
    return f"jnp.diff({e.r(x)}, n={n}, axis={d}{extra})"


@op("roll", torch.roll, *_m("roll"))
def _roll(e, a):
    x, shifts, dims = a(0, "input"), a(1, "shifts"), a(2, "dims")
    if dims is None or dims == ():  # torch rolls the flattened tensor, as jnp.roll without an axis
        return f"jnp.roll({e.r(x)}, {e.r(shifts)})"
    return f"jnp.roll({e.r(x)}, {e.r(shifts)}, axis={e.r(dims)})"


@op("to_tuple", *_m("to_tuple"))
def _to_tuple(e, a):
    return e.r(a(0, "self"))  # a ModelOutput is a tuple in the port already


@op("finfo", torch.finfo, inline=True)
def _finfo(e, a):
    return f"jnp.finfo({e.r(a(0, 'type'))})"


@op("iinfo", torch.iinfo, inline=True)
def _iinfo(e, a):
    return f"jnp.iinfo({e.r(a(0, 'type'))})"


@op("size", *_m("size"), inline=True)
def _size(e, a):
    x, d = a(0, "input"), a(1, "dim")
    if d is None:
        return e.shape_src(x)
    return f"{e.r(x, paren=True)}.shape[{e.axis(x, d)}]"


@op("dim", *_m("dim", "ndimension"), inline=True)
def _dim(e, a):
    return f"{e.r(a(0, 'input'), paren=True)}.ndim"


@op("numel", *_m("numel"), torch.numel, inline=True)
def _numel(e, a):
    return f"{e.r(a(0, 'input'), paren=True)}.size"


@op("view", *_m("view", "reshape"), torch.reshape)
def _view(e, a):
    x = a(0, "input")
    shape = a.rest(1)
    if len(shape) == 1 and isinstance(shape[0], (tuple, list, torch.Size)) or (
            len(shape) == 1 and e.is_value(shape[0]) and not isinstance(e.val(shape[0]), int)):
        shape = shape[0]
    if not shape:
        shape = a(None, "shape") or a(None, "size")
    if isinstance(e.val(x), torch.Tensor) and isinstance(shape, (tuple, list)) is False and e.is_value(shape):
        return f"{e.r(x, paren=True)}.reshape({e.r(shape)})"
    if len(shape) == 1 and isinstance(e.val(shape[0]), torch.dtype):
        raise Unsupported("view(dtype) reinterprets bits")
    return f"{e.r(x, paren=True)}.reshape({', '.join(e.r(s, lit=True) for s in shape)})"


@op("flatten", torch.flatten, *_m("flatten"), nn.Flatten)
def _flatten(e, a):
    x = a(0, "input")
    if e.module is not None:
        start, end = e.module.start_dim, e.module.end_dim
    else:
        start, end = a(1, "start_dim", 0), a(2, "end_dim", -1)
    r = e.rank(x)
    start, end = start % max(r, 1), end % max(r, 1)
    xs = e.r(x, paren=True)
    if r == 0:
        return f"{xs}.reshape(1)"
    dims = [f"{xs}.shape[{i}]" for i in range(start)] + ["-1"] + [f"{xs}.shape[{i}]" for i in range(end + 1, r)]
    return f"{xs}.reshape({', '.join(dims)})"


@op("permute", *_m("permute"), torch.permute)
def _permute(e, a):
    dims = a.rest(1)
    if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
        dims = dims[0]
    if not dims:
        dims = a(None, "dims")
    return f"jnp.transpose({e.r(a(0, 'input'))}, {tuple(dims)!r})"


@op("transpose", *_m("transpose"), torch.transpose)
def _transpose(e, a):
    return f"jnp.swapaxes({e.r(a(0, 'input'))}, {a(1, 'dim0')}, {a(2, 'dim1')})"


@op("t", *_m("t"), torch.t)
def _t(e, a):
    return f"{e.r(a(0, 'input'), paren=True)}.T"


@op("unsqueeze", *_m("unsqueeze"), torch.unsqueeze)
def _unsqueeze(e, a):
    return f"jnp.expand_dims({e.r(a(0, 'input'))}, {a(1, 'dim')})"


@op("squeeze", *_m("squeeze"), torch.squeeze)
def _squeeze(e, a):
    x, d = a(0, "input"), a(1, "dim")
    if d is None:
        return f"jnp.squeeze({e.r(x)})"
    dims = d if isinstance(d, (tuple, list)) else (d,)
    shape = e.val(x).shape
    keep = tuple(k % len(shape) for k in dims if shape[k] == 1)  # torch ignores dims that are not 1
    if not keep:
        return e.r(x)
    return f"jnp.squeeze({e.r(x)}, axis={keep if len(keep) > 1 else keep[0]})"


@op("expand", *_m("expand"))
def _expand(e, a):
    x = a(0, "input")
    sizes = a.rest(1)
    if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
        sizes = sizes[0]
    r, n = e.rank(x), len(sizes)
    xs = e.r(x, paren=True)
    out = []
    for i, s in enumerate(sizes):
        if not e.is_value(s) and s == -1:
            out.append(f"{xs}.shape[{i - (n - r)}]")
        else:
            out.append(e.r(s, lit=True))
    return f"jnp.broadcast_to({e.r(x)}, ({', '.join(out)}{',' if len(out) == 1 else ''}))"


@op("expand_as", *_m("expand_as"))
def _expand_as(e, a):
    return f"jnp.broadcast_to({e.r(a(0, 'input'))}, {e.r(a(1, 'other'), paren=True)}.shape)"


@op("repeat", *_m("repeat"))
def _repeat(e, a):
    reps = a.rest(1)
    if len(reps) == 1 and isinstance(reps[0], (tuple, list)):
        reps = reps[0]
    return f"jnp.tile({e.r(a(0, 'input'))}, ({', '.join(e.r(s, lit=True) for s in reps)},))"


# ---------------------------------------------------------------- joining and splitting
@op("cat", torch.cat, torch.concat, torch.concatenate, layout="dim")
def _cat(e, a):
    xs, d = a(0, "tensors"), a(1, "dim", 0)
    xs = e.same_layout(list(xs))
    return f"jnp.concatenate([{', '.join(e.r(x) for x in xs)}], axis={e.axis(xs[0], d)})"


@op("stack", torch.stack)
def _stack(e, a):
    return f"jnp.stack([{', '.join(e.r(x) for x in a(0, 'tensors'))}], axis={a(1, 'dim', 0)})"


def _split_points(size, sections):
    if isinstance(sections, int):
        return list(range(sections, size, sections))
    out, acc = [], 0
    for s in sections[:-1]:
        acc += s
        out.append(acc)
    return out


@op("split", torch.split, *_m("split"))
def _split(e, a):
    x, sections, d = a(0, "tensor"), a(1, "split_size_or_sections"), a(2, "dim", 0)
    size = e.val(x).shape[d]
    return f"jnp.split({e.r(x)}, {_split_points(size, sections)!r}, axis={d})"


@op("chunk", torch.chunk, *_m("chunk"))
def _chunk(e, a):
    x, chunks, d = a(0, "input"), a(1, "chunks"), a(2, "dim", 0)
    size = e.val(x).shape[d]
    step = -(-size // chunks)
    return f"jnp.split({e.r(x)}, {_split_points(size, step)!r}, axis={d})"


@op("unbind", torch.unbind, *_m("unbind"))
def _unbind(e, a):
    x, d = a(0, "input"), a(1, "dim", 0)
    n = e.val(x).shape[d]
    return f"[jnp.take({e.r(x)}, i, axis={d}) for i in range({n})]"


@op("getitem", operator.getitem, inline=False)
def _getitem(e, a):
    x, idx = a(0, "a"), a(1, "b")
    v = e.val(x)
    if hasattr(v, "keys") and not isinstance(v, torch.Tensor):  # a ModelOutput / dict: a tuple in the port
        keys = list(v.keys())
        if isinstance(idx, str) and idx in keys:
            return f"{e.r(x, paren=True)}[{keys.index(idx)}]"
        if isinstance(idx, int):
            return f"{e.r(x, paren=True)}[{idx}]"
    if not isinstance(v, torch.Tensor):  # a tuple, list or shape
        if isinstance(v, torch.Size) and isinstance(idx, int):
            sh = e.shape_of(x)
            if sh is not None:
                return f"{e.r(sh, paren=True)}.shape[{e.axis(sh, idx)}]"
        return f"{e.r(x, paren=True)}[{e.index(idx)}]"
    return f"{e.r(x, paren=True)}[{e.index(idx)}]"


# ---------------------------------------------------------------- reductions
def _reduce(fn, extra=""):
    def emit(e, a):
        x = a(0, "input")
        d = a(1, "dim")
        keep = a(2, "keepdim", False)
        if d is None:
            if keep:
                return f"{fn}({e.r(x)}, keepdims=True{extra})"
            return f"{fn}({e.r(x)}{extra})"
        dims = tuple(d) if isinstance(d, (tuple, list)) else (d,)
        axes = tuple(e.axis(x, k) for k in dims)
        ax = axes[0] if len(axes) == 1 and not isinstance(d, (tuple, list)) else axes
        return f"{fn}({e.r(x)}, axis={ax!r}{', keepdims=True' if keep else ''}{extra})"
    return emit


for _n, _fn in (("mean", "jnp.mean"), ("sum", "jnp.sum"), ("amax", "jnp.max"), ("amin", "jnp.min"),
                ("prod", "jnp.prod"), ("logsumexp", "jax.scipy.special.logsumexp"), ("all", "jnp.all"),
                ("any", "jnp.any")):
    if _n == "logsumexp":
        continue
    _TABLE[getattr(torch, _n)] = _TABLE[f"method:{_n}"] = Op(f"torch.{_n}", (getattr(torch, _n), f"method:{_n}"),
                                                              _reduce(_fn), "dim")


def _maxmin(fn, argfn):
    def emit(e, a):
        x, d = a(0, "input"), a(1, "dim")
        if e.is_value(d) or (d is not None and not isinstance(d, int)):
            return f"jnp.{'maximum' if fn == 'jnp.max' else 'minimum'}({e.r(x)}, {e.r(d)})"
        if d is None:
            return f"{fn}({e.r(x)})"
        keep = a(2, "keepdim", False)
        ax = e.axis(x, d)
        kd = ", keepdims=True" if keep else ""
        return f"({fn}({e.r(x)}, axis={ax}{kd}), {argfn}({e.r(x)}, axis={ax}{kd}))"
    return emit


_TABLE[torch.max] = _TABLE["method:max"] = Op("torch.max", (torch.max, "method:max"), _maxmin("jnp.max", "jnp.argmax"), "dim")
_TABLE[torch.min] = _TABLE["method:min"] = Op("torch.min", (torch.min, "method:min"), _maxmin("jnp.min", "jnp.argmin"), "dim")
_TABLE[torch.maximum] = Op("torch.maximum", (torch.maximum,), lambda e, a: f"jnp.maximum({e.r(a(0, 'input'))}, {e.r(a(1, 'other'))})", "any")
_TABLE[torch.minimum] = Op("torch.minimum", (torch.minimum,), lambda e, a: f"jnp.minimum({e.r(a(0, 'input'))}, {e.r(a(1, 'other'))})", "any")


@op("argmax", torch.argmax, *_m("argmax"), layout="dim")
def _argmax(e, a):
    x, d, keep = a(0, "input"), a(1, "dim"), a(2, "keepdim", False)
    if d is None:
        return f"jnp.argmax({e.r(e.cf(x))})"
    return f"jnp.argmax({e.r(x)}, axis={e.axis(x, d)}{', keepdims=True' if keep else ''})"


def _var(fn):
    def emit(e, a):
        x, d = a(0, "input"), a(1, "dim")
        corr = a(None, "correction")
        if corr is None:
            unbiased = a(2, "unbiased", True) if not isinstance(a(2, "unbiased", True), bool) or a.has(2, "unbiased") \
                else True
            corr = 1 if unbiased else 0
        keep = a(3, "keepdim", a(None, "keepdim", False))
        axis = ""
        if d is not None:
            dims = tuple(d) if isinstance(d, (tuple, list)) else (d,)
            axes = tuple(e.axis(x, k) for k in dims)
            axis = f", axis={axes[0] if len(axes) == 1 else axes!r}"
        e.comment(f"torch.{fn[4:]}: correction={corr} (torch's default is the unbiased estimate, jnp's ddof=0)")
        return f"{fn}({e.r(x)}{axis}, ddof={corr}{', keepdims=True' if keep else ''})"
    return emit


_TABLE[torch.var] = _TABLE["method:var"] = Op("torch.var", (torch.var, "method:var"), _var("jnp.var"), "dim")
_TABLE[torch.std] = _TABLE["method:std"] = Op("torch.std", (torch.std, "method:std"), _var("jnp.std"), "dim")


@op("cumsum", torch.cumsum, *_m("cumsum"), layout="dim")
def _cumsum(e, a):
    x = a(0, "input")
    return f"jnp.cumsum({e.r(x)}, axis={e.axis(x, a(1, 'dim'))})"


@op("norm", torch.norm, *_m("norm"), torch.linalg.vector_norm)
def _norm(e, a):
    x, p, d, keep = a(0, "input"), a(1, "p", 2), a(2, "dim"), a(3, "keepdim", False)
    if p not in (2, "fro", 2.0):
        raise Unsupported(f"norm p={p!r}")
    ax = "" if d is None else f", axis={tuple(d) if isinstance(d, (list, tuple)) else d}"
    return f"jnp.sqrt(jnp.sum(jnp.square({e.r(x)}){ax}{', keepdims=True' if keep else ''}))"


# ---------------------------------------------------------------- softmax and friends
def _softmax(fn):
    def emit(e, a):
        x = a(0, "input")
        if e.module is not None:
            d = e.module.dim
        else:
            d = a(1, "dim")
        if d is None:
            raise Unsupported("softmax without dim (torch's implicit dim is deprecated)")
        dt = a(None, "dtype")
        xs = e.r(x) if dt is None else f"{e.r(x, paren=True)}.astype({e.r(dt)})"
        return f"{fn}({xs}, axis={e.axis(x, d)})"
    return emit


_TABLE[torch.softmax] = _TABLE[F.softmax] = _TABLE["method:softmax"] = _TABLE[nn.Softmax] = Op(
    "softmax", (torch.softmax, F.softmax, "method:softmax", nn.Softmax), _softmax("jax.nn.softmax"), "dim")
_TABLE[torch.log_softmax] = _TABLE[F.log_softmax] = _TABLE["method:log_softmax"] = _TABLE[nn.LogSoftmax] = Op(
    "log_softmax", (torch.log_softmax, F.log_softmax, "method:log_softmax", nn.LogSoftmax),
    _softmax("jax.nn.log_softmax"), "dim")


# ---------------------------------------------------------------- creation
def _shape_args(e, a, start=0):
    size = a.rest(start)
    if len(size) == 1 and isinstance(size[0], (tuple, list, torch.Size)):
        size = list(size[0])
    if not size:
        size = a(None, "size") or ()
    return f"({', '.join(e.r(s, lit=True) for s in size)}{',' if len(size) == 1 else ''})"


def _dtype_of_out(e):
    v = e.node_val()
    return e.r(v.dtype) if isinstance(v, torch.Tensor) else "jnp.float32"


@op("ones", torch.ones)
def _ones(e, a):
    return f"jnp.ones({_shape_args(e, a)}, dtype={_dtype_of_out(e)})"


@op("zeros", torch.zeros)
def _zeros(e, a):
    return f"jnp.zeros({_shape_args(e, a)}, dtype={_dtype_of_out(e)})"


@op("empty", torch.empty)
def _empty(e, a):
    e.comment("torch.empty is uninitialised: zeros here")
    return f"jnp.zeros({_shape_args(e, a)}, dtype={_dtype_of_out(e)})"


@op("full", torch.full)
def _full(e, a):
    return f"jnp.full({e.r(a(0, 'size'), lit=True)}, {e.r(a(1, 'fill_value'))}, dtype={_dtype_of_out(e)})"


@op("arange", torch.arange)
def _arange(e, a):
    pos = [x for x in a.args]
    if "end" in a.kwargs:
        pos = pos + [a.kwargs["end"]] if "start" not in a.kwargs else [a.kwargs["start"], a.kwargs["end"]]
    return f"jnp.arange({', '.join(e.r(x) for x in pos)}, dtype={_dtype_of_out(e)})"


@op("tensor", torch.tensor, torch.as_tensor)
def _tensor(e, a):
    return f"jnp.asarray({e.r(a(0, 'data'))}, dtype={_dtype_of_out(e)})"


@op("new_zeros", *_m("new_zeros"))
def _new_zeros(e, a):
    return f"jnp.zeros({_shape_args(e, a, 1)}, dtype={_dtype_of_out(e)})"


@op("new_ones", *_m("new_ones"))
def _new_ones(e, a):
    return f"jnp.ones({_shape_args(e, a, 1)}, dtype={_dtype_of_out(e)})"


@op("zeros_like", torch.zeros_like, layout="any")
def _zeros_like(e, a):
    return f"jnp.zeros_like({e.r(a(0, 'input'))})"


@op("ones_like", torch.ones_like, layout="any")
def _ones_like(e, a):
    return f"jnp.ones_like({e.r(a(0, 'input'))})"


@op("full_like", torch.full_like, layout="any")
def _full_like(e, a):
    return f"jnp.full_like({e.r(a(0, 'input'))}, {e.r(a(1, 'fill_value'))})"


# ---------------------------------------------------------------- functional layers
@op("F.linear", F.linear)
def _flinear(e, a):
    x, w, b = a(0, "input"), a(1, "weight"), a(2, "bias")
    out = f"{e.r(x, paren=True)} @ {e.r(w, paren=True)}.T"
    return out if b is None else f"{out} + {e.r(b, paren=True)}"


@op("F.layer_norm", F.layer_norm)
def _flayer_norm(e, a):
    x, shape, w, b, eps = a(0, "input"), a(1, "normalized_shape"), a(2, "weight"), a(3, "bias"), a(4, "eps", 1e-5)
    e.helper("layer_norm")
    return f"layer_norm({e.r(x)}, {len(tuple(shape))}, {e.r(w)}, {e.r(b)}, {eps!r})"


@op("F.embedding", F.embedding)
def _fembedding(e, a):
    x, w, pad, max_norm = a(0, "input"), a(1, "weight"), a(2, "padding_idx"), a(3, "max_norm")
    if max_norm is not None:
        raise Unsupported("F.embedding max_norm= (torch renormalises the weight rows in place)")
    out = f"jnp.take({e.r(w)}, {e.r(x)}, axis=0)"
    if pad is None:
        return out
    pad = pad if pad >= 0 else e.val(w).shape[0] + pad
    # torch never updates the padding row: its gradient is zero
    return f"jnp.where(({e.r(x)} == {pad})[..., None], jax.lax.stop_gradient({out}), {out})"


@op("F.scaled_dot_product_attention", F.scaled_dot_product_attention)
def _sdpa(e, a):
    q, k, v = a(0, "query"), a(1, "key"), a(2, "value")
    mask, p, causal, scale = a(3, "attn_mask"), a(4, "dropout_p", 0.0), a(5, "is_causal", False), a(6, "scale")
    if p and not e.is_value(p) and p > 0 and e.training_flag(True):
        e.comment("dropout_p ignored: the port computes eval mode")
    e.helper("scaled_dot_product_attention")
    extra = ""
    if mask is not None:
        extra += f", mask={e.r(mask)}"
    if causal:
        extra += ", is_causal=True"
    if scale is not None:
        extra += f", scale={e.r(scale)}"
    if a(None, "enable_gqa", False):
        extra += ", enable_gqa=True"
    return f"scaled_dot_product_attention({e.r(q)}, {e.r(k)}, {e.r(v)}{extra})"


@op("F.pad", F.pad)
def _fpad(e, a):
    x, pad, mode, value = a(0, "input"), a(1, "pad"), a(2, "mode", "constant"), a(3, "value", None)
    r = e.rank(x)
    pad = list(pad)
    widths = [(0, 0)] * r
    for i in range(len(pad) // 2):
        widths[r - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    if any(lo < 0 or hi < 0 for lo, hi in widths):
        raise Unsupported("negative padding (cropping)")
    jmode = {"constant": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}.get(mode)
    if jmode is None:
        raise Unsupported(f"pad mode {mode!r}")
    extra = f", constant_values={e.r(value or 0)}" if jmode == "constant" and value else ""
    return f"jnp.pad({e.r(x)}, {tuple(widths)!r}{'' if jmode == 'constant' else f', mode={jmode!r}'}{extra})"


@op("F.normalize", F.normalize)
def _fnormalize(e, a):
    x, p, d, eps = a(0, "input"), a(1, "p", 2.0), a(2, "dim", 1), a(3, "eps", 1e-12)
    if p != 2:
        raise Unsupported(f"normalize p={p!r}")
    xs = e.r(x)
    return f"{xs} / jnp.maximum(jnp.sqrt(jnp.sum(jnp.square({xs}), axis={d}, keepdims=True)), {eps!r})"


# ---------------------------------------------------------------- parameterless layers (channels-last)
CHANNELS_LAST_OUT = ("max_pool", "avg_pool", "adaptive_avg_pool", "interpolate")  # output channels-last


def _pairs(v, n):
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * n


@op("max_pool", nn.MaxPool1d, nn.MaxPool2d, F.max_pool2d, layout="dim")
def _maxpool(e, a):
    m = e.module
    x = e.cl(a(0, "input"))
    nd = e.rank(x) - 2
    if m is not None:
        k, s, p, d, ceil = m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode
    else:
        k, s, p, d, ceil = a(1, "kernel_size"), a(2, "stride"), a(3, "padding", 0), a(4, "dilation", 1), \
            a(5, "ceil_mode", False)
    s = s if s else k
    if ceil or _pairs(d, nd) != (1,) * nd:
        raise Unsupported("max pooling with ceil_mode or dilation")
    pads = tuple((q, q) for q in _pairs(p, nd))
    e.comment("torch pads max pooling with -inf, as nnx.max_pool does")
    return (f"nnx.max_pool({e.r(x)}, window_shape={_pairs(k, nd)}, strides={_pairs(s, nd)}, "
            f"padding={pads})")


@op("avg_pool", nn.AvgPool1d, nn.AvgPool2d, F.avg_pool2d, layout="dim")
def _avgpool(e, a):
    m = e.module
    x = e.cl(a(0, "input"))
    nd = e.rank(x) - 2
    if m is not None:
        k, s, p, ceil, inc, div = m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad, \
            getattr(m, "divisor_override", None)
    else:
        k, s, p, ceil, inc, div = a(1, "kernel_size"), a(2, "stride"), a(3, "padding", 0), a(4, "ceil_mode", False), \
            a(5, "count_include_pad", True), a(6, "divisor_override")
    s = s if s else k
    # nnx.avg_pool(count_include_pad=False) divides by a pooled array of ones made without a dtype: with
    # float64 enabled (as the comparer runs) a float32 input comes out float64; our helper keeps x's dtype
    if ceil or div or (not inc and any(_pairs(p, nd))):
        e.helper("avg_pool")
        return R.avg_pool_call(e.r(x), _pairs(k, nd), _pairs(s, nd), _pairs(p, nd), ceil, inc, div)
    pads = tuple((q, q) for q in _pairs(p, nd))
    return (f"nnx.avg_pool({e.r(x)}, window_shape={_pairs(k, nd)}, strides={_pairs(s, nd)}, "
            f"padding={pads}, count_include_pad={bool(inc)})")


@op("adaptive_avg_pool", nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, F.adaptive_avg_pool2d, layout="dim")
def _adaptive(e, a):
    m = e.module
    x = e.cl(a(0, "input"))
    nd = e.rank(x) - 2
    out = _pairs(m.output_size if m is not None else a(1, "output_size"), nd)
    size = tuple(e.val(x).shape[2:])
    out = tuple(size[i] if o is None else o for i, o in enumerate(out))
    if any(n % o for n, o in zip(size, out)):
        raise Unsupported(f"adaptive pooling of {size} to {out} (not a whole number of windows)")
    xs = e.r(x)
    if all(o == 1 for o in out):
        return f"jnp.mean({xs}, axis={tuple(range(1, nd + 1))}, keepdims=True)"
    win = tuple(n // o for n, o in zip(size, out))
    return f"nnx.avg_pool({xs}, window_shape={win}, strides={win})"


@op("interpolate", F.interpolate, nn.Upsample, layout="dim")
def _interpolate(e, a):
    m = e.module
    x = e.cl(a(0, "input"))
    if m is not None:
        scale, mode, align, recompute = m.scale_factor, m.mode, m.align_corners, m.recompute_scale_factor
        antialias = False
    else:
        scale, mode, align, recompute, antialias = a(2, "scale_factor"), a(3, "mode", "nearest"), \
            a(4, "align_corners"), a(5, "recompute_scale_factor"), a(6, "antialias", False)
    in_size, out_size = tuple(e.val(x).shape[2:]), tuple(e.node_val().shape[2:])
    # torch's kernel is given the scale factors unless they only served to compute the size
    scales = None if scale is None or recompute else _pairs(scale, len(in_size))
    if antialias:
        raise Unsupported("interpolate with antialias=True")
    if mode in ("linear", "bilinear", "trilinear"):
        e.helper("interpolate_linear")
        return R.linear_call(e.r(x), out_size, align, scales)
    if mode not in ("nearest", "nearest-exact"):
        raise Unsupported(f"interpolate mode={mode!r} (nearest, nearest-exact and linear modes are mapped)")
    reps = R.nearest_repeats(in_size, out_size, scales) if mode == "nearest" else None
    if reps is None:
        e.helper("interpolate_nearest")
        return R.nearest_call(e.r(x), out_size, mode == "nearest-exact", scales)
    out = e.r(x)
    for i, r in enumerate(reps):
        if r != 1:
            out = f"jnp.repeat({out}, {r}, axis={i + 1})"
    return out


# ---------------------------------------------------------------- ATen ops (the torch.export fallback)
@op("aten.slice", "aten:slice")
def _aten_slice(e, a):
    x, d, start, end, step = a(0, "self"), a(1, "dim", 0), a(2, "start"), a(3, "end"), a(4, "step", 1)
    r = e.rank(x)
    idx = [":"] * (d % r)
    s0 = "" if start in (None, 0) else e.r(start)
    s1 = "" if end is None or (not e.is_value(end) and end >= 2 ** 62) else e.r(end)
    idx.append(f"{s0}:{s1}" + (f":{e.r(step)}" if step not in (None, 1) else ""))
    return f"{e.r(x, paren=True)}[{', '.join(idx)}]"


@op("aten.select", "aten:select")
def _aten_select(e, a):
    x, d, i = a(0, "self"), a(1, "dim"), a(2, "index")
    return f"jnp.take({e.r(x)}, {e.r(i)}, axis={d})"


@op("aten.embedding", "aten:embedding")
def _aten_embedding(e, a):
    return f"jnp.take({e.r(a(0, 'weight'))}, {e.r(a(1, 'indices'))}, axis=0)"


@op("aten.sym_size", "aten:sym_size", inline=True)
def _aten_sym_size(e, a):
    x = a(0, "self")
    return f"{e.r(x, paren=True)}.shape[{e.axis(x, a(1, 'dim'))}]"


@op("aten.dropout", "aten:dropout")
def _aten_dropout(e, a):
    if a(2, "train", False):
        raise Unsupported("dropout in training mode")
    return e.r(a(0, "input"))


@op("aten._softmax", "aten:_softmax", "aten:_log_softmax", layout="dim")
def _aten_softmax(e, a):
    x = a(0, "self")
    fn = "jax.nn.log_softmax" if "log" in e.node_target_name() else "jax.nn.softmax"
    return f"{fn}({e.r(x)}, axis={e.axis(x, a(1, 'dim'))})"


@op("aten.full", "aten:full")
def _aten_full(e, a):
    return f"jnp.full({e.r(tuple(a(0, 'size')))}, {e.r(a(1, 'fill_value'))}, dtype={_dtype_of_out(e)})"


@op("aten.scalar_tensor", "aten:scalar_tensor")
def _aten_scalar_tensor(e, a):
    return f"jnp.asarray({e.r(a(0, 's'))}, dtype={_dtype_of_out(e)})"


def _alias(name, torch_target):
    rec = _TABLE[torch_target]
    _TABLE[f"aten:{name}"] = rec


for _a, _t in (("add", torch.add), ("sub", torch.sub), ("mul", torch.mul), ("div", torch.div), ("neg", torch.neg),
               ("eq", torch.eq), ("ne", torch.ne), ("lt", torch.lt), ("le", torch.le), ("gt", torch.gt),
               ("ge", torch.ge), ("matmul", torch.matmul), ("mm", torch.mm), ("bmm", torch.bmm),
               ("pow", torch.pow), ("exp", torch.exp), ("log", torch.log), ("sqrt", torch.sqrt),
               ("rsqrt", torch.rsqrt), ("tanh", torch.tanh), ("sigmoid", torch.sigmoid), ("relu", torch.relu),
               ("silu", F.silu), ("gelu", F.gelu), ("abs", torch.abs), ("erf", torch.erf), ("sin", torch.sin),
               ("cos", torch.cos), ("clamp", torch.clamp), ("where", torch.where), ("tril", torch.tril),
               ("triu", torch.triu), ("masked_fill", torch.masked_fill), ("view", "method:view"),
               ("reshape", "method:reshape"), ("_unsafe_view", "method:view"), ("permute", "method:permute"),
               ("transpose", "method:transpose"), ("t", "method:t"), ("unsqueeze", "method:unsqueeze"),
               ("squeeze", "method:squeeze"), ("expand", "method:expand"), ("flatten", torch.flatten),
               ("contiguous", "method:contiguous"), ("clone", "method:clone"), ("alias", "method:clone"),
               ("lift_fresh_copy", "method:clone"), ("detach", "method:detach"), ("cat", torch.cat),
               ("stack", torch.stack), ("split", torch.split), ("split_with_sizes", torch.split),
               ("chunk", torch.chunk), ("mean", torch.mean), ("sum", torch.sum), ("amax", torch.amax),
               ("amin", torch.amin), ("var", torch.var), ("cumsum", torch.cumsum), ("softmax", torch.softmax),
               ("log_softmax", torch.log_softmax), ("linear", F.linear), ("layer_norm", F.layer_norm),
               ("scaled_dot_product_attention", F.scaled_dot_product_attention), ("arange", torch.arange),
               ("zeros", torch.zeros), ("ones", torch.ones), ("zeros_like", torch.zeros_like),
               ("ones_like", torch.ones_like), ("full_like", torch.full_like), ("to", "method:to"),
               ("_to_copy", "method:to"), ("type_as", "method:type_as"), ("logical_not", torch.logical_not),
               ("bitwise_not", torch.bitwise_not), ("gather", torch.gather), ("addmm", torch.addmm),
               ("floor", torch.floor), ("pad", F.pad), ("constant_pad_nd", F.pad), ("max", torch.max),
               ("min", torch.min), ("maximum", torch.maximum), ("minimum", torch.minimum),
               ("argmax", torch.argmax), ("leaky_relu", F.leaky_relu)):
    _alias(_a, _t)


__all__ = ["Op", "Args", "Unsupported", "lookup", "mapped", "op"]
