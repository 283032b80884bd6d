"""Optimisers in PyTorch: SGD, Adam and AdamW from scratch as pure (init, update) pairs.

`update(grads, state, params)` returns new tensors (updates to add, and the new state) over a
tuple or dict of tensors, like optax, instead of mutating `.grad` and buffers as torch.optim does.
`from_library` builds the torch.optim optimiser on its fast path (fused where torch has it, foreach else).
A gradient tree unlike the parameters' (a leaf missing or extra, another shape) is refused.
"""
from functools import partial
from typing import Callable, NamedTuple

import torch

from shape_rules import check_like_params, check_optimizer_args

_NAMES = ("sgd", "adam", "adamw")


class Transformation(NamedTuple):
    """A pure optimiser: `init(params) -> state`, `update(grads, state, params) -> (updates, state)`.

    The fields of optax's GradientTransformation, which the JAX twin's Transformation is.
    """

    init: Callable
    update: Callable




def _map(fn, *trees):
    """fn over matching leaves of tuples/lists or dicts of tensors (None stays None)."""
    first = trees[0]
    if isinstance(first, dict):
        return {k: fn(*(t[k] for t in trees)) for k in first}
    return tuple(fn(*leaves) for leaves in zip(*trees))


def _leaf_shapes(tree) -> dict:
    """{path: shape} of a tensor (path '') or of a tuple/list or dict of them, paths written as JAX's
    keystr writes them (`['w']`, `[0]`); a None leaf is absent, as in a JAX pytree."""
    if isinstance(tree, torch.Tensor):
        return {"": tuple(tree.shape)}
    items = tree.items() if isinstance(tree, dict) else enumerate(tree)
    return {f"[{k!r}]": tuple(torch.as_tensor(v).shape) for k, v in items if v is not None}


def _check_like_params(name, tree, params):
    """`tree` has the leaves and shapes of `params`: `_map` would otherwise drop or broadcast some."""
    if params is None:  # as optax allows where an update does not read the parameters
        return
    check_like_params(name, _leaf_shapes(params), _leaf_shapes(tree))


@torch.no_grad()
def apply_updates(params, updates):
    """params + updates, leaf by leaf, as new tensors (the inputs are left unchanged)."""
    _check_like_params("updates", updates, params)
    return _map(lambda p, u: (p + u).to(p.dtype), params, updates)


def sgd(lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0):
    """SGD as torch.optim.SGD: buf ← μ·buf + (1 − dampening)·g, and buf ← g on the first step."""
    check_optimizer_args(lr, momentum, dampening, nesterov, weight_decay=weight_decay)

    def init(params):
        return {"count": 0, "momentum": _map(torch.zeros_like, params) if momentum else None}

    @torch.no_grad()
    def update(grads, state, params):
        _check_like_params("grads", grads, params)
        if weight_decay:
            grads = _map(lambda g, p: g + weight_decay * p, grads, params)
        buf = state["momentum"]
        if momentum:
            if state["count"] == 0:
                buf = _map(torch.clone, grads)
            else:
                buf = _map(lambda b, g: momentum * b + (1 - dampening) * g, buf, grads)
            grads = _map(lambda g, b: g + momentum * b, grads, buf) if nesterov else buf
        updates = _map(lambda g: -lr * g, grads)
        return updates, {"count": state["count"] + 1, "momentum": buf}

    return Transformation(init, update)


def _adam(lr, betas, eps, weight_decay, decoupled):
    check_optimizer_args(lr, betas=betas, eps=eps, weight_decay=weight_decay)
    b1, b2 = betas

    def init(params):
        return {"count": 0, "mu": _map(torch.zeros_like, params), "nu": _map(torch.zeros_like, params)}

    @torch.no_grad()
    def update(grads, state, params):
        _check_like_params("grads", grads, params)
        if weight_decay and not decoupled:  # Adam: L2 added to the gradient
            grads = _map(lambda g, p: g + weight_decay * p, grads, params)
        count = state["count"] + 1
        mu = _map(lambda m, g: b1 * m + (1 - b1) * g, state["mu"], grads)
        nu = _map(lambda v, g: b2 * v + (1 - b2) * g * g, state["nu"], grads)
        bc1, bc2 = 1 - b1 ** count, 1 - b2 ** count  # Python floats (double precision)

        def step(m, v, p):
            u = -lr * (m / bc1) / (torch.sqrt(v / bc2) + eps)
            return u - lr * weight_decay * p if decoupled and weight_decay else u

        return _map(step, mu, nu, params), {"count": count, "mu": mu, "nu": nu}

    return Transformation(init, update)


def adam(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
    """Adam (Kingma & Ba) with bias correction and eps outside the root: m̂ / (√v̂ + eps).

    weight_decay is coupled L2 (added to the gradient), as in torch.optim.Adam.
    """
    return _adam(lr, betas, eps, weight_decay, decoupled=False)


def adamw(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
    """AdamW: Adam plus decoupled decay p ← p − lr·wd·p, torch's default wd 1e-2."""
    return _adam(lr, betas, eps, weight_decay, decoupled=True)


def _fast_path(params):
    """fused (one kernel for all parameters) where torch has it: floating parameters on the CPU or
    CUDA (torch >= 2.4 has CPU kernels for SGD, Adam and AdamW); foreach (one op per group) else,
    e.g. for complex parameters. The fused step is the faster on the CPU, and its parameters stay
    within rounding of the foreach step's (docs/measurements.md, "torch's optimiser fast path")."""
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params) and \
        len({p.device for p in params}) <= 1
    return {"fused": True} if fused else {"foreach": True}


def _build(cls, hyper, params):
    params = list(params)
    return cls(params, **hyper, **_fast_path(params))


def from_library(name, lr=1e-3, momentum=0.0, dampening=0.0, nesterov=False, betas=(0.9, 0.999),
                 eps=1e-8, weight_decay=None):
    """A factory `params -> torch.optim.<name>` with these settings on the fast path.

    weight_decay None means torch's default (0, or 1e-2 for AdamW).
    """
    if name not in _NAMES:
        raise ValueError(f"optimizer must be one of {_NAMES}, got {name!r}")
    wd = (1e-2 if name == "adamw" else 0.0) if weight_decay is None else weight_decay
    check_optimizer_args(lr, momentum, dampening, nesterov, betas, eps, wd)
    if name == "sgd":
        cls, hyper = torch.optim.SGD, dict(lr=lr, momentum=momentum, dampening=dampening,
                                           nesterov=nesterov, weight_decay=wd)
    else:
        cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        hyper = dict(lr=lr, betas=betas, eps=eps, weight_decay=wd)
    return partial(_build, cls, hyper)
