"""Tensor basics in JAX: creation, products, shape changes, NumPy interop (SEEDS.md §1)."""
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np


@partial(jax.jit, static_argnames=("shape", "dtype"))
def randn(key, shape, dtype=jnp.float32):
    """Standard-normal samples drawn from an explicit PRNG key.

    JAX threads a key through every draw; torch uses a Generator. The streams differ (trap 17).
    """
    return jax.random.normal(key, shape, dtype)


@partial(jax.jit, static_argnames=("shape", "dtype"))
def zeros(shape, dtype=jnp.float32):
    """An array of zeros."""
    return jnp.zeros(shape, dtype)


@partial(jax.jit, static_argnames=("shape", "dtype"))
def ones(shape, dtype=jnp.float32):
    """An array of ones."""
    return jnp.ones(shape, dtype)


@partial(jax.jit, static_argnames=("n", "dtype"))
def eye(n, dtype=jnp.float32):
    """The n×n identity matrix (NumPy calls it `identity`)."""
    return jnp.eye(n, dtype=dtype)


@jax.jit
def matmul(a, b):
    """Matrix product with batch broadcasting, like `a @ b`."""
    return jnp.matmul(a, b)


@jax.jit
def _mm(a, b):
    return a @ b


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


@jax.jit
def mul(a, b):
    """Elementwise (Hadamard) product with broadcasting."""
    return a * b


@partial(jax.jit, static_argnames=("shape",))
def reshape(x, shape):
    """Reshape; one dimension may be -1. Always a new immutable array (no views in JAX, trap 27)."""
    return jnp.reshape(x, shape)


@jax.jit
def flatten_batch(x):
    """Keep the first axis and flatten the rest: torch's `x.view(x.shape[0], -1)`."""
    return jnp.reshape(x, (x.shape[0], -1))


def from_numpy(a):
    """A JAX array holding a NumPy array's values; it never aliases writable NumPy memory.

    torch.from_numpy shares memory; JAX arrays are immutable, so later writes to `a` are not seen.
    """
    return jnp.asarray(a)


def to_numpy(x):
    """A NumPy view of a JAX array's values; it is read-only because JAX arrays are immutable."""
    return np.asarray(x)
