"""Float64 proofs of models that compute in float32 on purpose.

Many real models upcast to float32 where they fear half precision: Hugging Face's RMSNorms
(`hidden_states.to(torch.float32)`), its attention (`softmax(..., dtype=torch.float32)`), rotary
embeddings (`inv_freq.float()`). The port writes the same casts (`x.astype(jnp.float32)`), as it must.
In a float64 comparison both sides then round to float32 at those points, and float64 can no longer
tell a wrong port from float32 rounding: Llama's port, exact in float32, shows 5e-8 in float64.

`float32_as_float64(module)` runs a float64 check with every such cast widened on both sides:
- torch: a TorchFunctionMode turns a dtype argument of float32 into float64 (`.to`, `.type`, the
  `dtype=` of any function), `.float()` into `.double()`, and makes float64 torch's default dtype
  (a factory call without dtype);
- the port: its module's `jnp` is replaced, for the duration, by a view of jax.numpy whose `float32`
  is float64 (the port's functions read `jnp` when they run, so a jit traced inside sees float64).
The function both compute is then the model's own with float32 read as float64: the same formula
at a precision that separates a porting error from rounding. The float32 comparison, the training
run and the timing run the model exactly as written; the proof reports the float64 comparison both
as written and widened, and how many casts were widened.
"""
from __future__ import annotations

import types
from contextlib import contextmanager

import jax.numpy as jnp
import torch
from torch.overrides import TorchFunctionMode

_AS_DOUBLE = {torch.Tensor.float: torch.Tensor.double}


class _TorchFloat32AsFloat64(TorchFunctionMode):
    """Every float32 dtype argument read as float64; `widened` counts the calls changed."""

    def __init__(self):
        super().__init__()
        self.widened = 0

    def __torch_function__(self, func, types_, args=(), kwargs=None):
        kwargs = kwargs or {}
        new_args = tuple(torch.float64 if a is torch.float32 else a for a in args)
        new_kwargs = {k: (torch.float64 if v is torch.float32 else v) for k, v in kwargs.items()}
        new_func = _AS_DOUBLE.get(func, func)
        if new_func is not func or any(a is not b for a, b in zip(new_args, args)) or \
                any(new_kwargs[k] is not kwargs[k] for k in kwargs):
            self.widened += 1
            func, args, kwargs = new_func, new_args, new_kwargs
        return func(*args, **kwargs)


class _JnpFloat32AsFloat64(types.ModuleType):
    """jax.numpy with `float32` read as float64."""

    def __getattr__(self, name):
        return jnp.float64 if name == "float32" else getattr(jnp, name)


@contextmanager
def float32_as_float64(port_module):
    """Within: torch and the port's module `port_module` (from parity.port.generate.load_generated)
    compute their float32 casts in float64. Yields the torch mode; its `widened` counts torch's casts."""
    uses_jnp = hasattr(port_module, "jnp")  # a port of layers only (no jnp call) has nothing to widen
    if uses_jnp and port_module.jnp is not jnp:
        raise ValueError(f"port_module: expected a generated port's module, whose `jnp` is jax.numpy; "
                         f"{getattr(port_module, '__name__', port_module)!r} has {port_module.jnp!r}")
    mode = _TorchFloat32AsFloat64()
    default = torch.get_default_dtype()
    if uses_jnp:
        port_module.jnp = _JnpFloat32AsFloat64("jax.numpy (float32 read as float64)")
    torch.set_default_dtype(torch.float64)
    try:
        with mode:
            yield mode
    finally:
        torch.set_default_dtype(default)
        if uses_jnp:
            port_module.jnp = jnp
