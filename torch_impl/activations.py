"""Activation functions in PyTorch, written out (docs/concepts.md §4).

Softmax subtracts the row maximum before `exp`, so logits of 100 or 1000 stay finite (docs/traps.md, trap 24).
dtypes (shape_rules.dtypes): the written-out log-sigmoid, softmax and log-softmax accept what torch's
own kernels accept (floating input only), and every refusal raises the shared message.
"""
import torch

from shape_rules.dtypes import KINDS, check_dtype
from shape_rules.losses import softmax_dim

_RELU = frozenset(getattr(torch, n) for n in KINDS["floating or integer"][0])


def relu(x):
    """max(0, x), with gradient 0 at exactly 0.

    `torch.clamp_min(x, 0)` would give 1 there; `torch.relu` gives 0, like `jax.nn.relu`.
    """
    if x.dtype not in _RELU:  # bool: torch's "Boolean inputs not supported"; complex: no clamp
        check_dtype("relu", "input", x.dtype)
    return torch.relu(x)


def sigmoid(x):
    """1 / (1 + e^{-x}) (the seed prints log of this, which is log-sigmoid: a typo)."""
    return torch.sigmoid(x)


def log_sigmoid(x):
    """log(1 / (1 + e^{-x})) = -softplus(-x), computed without overflow."""
    if not x.is_floating_point():  # as F.logsigmoid (this form would compute complex input)
        check_dtype("log_sigmoid", "input", x.dtype)
    return -torch.logaddexp(torch.zeros_like(x), -x)


def tanh(x):
    """Hyperbolic tangent."""
    return torch.tanh(x)


def _normalised(op, x, dim, dtype):
    """(x in `dtype`, the axis) with torch's rules for `dim` (shape_rules.losses.softmax_dim)."""
    axis = softmax_dim(op, x.dim(), dim)
    x = x if dtype is None else x.to(dtype)
    if not x.is_floating_point():  # as torch.softmax (this form would give float32 for integers)
        check_dtype(op, "input", x.dtype)
    return x, axis


def softmax(x, dim=None, *, dtype=None):
    """e^{x_i} / Σ_j e^{x_j} along `dim`, computed as exp(x − max) / Σ exp(x − max): F.softmax's
    arguments (dim None: torch's implicit choice, with its warning; `dtype` casts the input first)."""
    x, axis = _normalised("softmax", x, dim, dtype)
    if x.numel() == 0:
        return x.clone()  # torch's empty result (amax over a zero-size axis would raise)
    z = x - torch.amax(x, dim=axis, keepdim=True).detach()
    e = torch.exp(z)
    return e / torch.sum(e, dim=axis, keepdim=True)


def log_softmax(x, dim=None, *, dtype=None):
    """x_i − log Σ_j e^{x_j} along `dim`, with the max subtracted inside the log-sum-exp; F.log_softmax's
    arguments, as softmax."""
    x, axis = _normalised("log_softmax", x, dim, dtype)
    if x.numel() == 0:
        return x.clone()
    z = x - torch.amax(x, dim=axis, keepdim=True).detach()
    return z - torch.log(torch.sum(torch.exp(z), dim=axis, keepdim=True))


def gelu(x, approximate="none"):
    """x·Φ(x), exact (with erf) or approximate='tanh'; Flax's `jax.nn.gelu` defaults to tanh (docs/traps.md, trap 15)."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    if not x.is_floating_point():
        check_dtype("gelu", "input", x.dtype)
    return torch.nn.functional.gelu(x, approximate=approximate)
