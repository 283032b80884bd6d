"""Losses in PyTorch: mean squared error, cross-entropy and the negative log-likelihood (docs/concepts.md §5).

`nn.MSELoss` only warns when (10, 1) meets (10,) and then broadcasts to (10, 10); this raises.
cross_entropy and nll_loss are F.cross_entropy and F.nll_loss with every option (same arguments,
order and defaults), after the argument rules both twins share (shape_rules.losses), so a bad value
raises the shared message instead of torch's RuntimeError or IndexError from inside the kernel.
dtypes (shape_rules.dtypes): floating predictions and logits, integer labels of any width (cast to
int64 for torch's kernel); other dtypes raise the shared message instead of the kernel's error.
"""
import torch
import torch.nn.functional as F

from shape_rules.dtypes import check_mse_dtypes
from shape_rules.losses import check_class_loss, check_label_range, check_reduction, legacy_reduction, \
    weight_type_error


def mse_loss(y_hat, y, reduction="mean"):
    """Mean (or sum) of (y_hat − y)²; shapes must be equal. An empty 'mean' is nan."""
    check_reduction(reduction)
    if tuple(y_hat.shape) != tuple(y.shape):
        raise ValueError(
            f"mse_loss: y_hat has shape {tuple(y_hat.shape)} but y has shape "
            f"{tuple(y.shape)}; they must be equal (broadcasting them would compare every "
            f"prediction with every target). Reshape one of them first.")
    if not (y_hat.is_floating_point() and y.dtype == y_hat.dtype):
        check_mse_dtypes(y_hat.dtype, y.dtype)
    return F.mse_loss(y_hat, y, reduction=reduction)


def _checked(op, x, target, weight, ignore_index, label_smoothing=0.0, probabilities_allowed=True):
    """The shared argument rules; class indices range-checked (ignored ones left out) and cast to
    int64 for torch's kernel. Returns (probabilities?, target)."""
    if weight is not None and not isinstance(weight, torch.Tensor):
        raise weight_type_error(op, weight)
    w = (None, None) if weight is None else (tuple(weight.shape), weight.dtype)
    probabilities, _ = check_class_loss(op, tuple(x.shape), x.dtype, tuple(target.shape), target.dtype, *w,
                                        ignore_index, label_smoothing, probabilities_allowed)
    if probabilities:
        return True, target
    kept = target[target != ignore_index]
    if kept.numel():
        check_label_range(op, x.shape[0 if x.dim() == 1 else 1], int(kept.min()), int(kept.max()))
    return False, target.long()


def cross_entropy(logits, labels, weight=None, size_average=None, ignore_index=-100, reduce=None,
                  reduction="mean", label_smoothing=0.0):
    """F.cross_entropy: logits (N, C), (C,) or (N, C, d1, …, dK), classes on axis 1 (0 unbatched).

    `labels` are class indices of shape (N,), () or (N, d1, …, dK), or class probabilities of the
    logits' shape; `weight`, `ignore_index` (-100 by default: such targets count nothing) and
    `label_smoothing` as torch's. Reading labels for the range check syncs with the device: a
    training loop whose data is checked once can call F.cross_entropy itself.
    """
    reduction = legacy_reduction(size_average, reduce, reduction)
    _, labels = _checked("cross_entropy", logits, labels, weight, ignore_index, label_smoothing)
    return F.cross_entropy(logits, labels, weight=weight, ignore_index=ignore_index, reduction=reduction,
                           label_smoothing=float(label_smoothing))


def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean"):
    """F.nll_loss: −input[target] over log-probabilities (classes on axis 1), weighted and ignoring
    `ignore_index` as torch's; 'mean' divides by the summed weights of the counted targets."""
    reduction = legacy_reduction(size_average, reduce, reduction)
    _, target = _checked("nll_loss", input, target, weight, ignore_index, probabilities_allowed=False)
    return F.nll_loss(input, target, weight=weight, ignore_index=ignore_index, reduction=reduction)
