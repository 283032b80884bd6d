"""A module's forward reading a sub-module's parameter or buffer directly (`self.proj.weight.dtype`,
`self.bias_table.table[index]`): the torch graph's `get_attr` on a dotted path, written as a read of
the sub-module the port holds, in torch's layout.

* The sub-module is a class of the port (no layer kind): it holds the array under torch's name and in
  torch's layout, so the read is `self.child.name[...]`.
* The sub-module is a layer of a known kind (parity/porting/kinds.py): the Flax layer holds the array
  under its own name (`kernel`, `scale`, `embedding`) and maybe in another layout; the kind's `Array`
  record says which. Its layout change is found by converting a probe (the numbers 0, 1, 2, …) with
  the record's own `to_flax`: the identity, or a transpose, which the port undoes with `jnp.transpose`
  (exact). Where only the array's dtype is read, the layout does not matter and no transpose is written.
"""
from __future__ import annotations

import itertools

import numpy as np
import torch
from torch import nn

from parity.port import graph as G
from parity.port import ops as O

__all__ = ["sub_module_array"]


def sub_module_array(e, node, target: str, val) -> str:
    """Source reading `target` ('child.name', 'a.0.name') of the module being written, as torch holds
    it; statements it needs are emitted through `e` (the emitter of parity/port/emit.py)."""
    owner_path, leaf = target.rsplit(".", 1)
    try:
        owner = e.t.module.get_submodule(owner_path)
    except AttributeError as err:
        raise O.Unsupported(f"`{target}`: no sub-module `{owner_path}` ({err})") from None
    held = e._attr(owner_path)
    kind = G.kind_of(owner)
    if kind is None:
        if not isinstance(getattr(owner, leaf, None), torch.Tensor):
            raise O.Unsupported(f"`{target}` is no parameter or buffer of `{owner_path}`")
        return f"{held}.{leaf}[...]"  # a class of the port: torch's name and layout
    arr = next((a for a in kind.arrays if a.torch == leaf), None)
    if arr is None:
        raise O.Unsupported(f"`{target}`: the {kind.name} kind maps no array `{leaf}` one to one")
    src = f"{held}.{arr.flax}[...]"
    if _dtype_only(node):
        return src
    perm = _undo_perm(arr, owner, val)
    if perm is None:
        return src
    name = e.fresh(node.name)
    back = f"{src}.T" if perm == (1, 0) else f"jnp.transpose({src}, {perm})"
    e.emit(f"{name} = {back}", f"torch's `{target}` {tuple(val.shape)}: the Flax {kind.name} layer's "
                              f"`{arr.flax}` in torch's layout")
    return name


def _dtype_only(node) -> bool:
    """Whether every use of the array reads only its dtype (or device)."""
    users = list(node.users)
    return bool(users) and all(u.op == "call_function" and u.target is getattr and len(u.args) == 2
                               and u.args[1] in ("dtype", "device") for u in users)


def _undo_perm(arr, owner: nn.Module, val) -> tuple | None:
    """The axes permutation taking the Flax array back to torch's layout (None: the same layout)."""
    if not isinstance(val, torch.Tensor):
        raise O.Unsupported("a sub-module attribute that is no tensor")
    probe = np.arange(val.numel()).reshape(tuple(val.shape))
    held = np.asarray(arr.to_flax(probe, owner, None))
    if held.shape == probe.shape and np.array_equal(held, probe):
        return None
    if held.size == probe.size:
        for perm in itertools.permutations(range(held.ndim)):
            if held.ndim == probe.ndim and np.array_equal(np.transpose(held, perm), probe):
                return perm
    raise O.Unsupported(f"the Flax layer holds `{arr.torch}` as `{arr.flax}` in a layout that is no transpose "
                        f"of torch's")
