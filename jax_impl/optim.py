"""Optimisers in JAX: SGD, Adam and AdamW from scratch as optax-style (init, update) pairs.

Each returns a `Transformation` (an `optax.GradientTransformation`) whose `update(grads, state, params)`
gives the updates to add (`apply_updates`); the math follows torch.optim's documented algorithms, so
the hyperparameters mean what they mean there. `from_library` builds the optax equivalent (traps 19–21).
A gradient tree unlike the parameters' (a leaf missing or extra, another shape) is refused at trace time.
"""
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from shape_rules import check_like_params, check_optimizer_args

_NAMES = ("sgd", "adam", "adamw")


class Transformation(optax.GradientTransformation):
    """A pure optimiser: `init(params) -> state`, `update(grads, state, params) -> (updates, state)`.

    optax's GradientTransformation under the twin's name, so optax accepts it; torch's has its fields.
    """

    __slots__ = ()


class _SgdState(NamedTuple):
    count: jax.Array
    momentum: Any  # a pytree like params, or None without momentum


class _AdamState(NamedTuple):
    count: jax.Array
    mu: Any
    nu: Any


def _leaf_shapes(tree) -> dict:
    """{path: shape} of a pytree's leaves, paths as `jax.tree_util.keystr` writes them (`['w']`, `[0]`)."""
    return {jax.tree_util.keystr(path): tuple(jnp.shape(leaf))
            for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def _check_like_params(name, tree, params):
    """`tree` has the structure and shapes of `params` (static under jit, so checked while tracing).

    Also its containers: jax.tree.map cannot pair a list with a tuple, which torch's twin zips alike.
    """
    if params is None:  # optax allows it where an update does not read the parameters
        return
    check_like_params(name, _leaf_shapes(params), _leaf_shapes(tree))
    if jax.tree.structure(tree) != jax.tree.structure(params):  # same leaves in other containers
        raise ValueError(f"{name}: structure differs from params: {jax.tree.structure(tree)} is not "
                         f"{jax.tree.structure(params)}")


def apply_updates(params, updates):
    """params + updates, leaf by leaf, keeping each parameter's dtype."""
    _check_like_params("updates", updates, params)
    return jax.tree.map(lambda p, u: (p + u).astype(p.dtype), params, updates)


def sgd(lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0):
    """SGD with torch's momentum: buf ← μ·buf + (1 − dampening)·g, and buf ← g on the first step.

    optax's `trace` has no dampening and starts from zeros, so it equals this only at dampening 0.
    """
    check_optimizer_args(lr, momentum, dampening, nesterov, weight_decay=weight_decay)

    def init(params):
        buf = jax.tree.map(jnp.zeros_like, params) if momentum else None
        return _SgdState(jnp.zeros([], jnp.int32), buf)

    def update(grads, state, params):
        _check_like_params("grads", grads, params)
        if weight_decay:
            grads = jax.tree.map(lambda g, p: g + weight_decay * p, grads, params)
        buf = state.momentum
        if momentum:
            first = state.count == 0
            buf = jax.tree.map(lambda b, g: jnp.where(first, g, momentum * b + (1 - dampening) * g),
                               buf, grads)
            grads = (jax.tree.map(lambda g, b: g + momentum * b, grads, buf) if nesterov else buf)
        updates = jax.tree.map(lambda g: -lr * g, grads)
        return updates, _SgdState(state.count + 1, buf)

    return Transformation(init, update)


def _adam(lr, betas, eps, weight_decay, decoupled):
    check_optimizer_args(lr, betas=betas, eps=eps, weight_decay=weight_decay)
    b1, b2 = betas

    def init(params):  # two separate trees: a donating step must not see one buffer twice
        return _AdamState(jnp.zeros([], jnp.int32), jax.tree.map(jnp.zeros_like, params),
                          jax.tree.map(jnp.zeros_like, params))

    def update(grads, state, params):
        _check_like_params("grads", grads, params)
        if weight_decay and not decoupled:  # Adam: L2 added to the gradient
            grads = jax.tree.map(lambda g, p: g + weight_decay * p, grads, params)
        count = state.count + 1
        mu = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, state.mu, grads)
        nu = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, state.nu, grads)
        # bias corrections in the default float type (float64 under x64), as torch does in Python
        bc1, bc2 = 1 - b1 ** count, 1 - b2 ** count

        def step(m, v, p):
            m_hat, v_hat = m / bc1.astype(m.dtype), v / bc2.astype(v.dtype)
            u = -lr * m_hat / (jnp.sqrt(v_hat) + eps)
            return u - lr * weight_decay * p if decoupled and weight_decay else u

        return jax.tree.map(step, mu, nu, params), _AdamState(count, mu, nu)

    return Transformation(init, update)


def adam(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
    """Adam (Kingma & Ba) with bias correction and eps outside the root: m̂ / (√v̂ + eps).

    weight_decay is torch's coupled L2 (added to the gradient); optax.adamw's is decoupled (trap 19).
    """
    return _adam(lr, betas, eps, weight_decay, decoupled=False)


def adamw(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
    """AdamW: Adam plus decoupled decay p ← p − lr·wd·p; default wd 1e-2 as torch (optax: 1e-4)."""
    return _adam(lr, betas, eps, weight_decay, decoupled=True)


def from_library(name, lr=1e-3, momentum=0.0, dampening=0.0, nesterov=False, betas=(0.9, 0.999),
                 eps=1e-8, weight_decay=None):
    """The optax optimiser matching `torch.optim.<name>` with these settings.

    weight_decay None means torch's default (0, or 1e-2 for AdamW). Coupled decay is
    `add_decayed_weights` before the update; optax.sgd has no dampening, so it is refused.
    """
    if name not in _NAMES:
        raise ValueError(f"optimizer must be one of {_NAMES}, got {name!r}")
    wd = (1e-2 if name == "adamw" else 0.0) if weight_decay is None else weight_decay
    check_optimizer_args(lr, momentum, dampening, nesterov, betas, eps, wd)
    b1, b2 = betas
    if name == "adamw":
        return optax.adamw(lr, b1=b1, b2=b2, eps=eps, weight_decay=wd)
    if name == "adam":
        core = optax.adam(lr, b1=b1, b2=b2, eps=eps)
    else:
        if dampening:
            raise ValueError("optax.sgd has no dampening (trap 21); use jax_impl.optim.sgd")
        core = optax.sgd(lr, momentum=momentum or None, nesterov=nesterov)
    return optax.chain(optax.add_decayed_weights(wd), core) if wd else core
