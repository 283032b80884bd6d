"""Activation functions in JAX, written out (docs/concepts.md §4) and jitted.

Softmax subtracts the row maximum before `exp`, so logits of 100 or 1000 stay finite (docs/traps.md, trap 24).
dtypes follow torch (shape_rules.dtypes): sigmoid and tanh take any dtype (bool and integers give
float32), relu floating or integer input, the rest floating input only. Where torch's kernel computes
float16/bfloat16 in float32 and rounds once (sigmoid, tanh, log-sigmoid, gelu), so does this twin.
"""
from functools import partial

import jax
import jax.numpy as jnp

from shape_rules.dtypes import check_dtype, compute_dtype, float_result
from shape_rules.losses import softmax_dim

from jax_impl.checks import check_x64, x64_checked


@x64_checked
@jax.jit
def relu(x):
    """max(0, x), with gradient 0 at exactly 0 as in torch.

    `jnp.maximum(x, 0)` would give 0.5 there (ties split the gradient); `jax.nn.relu` gives 0.
    """
    check_dtype("relu", "input", x.dtype.name)
    return jax.nn.relu(x)


@x64_checked
@jax.jit
def sigmoid(x):
    """1 / (1 + e^{-x}) (the seed prints log of this, which is log-sigmoid: a typo)."""
    out = float_result(x.dtype.name)
    return jax.nn.sigmoid(x.astype(compute_dtype(out))).astype(out)


@x64_checked
@jax.jit
def log_sigmoid(x):
    """log(1 / (1 + e^{-x})) = -softplus(-x), computed without overflow."""
    out = check_dtype("log_sigmoid", "input", x.dtype.name)
    x = x.astype(compute_dtype(out))
    return (-jnp.logaddexp(0.0, -x)).astype(out)


@x64_checked
@jax.jit
def tanh(x):
    """Hyperbolic tangent."""
    out = float_result(x.dtype.name)
    return jnp.tanh(x.astype(compute_dtype(out))).astype(out)


def _normalised(op, x, dim, dtype):
    """(x in `dtype`, the axis) with torch's rules for `dim` (shape_rules.losses.softmax_dim)."""
    check_x64(x, dtype=dtype)
    axis = softmax_dim(op, jnp.ndim(x), dim)
    return (x if dtype is None else jnp.asarray(x).astype(dtype)), axis


def _along(f, x, axis):
    """f(x, axis) for torch's edge shapes: a 0-d input as one element, a zero-size input as itself."""
    if x.size == 0:
        return x  # torch returns an empty result (a reduction over a zero-size axis would raise)
    if x.ndim == 0:
        return f(x.reshape(1), 0).reshape(())
    return f(x, axis)


def _softmax_rows(x, axis):
    z = x - jax.lax.stop_gradient(jnp.max(x, axis=axis, keepdims=True))
    e = jnp.exp(z)
    return e / jnp.sum(e, axis=axis, keepdims=True)


def _log_softmax_rows(x, axis):
    z = x - jax.lax.stop_gradient(jnp.max(x, axis=axis, keepdims=True))
    return z - jnp.log(jnp.sum(jnp.exp(z), axis=axis, keepdims=True))


@partial(jax.jit, static_argnames=("axis",))
def _softmax(x, axis):
    check_dtype("softmax", "input", x.dtype.name)
    return _along(_softmax_rows, x, axis)


@partial(jax.jit, static_argnames=("axis",))
def _log_softmax(x, axis):
    check_dtype("log_softmax", "input", x.dtype.name)
    return _along(_log_softmax_rows, x, axis)


def softmax(x, dim=None, *, dtype=None):
    """e^{x_i} / Σ_j e^{x_j} along `dim`, computed as exp(x − max) / Σ exp(x − max): torch's F.softmax.

    dim None is torch's deprecated implicit choice (axis 0 for 0-, 1- and 3-D input, else 1) with its
    warning; `dtype` casts the input first (so integer input with dtype=float32 works, as in torch).
    A 0-d input gives 1 and a zero-size input an empty result, as torch's. In float16/bfloat16 every
    step rounds to the input's dtype, as in torch's twin (sums accumulate in float32).
    """
    x, axis = _normalised("softmax", x, dim, dtype)
    return _softmax(x, axis)


def log_softmax(x, dim=None, *, dtype=None):
    """x_i − log Σ_j e^{x_j} along `dim`, with the max subtracted inside the log-sum-exp: torch's
    F.log_softmax, with softmax's rules for `dim`, `dtype`, 0-d and zero-size input."""
    x, axis = _normalised("log_softmax", x, dim, dtype)
    return _log_softmax(x, axis)


@partial(jax.jit, static_argnames=("tanh_form",))
def _gelu(x, tanh_form):
    out = check_dtype("gelu", "input", x.dtype.name)
    return jax.nn.gelu(x.astype(compute_dtype(out)), approximate=tanh_form).astype(out)


@x64_checked
def gelu(x, approximate="none"):
    """x·Φ(x), exact (with erf) or torch's approximate='tanh' form.

    `jax.nn.gelu` defaults to the tanh form and torch to the exact one (docs/traps.md, trap 15); this follows torch.
    """
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return _gelu(x, approximate == "tanh")
