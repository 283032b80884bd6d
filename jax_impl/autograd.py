"""Derivatives and gradient descent in JAX (docs/concepts.md §2).

JAX differentiates functions (`jax.grad`) instead of recording tensors; gradients never accumulate
and `jax.grad` needs a scalar output (docs/traps.md, trap 26).
"""
from functools import partial

import jax
import jax.numpy as jnp


@jax.jit
def quadratic(x):
    """The seed's y = 2x² + 3x + 1 (dy/dx = 4x + 3, so 11 at x = 2)."""
    return 2 * x**2 + 3 * x + 1


@jax.jit
def poly_sum(x):
    """The seed's y = Σ (x² + 2x + 1) (dy/dx = 2x + 2)."""
    return jnp.sum(x**2 + 2 * x + 1)


def value_and_grad(fn, x):
    """(fn(x), d fn / dx) for a scalar-valued fn, via a jitted `jax.value_and_grad`."""
    return _value_and_grad(fn, x)


@partial(jax.jit, static_argnums=0)
def _value_and_grad(fn, x):
    return jax.value_and_grad(fn)(x)


@jax.jit
def gd_step(params, grads, lr):
    """One step of the update rule w ← w − lr · dJ/dw over a pytree of parameters."""
    return jax.tree.map(lambda p, g: p - lr * g, params, grads)


@partial(jax.jit, static_argnames=("steps",))
def fit_line(xs, ys, k0, b0, lr, steps):
    """Fit y = kx + b to points by full-batch gradient descent on the mean squared error.

    Returns (k, b). The loop is a `lax.fori_loop`, so the whole fit is one compiled program.
    """
    def loss(p):
        k, b = p
        return jnp.mean((k * xs + b - ys) ** 2)

    def body(_, p):
        return gd_step(p, jax.grad(loss)(p), lr)

    return jax.lax.fori_loop(0, steps, body, (jnp.asarray(k0, xs.dtype), jnp.asarray(b0, xs.dtype)))
