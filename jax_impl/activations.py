"""Activation functions in JAX, written out (SEEDS.md §4) and jitted.

Softmax subtracts the row maximum before `exp`, so logits of 100 or 1000 stay finite (trap 24).
"""
from functools import partial

import jax
import jax.numpy as jnp


@jax.jit
def relu(x):
    """max(0, x), with gradient 0 at exactly 0 as in torch.

    `jnp.maximum(x, 0)` would give 0.5 there (ties split the gradient); `jax.nn.relu` gives 0.
    """
    return jax.nn.relu(x)


@jax.jit
def sigmoid(x):
    """1 / (1 + e^{-x}) (the seed prints log of this, which is log-sigmoid: a typo)."""
    return jax.nn.sigmoid(x)


@jax.jit
def log_sigmoid(x):
    """log(1 / (1 + e^{-x})) = -softplus(-x), computed without overflow."""
    return -jnp.logaddexp(0.0, -x)


@jax.jit
def tanh(x):
    """Hyperbolic tangent."""
    return jnp.tanh(x)


@partial(jax.jit, static_argnames=("axis",))
def softmax(x, axis=-1):
    """e^{x_i} / Σ_j e^{x_j} along `axis`, computed as exp(x − max) / Σ exp(x − max)."""
    z = x - jax.lax.stop_gradient(jnp.max(x, axis=axis, keepdims=True))
    e = jnp.exp(z)
    return e / jnp.sum(e, axis=axis, keepdims=True)


@partial(jax.jit, static_argnames=("axis",))
def log_softmax(x, axis=-1):
    """x_i − log Σ_j e^{x_j} along `axis`, with the max subtracted inside the log-sum-exp."""
    z = x - jax.lax.stop_gradient(jnp.max(x, axis=axis, keepdims=True))
    return z - jnp.log(jnp.sum(jnp.exp(z), axis=axis, keepdims=True))


@partial(jax.jit, static_argnames=("tanh_form",))
def _gelu(x, tanh_form):
    return jax.nn.gelu(x, approximate=tanh_form)


def gelu(x, approximate="none"):
    """x·Φ(x), exact (with erf) or torch's approximate='tanh' form.

    `jax.nn.gelu` defaults to the tanh form and torch to the exact one (trap 15); this follows torch.
    """
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return _gelu(x, approximate == "tanh")
