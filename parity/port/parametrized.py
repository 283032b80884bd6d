"""Parametrised torch modules in `parity port` (torch.nn.utils.parametrize: weight_norm, and any
parametrisation whose forward the tracer can follow).

A parametrised module (say `weight_norm(nn.Conv1d(...), dim=2)`) holds no `weight` parameter: its
trained parameters are the parametrisation's originals (`parametrizations.weight.original0`, g, and
`original1`, v), and `weight` is computed from them on every call. Such a module is no layer kind
(parity/porting/kinds.py: a kind's arrays are the layer's own), so the port traces into its forward:
the parametrisation's modules are traced inline (parity/port/graph.py), the weight is computed in the
port's `__call__` from the originals, and the layer's function runs as a function (F.conv1d here).
The originals are Flax parameters under torch's names (`self.parametrizations.weight.original0`,
nnx.Dicts), named in the port's weights mapping (parity/port/generate.py), so that the comparer and
the weights converter pair them and training updates g and v as torch's optimiser does.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from parity.port import ops as O

HELPERS = {
    "weight_norm": '''
def weight_norm(v, g, dim):
    """torch._weight_norm: v * (g / ||v||), the 2-norm over every axis of v but `dim` (over all of
    them when dim is -1, as torch.nn.utils.parametrizations.weight_norm(dim=None) asks)."""
    axes = tuple(range(v.ndim)) if dim == -1 else tuple(a for a in range(v.ndim) if a != dim % v.ndim)
    return v * (g / jnp.sqrt(jnp.sum(jnp.square(v), axis=axes, keepdims=True)))
''',
    "torch_conv": '''
def torch_conv(x, weight, bias, stride, padding, dilation, groups):
    """torch's F.conv1d / conv2d / conv3d in torch's layout ((N, C, *spatial) input, (O, C / groups,
    *kernel) weight); `padding` a tuple of ints (each side alike), "same" or "valid", as torch takes it."""
    n = weight.ndim - 2
    if padding == "valid":
        pad = [(0, 0)] * n
    elif padding == "same":  # torch puts the odd element of the padding on the right
        total = [d * (k - 1) for d, k in zip(dilation, weight.shape[2:])]
        pad = [(t // 2, t - t // 2) for t in total]
    else:
        pad = [(p, p) for p in padding]
    spatial = "DHW"[3 - n:]
    y = jax.lax.conv_general_dilated(
        x, weight, window_strides=stride, padding=pad, rhs_dilation=dilation, feature_group_count=groups,
        dimension_numbers=("NC" + spatial, "OI" + spatial, "NC" + spatial))
    if bias is not None:
        y = y + bias.reshape((1, -1) + (1,) * n)
    return y
''',
}


def is_parametrized(m: nn.Module) -> bool:
    return parametrize.is_parametrized(m)


def defining_class(cls: type) -> type:
    """The class whose source a parametrised module runs: torch.nn.utils.parametrize makes a subclass
    (ParametrizedConv1d) at run time, which has no source of its own."""
    if cls.__module__ == parametrize.__name__ and cls.__name__.startswith("Parametrized") and cls.__bases__:
        return cls.__bases__[0]
    return cls


def inside_parametrizations(root: nn.Module, m: nn.Module) -> bool:
    """`m` is one of the modules of `root`'s parametrisations (traced inline into root's forward)."""
    return is_parametrized(root) and any(m is sub for sub in root.parametrizations.modules())


def init_source(m: nn.Module, lit) -> list[str]:
    """The __init__ lines holding `m`'s parametrisations' parameters under torch's names
    (`lit(src, hint)` makes a shape a slot of the class)."""
    for tensor_name, plist in m.parametrizations.items():
        inner = [n for n, _ in plist.named_buffers(recurse=False)] + [
            f"{i}.{n}" for i, p in enumerate(plist) for n, _ in list(p.named_parameters()) + list(p.named_buffers())]
        if inner:
            raise O.Unsupported(f"the parametrisation of `{tensor_name}` holds arrays of its own "
                                f"({', '.join(inner)}); only its originals' parameters are ported")
    lines = ["# torch.nn.utils.parametrize: these parameters are trained; "
             + ", ".join(f"`{t}`" for t in m.parametrizations) + " is computed from them on every call"]
    per_tensor = []
    for tensor_name, plist in m.parametrizations.items():
        arrays = []
        for name, p in plist.named_parameters(recurse=False):
            shape = lit(repr(tuple(p.shape)), f"{tensor_name}_{name}_shape")
            arrays.append(f"{name}=nnx.Param(jnp.zeros({shape}, dtype=jnp.float32))")
        per_tensor.append(f"{tensor_name}=nnx.Dict({', '.join(arrays)})")
    lines.append(f"self.parametrizations = nnx.Dict({', '.join(per_tensor)})")
    return lines


def attr_source(target: str) -> str | None:
    """`parametrizations.weight.original0` → the port's expression reading it; None for other targets."""
    steps = target.split(".")
    if len(steps) != 3 or steps[0] != "parametrizations":
        return None
    return f"self.{target}[...]"


# ---------------------------------------------------------------- the ops a parametrised layer calls
@O.op("torch._weight_norm", torch._weight_norm)
def _weight_norm(e, a):
    v, g, dim = a(0, "v"), a(1, "g"), a(2, "dim", 0)
    e.helper("weight_norm")
    return f"weight_norm({e.r(v)}, {e.r(g)}, {dim!r})"


def _conv(n):
    def emit(e, a):
        x, w, b = a(0, "input"), a(1, "weight"), a(2, "bias")
        stride, padding, dilation, groups = (a(3, "stride", 1), a(4, "padding", 0), a(5, "dilation", 1),
                                             a(6, "groups", 1))

        for name, v in (("stride", stride), ("padding", padding), ("dilation", dilation), ("groups", groups)):
            if e.is_value(v):
                raise O.Unsupported(f"F.conv{n}d with a {name} computed at run time")
        if e.rank(x) != n + 2:
            raise O.Unsupported(f"F.conv{n}d on an unbatched input (rank {e.rank(x)})")

        def tup(v):
            return tuple(v) if isinstance(v, (tuple, list)) else (v,) * n
        pad = padding if isinstance(padding, str) else tup(padding)
        e.helper("torch_conv")
        bias = "None" if b is None else e.r(b)
        return (f"torch_conv({e.r(x)}, {e.r(w)}, {bias}, {tup(stride)!r}, {pad!r}, {tup(dilation)!r}, "
                f"{groups!r})")
    return emit


for _n, _f in ((1, F.conv1d), (2, F.conv2d), (3, F.conv3d)):
    O.op(f"F.conv{_n}d", _f)(_conv(_n))

__all__ = ["HELPERS", "attr_source", "defining_class", "init_source", "inside_parametrizations", "is_parametrized"]
