"""Losses in JAX: mean squared error and cross-entropy from integer labels (SEEDS.md §5).

Shapes are checked before the jitted core, so (10, 1) against (10,) raises instead of silently
broadcasting to (10, 10). optax's `l2_loss` is 0.5·e² (trap 22) and its cross-entropy returns one
loss per example over the last axis (trap 23); these match torch's defaults instead.
dtypes follow torch (shape_rules.dtypes): floating predictions and logits only, integer labels of any
width; float16/bfloat16 logits are normalised in float32 and the loss rounded once, as torch's kernel.
"""
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from shape_rules.dtypes import check_dtype, check_labels, check_mse_dtypes, compute_dtype

from jax_impl.checks import check_x64

_REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _reduce(v, reduction):
    return jnp.mean(v) if reduction == "mean" else jnp.sum(v) if reduction == "sum" else v


@partial(jax.jit, static_argnames=("reduction",))
def _mse(y_hat, y, reduction):
    dt = check_mse_dtypes(y_hat.dtype.name, y.dtype.name)
    return _reduce((y_hat.astype(dt) - y.astype(dt)) ** 2, reduction)


def mse_loss(y_hat, y, reduction="mean"):
    """Mean (or sum) of (y_hat − y)²; shapes must be equal."""
    check_x64(y_hat, y)
    _check_reduction(reduction)
    if jnp.shape(y_hat) != jnp.shape(y):
        raise ValueError(
            f"mse_loss: y_hat has shape {tuple(jnp.shape(y_hat))} but y has shape "
            f"{tuple(jnp.shape(y))}; they must be equal (broadcasting them would compare every "
            f"prediction with every target). Reshape one of them first.")
    return _mse(y_hat, y, reduction)


@partial(jax.jit, static_argnames=("reduction",))
def _cross_entropy(logits, labels, reduction):
    out = logits.dtype
    logp = jax.nn.log_softmax(logits.astype(compute_dtype(out.name)), axis=-1)
    nll = -jnp.take_along_axis(logp, labels[:, None], axis=-1)[:, 0]
    return _reduce(nll, reduction).astype(out)


def cross_entropy(logits, labels, reduction="mean"):
    """Cross-entropy of logits (N, C) against integer labels (N,) in [0, C).

    Labels are range-checked when they are concrete; under an outer jit they cannot be, and an
    out-of-range label would silently read a clamped column, so check data before the step.
    """
    check_x64(logits, labels)
    _check_reduction(reduction)
    if jnp.ndim(logits) != 2:
        raise ValueError(f"cross_entropy: logits must be 2-D (N, C), got shape {tuple(jnp.shape(logits))}")
    if jnp.shape(labels) != jnp.shape(logits)[:1]:
        raise ValueError(f"cross_entropy: labels must have shape ({jnp.shape(logits)[0]},) to match "
                         f"logits {tuple(jnp.shape(logits))}, got {tuple(jnp.shape(labels))}")
    check_dtype("cross_entropy", "logits", jnp.result_type(logits).name)
    check_labels(jnp.result_type(labels).name)
    if not isinstance(labels, jax.core.Tracer):
        lab = np.asarray(labels)
        c = jnp.shape(logits)[1]
        if lab.size and (lab.min() < 0 or lab.max() >= c):
            raise ValueError(f"cross_entropy: labels must lie in [0, {c}), got range "
                             f"[{lab.min()}, {lab.max()}]")
    return _cross_entropy(logits, labels, reduction)
