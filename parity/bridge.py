"""Moving NumPy data and parameters into each framework, and calling modules functionally."""
from __future__ import annotations

import functools

import jax
import ml_dtypes
import numpy as np
import torch
from flax import nnx

from parity.precision import jax_device, torch_device

BFLOAT16 = np.dtype(ml_dtypes.bfloat16)  # NumPy's bfloat16 (the one JAX uses)


def torch_tensor(a, device) -> torch.Tensor:
    """A torch tensor copied from a NumPy array. torch converts no NumPy bfloat16 array: those go
    through float32, which holds every bfloat16 value exactly."""
    a = np.asarray(a)
    if a.dtype == BFLOAT16:
        return torch.tensor(a.astype(np.float32), device=device).to(torch.bfloat16)
    return torch.tensor(a, device=device)


def to_jax(tree, device: str = "cpu"):
    """NumPy pytree → JAX arrays committed to `device` (dtypes kept exactly)."""
    dev = jax_device(device)
    return jax.tree.map(lambda a: jax.device_put(np.asarray(a), dev), tree)


def to_torch(tree: dict, device: str = "cpu", requires_grad: bool = False) -> dict:
    """Dict of NumPy arrays → dict of torch tensors on `device` (copies, never shares memory)."""
    dev = torch_device(device)
    out = {}
    for k, a in tree.items():
        t = torch_tensor(a, dev)
        out[k] = t.requires_grad_(requires_grad and t.is_floating_point())
    return out


def to_numpy(x):
    """A framework array (or tuple of them) → NumPy, on the host."""
    if isinstance(x, (tuple, list)):
        return tuple(to_numpy(v) for v in x)
    if isinstance(x, torch.Tensor):
        if x.dtype == torch.bfloat16:  # NumPy has no torch bfloat16: back through float32, exactly
            return x.detach().cpu().float().numpy().astype(BFLOAT16)
        return x.detach().cpu().numpy()
    return np.asarray(x)


@functools.lru_cache(maxsize=256)
def _flax_skeleton(cls, frozen_kwargs):
    abstract = nnx.eval_shape(lambda: cls(**dict(frozen_kwargs), rngs=nnx.Rngs(0)))
    return nnx.split(abstract)


def flax_module(cls, params: dict, **kwargs):
    """A Flax NNX module of class `cls` built from a (nested) pure dict of its state.

    Works inside `jax.jit`: the module's structure is traced once per (cls, kwargs) and cached.
    """
    graphdef, state = _flax_skeleton(cls, tuple(sorted(kwargs.items())))
    state = jax.tree.map(lambda x: x, state)  # a fresh copy to fill in
    nnx.replace_by_pure_dict(state, params)
    return nnx.merge(graphdef, state)


def torch_call(module: torch.nn.Module, params: dict, *args):
    """Call a torch module with the given parameter tensors (`torch.func.functional_call`)."""
    return torch.func.functional_call(module, params, args)
