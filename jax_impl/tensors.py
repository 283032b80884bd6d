"""Tensor basics in JAX: creation, products, shape changes, NumPy interop (docs/concepts.md §1).

dtypes follow torch (shape_rules.dtypes): matmul and mm need one numeric dtype for both operands (no
bool), mul promotes as torch does, and a float64 NumPy input warns when x64 is off (docs/traps.md, trap 25).
"""
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from shape_rules.dtypes import check_dtype, check_same_dtype, result_type

from jax_impl.checks import check_x64, x64_checked


@partial(jax.jit, static_argnames=("shape", "dtype"))
def _randn(key, shape, dtype):
    return jax.random.normal(key, shape, dtype)


def randn(key, shape, dtype=jnp.float32):
    """Standard-normal samples drawn from an explicit PRNG key.

    JAX threads a key through every draw; torch uses a Generator. The streams differ (docs/traps.md, trap 17).
    """
    check_x64(dtype=dtype)
    return _randn(key, shape, dtype)


@partial(jax.jit, static_argnames=("shape", "dtype"))
def _zeros(shape, dtype):
    return jnp.zeros(shape, dtype)


@partial(jax.jit, static_argnames=("shape", "dtype"))
def _ones(shape, dtype):
    return jnp.ones(shape, dtype)


@partial(jax.jit, static_argnames=("n", "dtype"))
def _eye(n, dtype):
    return jnp.eye(n, dtype=dtype)


def zeros(shape, dtype=jnp.float32):
    """An array of zeros (`jnp.zeros`, jitted)."""
    check_x64(dtype=dtype)
    return _zeros(shape, dtype)


def ones(shape, dtype=jnp.float32):
    """An array of ones (`jnp.ones`, jitted)."""
    check_x64(dtype=dtype)
    return _ones(shape, dtype)


def eye(n, dtype=jnp.float32):
    """The n×n identity matrix (`jnp.eye`, jitted; NumPy calls it `identity`)."""
    check_x64(dtype=dtype)
    return _eye(n, dtype)


def _check_product(op, a, b):
    """torch's matmul/mm rule, at trace time: one numeric dtype for both operands (jnp would promote)."""
    check_dtype(op, "a", a.dtype.name)
    check_dtype(op, "b", b.dtype.name)
    check_same_dtype(op, "a", a.dtype.name, "b", b.dtype.name, "cast one of them (torch never mixes dtypes here)")


@x64_checked
@jax.jit
def matmul(a, b):
    """Matrix product with batch broadcasting, like `a @ b`; a and b share one numeric dtype, as in torch."""
    _check_product("matmul", a, b)
    return jnp.matmul(a, b)


@jax.jit
def _mm(a, b):
    _check_product("mm", a, b)
    return a @ b


@x64_checked
def mm(a, b):
    """Strict 2-D matrix product; other ranks are rejected.

    jnp has no `mm`; this checks ranks like `torch.mm` does, then calls a jitted product.
    """
    for name, t in (("a", a), ("b", b)):
        if jnp.ndim(t) != 2:
            raise ValueError(f"mm: {name} must be 2-D, got shape {tuple(jnp.shape(t))}")
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"mm: a of shape {tuple(a.shape)} and b of shape {tuple(b.shape)} "
                         f"cannot be multiplied ({a.shape[1]} != {b.shape[0]})")
    return _mm(a, b)


def _operand(x) -> tuple:
    """(dtype name, ndim, is a Python scalar) for torch's promotion rule; JAX marks a Python scalar
    (also once traced) as weakly typed."""
    t = jax.typeof(x)
    return t.dtype.name, t.ndim, bool(t.weak_type and t.ndim == 0)


@x64_checked
@jax.jit
def mul(a, b):
    """Elementwise (Hadamard) product with broadcasting, in torch's result dtype.

    torch ranks a 0-d array below a dimensioned one and reads a Python float as float32, so float16
    (3,) times a float32 0-d array stays float16; jnp would give float32 (float64 for int × 1.5 under x64).
    """
    dtype = result_type("mul", _operand(a), _operand(b))
    return jnp.asarray(a).astype(dtype) * jnp.asarray(b).astype(dtype)


@x64_checked
@partial(jax.jit, static_argnames=("shape",))
def reshape(x, shape):
    """Reshape; one dimension may be -1. Always a new immutable array (no views in JAX, docs/traps.md, trap 27)."""
    return jnp.reshape(x, shape)


@x64_checked
@jax.jit
def flatten_batch(x):
    """Keep the first axis and flatten the rest: torch's `x.view(x.shape[0], -1)`."""
    return jnp.reshape(x, (x.shape[0], -1))


@x64_checked
def from_numpy(a):
    """A JAX array holding a NumPy array's values; it never aliases writable NumPy memory.

    torch.from_numpy shares memory; JAX arrays are immutable, so later writes to `a` are not seen.
    """
    return jnp.asarray(a)


def to_numpy(x):
    """A NumPy view of a JAX array's values; it is read-only because JAX arrays are immutable."""
    return np.asarray(x)
