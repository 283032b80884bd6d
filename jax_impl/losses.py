"""Losses in JAX: mean squared error, cross-entropy and the negative log-likelihood (docs/concepts.md §5).

Shapes are checked before the jitted core, so (10, 1) against (10,) raises instead of silently
broadcasting to (10, 10). optax's `l2_loss` is 0.5·e² (docs/traps.md, trap 22) and its cross-entropies return one
loss per example over the last axis (docs/traps.md, trap 23); these follow torch's F.mse_loss, F.cross_entropy and
F.nll_loss instead: the same arguments in the same order with the same defaults (class weights,
ignore_index=-100, label smoothing, class-probability targets, the class axis at 1 of (N, C, d1, …,
dK) input, unbatched (C,) input), the same reductions, and nan where torch's 'mean' divides by zero
(an empty batch, or every target ignored), with torch's gradients there (zeros when every target is
ignored, nan when the counted targets all weigh 0).
The argument rules are shared with torch's twin (shape_rules.losses).
dtypes follow torch (shape_rules.dtypes): floating predictions and logits only, integer labels of any
width; float16/bfloat16 logits are normalised in float32 and the loss rounded once, as torch's kernel.
"""
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from shape_rules.dtypes import check_mse_dtypes, compute_dtype
from shape_rules.losses import check_class_loss, check_label_range, check_reduction, legacy_reduction, \
    weight_type_error

from jax_impl.checks import check_x64


def _reduce(v, reduction):
    return jnp.mean(v) if reduction == "mean" else jnp.sum(v) if reduction == "sum" else v


@partial(jax.jit, static_argnames=("reduction",))
def _mse(y_hat, y, reduction):
    dt = check_mse_dtypes(y_hat.dtype.name, y.dtype.name)
    return _reduce((y_hat.astype(dt) - y.astype(dt)) ** 2, reduction)


def mse_loss(y_hat, y, reduction="mean"):
    """Mean (or sum) of (y_hat − y)²; shapes must be equal. An empty 'mean' is nan, as torch's."""
    check_x64(y_hat, y)
    check_reduction(reduction)
    if jnp.shape(y_hat) != jnp.shape(y):
        raise ValueError(
            f"mse_loss: y_hat has shape {tuple(jnp.shape(y_hat))} but y has shape "
            f"{tuple(jnp.shape(y))}; they must be equal (broadcasting them would compare every "
            f"prediction with every target). Reshape one of them first.")
    return _mse(y_hat, y, reduction)


def _classes_last(a):
    """(N, C, d1, …) → (N, d1, …, C); (C,) stays."""
    return jnp.moveaxis(a, 1, -1) if a.ndim >= 2 else a


@partial(jax.jit, static_argnames=("ignore_index", "reduction", "label_smoothing", "from_logits"))
def _class_indices(x, labels, weight, ignore_index, reduction, label_smoothing, from_logits):
    """torch's nll_loss (on log_softmax(x) when `from_logits`), with its label-smoothing term."""
    out = x.dtype
    ct = compute_dtype(out.name)
    x = _classes_last(x.astype(ct))
    logp = jax.nn.log_softmax(x, axis=-1) if from_logits else x
    c = logp.shape[-1]
    w = jnp.ones((c,), ct) if weight is None else weight.astype(ct)
    keep = labels != ignore_index
    safe = jnp.where(keep, labels, 0).astype(jnp.int32)
    picked = jnp.take_along_axis(logp, safe[..., None], axis=-1)[..., 0]
    w_y = jnp.where(keep, w[safe], 0)
    nll = jnp.where(keep, -w_y * picked, 0)  # an ignored target counts 0, whatever its input holds
    smooth = None
    if label_smoothing > 0:  # the uniform part: −Σ_c w_c·logp_c per target (torch's smooth_loss)
        smooth = jnp.where(keep, -(logp * w).sum(-1), 0)
    # 'mean' divides by the weights of the counted targets (their number without weights): 0/0 = nan
    # where none counts, as torch's; the gradient follows torch's too, zeros where every target is
    # ignored (the masks above stop the inf) and nan where counted targets all weigh 0
    den = w_y.sum()
    reduce = {"none": lambda v: v, "sum": jnp.sum, "mean": lambda v: v.sum() / den}[reduction]
    loss = reduce(nll)
    if smooth is not None:  # torch's (1 − ε)·nll + ε/C·smooth, each part reduced on its own
        loss = (1 - label_smoothing) * loss + reduce(smooth) * (label_smoothing / c)
    return loss.astype(out)


@partial(jax.jit, static_argnames=("reduction", "label_smoothing"))
def _class_probabilities(logits, target, weight, reduction, label_smoothing):
    """torch's cross-entropy against class probabilities: −Σ_c w_c·t_c·log_softmax(x)_c per target."""
    out = jnp.promote_types(logits.dtype, target.dtype)
    ct = compute_dtype(out.name)
    logp = jax.nn.log_softmax(_classes_last(logits.astype(ct)), axis=-1)
    t = _classes_last(target.astype(ct))
    c = logp.shape[-1]
    if label_smoothing > 0:
        t = t * (1 - label_smoothing) + label_smoothing / c
    term = logp * t if weight is None else logp * t * weight.astype(ct)
    loss = -term.sum(-1)
    if reduction == "mean":  # over the N·d1·…·dK targets, whatever the weights; nan when there are none
        loss = loss.sum() / loss.size if loss.size else jnp.full((), jnp.nan, ct)
    elif reduction == "sum":
        loss = loss.sum()
    return loss.astype(out)


def _check_range(op, x, labels, ignore_index):
    """Concrete labels other than ignore_index lie in [0, C). Under an outer jit they cannot be
    checked, and an out-of-range label would silently read a clamped column: check data first."""
    if isinstance(labels, jax.core.Tracer):
        return
    lab = np.asarray(labels)
    lab = lab[lab != ignore_index]
    if lab.size:
        check_label_range(op, jnp.shape(x)[0 if jnp.ndim(x) == 1 else 1], int(lab.min()), int(lab.max()))


def _weight_meta(op, weight):
    """(shape, dtype name) of the class weights, (None, None) without them."""
    if weight is None:
        return None, None
    if not isinstance(weight, (jax.Array, np.ndarray)):
        raise weight_type_error(op, weight)
    return tuple(jnp.shape(weight)), jnp.result_type(weight).name


def cross_entropy(logits, labels, weight=None, size_average=None, ignore_index=-100, reduce=None,
                  reduction="mean", label_smoothing=0.0):
    """torch's F.cross_entropy: logits (N, C), (C,) or (N, C, d1, …, dK), classes on axis 1 (0 unbatched).

    `labels` are class indices of shape (N,), () or (N, d1, …, dK), or class probabilities of the
    logits' shape. `weight` (C,) weighs each class ('mean' then divides by the summed weights of the
    counted targets); targets equal to `ignore_index` count nothing; `label_smoothing` ε mixes the
    target with the uniform distribution: (1 − ε)·target + ε/C. `size_average`/`reduce` are torch's
    deprecated spelling of `reduction`. An NHWC model's (N, H, W, C) logits need
    `jnp.moveaxis(logits, -1, 1)` first (optax's cross-entropies take classes last).
    """
    w_shape, w_dtype = _weight_meta("cross_entropy", weight)
    check_x64(logits, labels, weight)
    reduction = legacy_reduction(size_average, reduce, reduction)
    probabilities, _ = check_class_loss("cross_entropy", tuple(jnp.shape(logits)), jnp.result_type(logits).name,
                                        tuple(jnp.shape(labels)), jnp.result_type(labels).name, w_shape, w_dtype,
                                        ignore_index, label_smoothing)
    label_smoothing = float(label_smoothing)
    if probabilities:
        return _class_probabilities(logits, labels, weight, reduction, label_smoothing)
    _check_range("cross_entropy", logits, labels, ignore_index)
    return _class_indices(logits, labels, weight, ignore_index, reduction, label_smoothing, True)


def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean"):
    """torch's F.nll_loss: −input[target] (input holds log-probabilities, classes on axis 1 as in
    cross_entropy), weighted by `weight[target]`, ignoring targets equal to `ignore_index`; 'mean'
    divides by the summed weights of the counted targets (nan when there are none, as torch's)."""
    w_shape, w_dtype = _weight_meta("nll_loss", weight)
    check_x64(input, target, weight)
    reduction = legacy_reduction(size_average, reduce, reduction)
    check_class_loss("nll_loss", tuple(jnp.shape(input)), jnp.result_type(input).name, tuple(jnp.shape(target)),
                     jnp.result_type(target).name, w_shape, w_dtype, ignore_index, probabilities_allowed=False)
    _check_range("nll_loss", input, target, ignore_index)
    return _class_indices(input, target, weight, ignore_index, reduction, 0.0, False)
