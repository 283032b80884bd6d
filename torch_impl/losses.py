"""Losses in PyTorch: mean squared error and cross-entropy from integer labels (SEEDS.md §5).

`nn.MSELoss` only warns when (10, 1) meets (10,) and then broadcasts to (10, 10); this raises.
dtypes (shape_rules.dtypes): floating predictions and logits, integer labels of any width (cast to
int64 for torch's kernel); other dtypes raise the shared message instead of the kernel's error.
"""
import torch
import torch.nn.functional as F

from shape_rules.dtypes import KINDS, check_dtype, check_labels, check_mse_dtypes

_INTEGER = frozenset(getattr(torch, n) for n in KINDS["integer"][0])

_REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def mse_loss(y_hat, y, reduction="mean"):
    """Mean (or sum) of (y_hat − y)²; shapes must be equal."""
    _check_reduction(reduction)
    if tuple(y_hat.shape) != tuple(y.shape):
        raise ValueError(
            f"mse_loss: y_hat has shape {tuple(y_hat.shape)} but y has shape "
            f"{tuple(y.shape)}; they must be equal (broadcasting them would compare every "
            f"prediction with every target). Reshape one of them first.")
    if not (y_hat.is_floating_point() and y.dtype == y_hat.dtype):
        check_mse_dtypes(y_hat.dtype, y.dtype)
    return F.mse_loss(y_hat, y, reduction=reduction)


def cross_entropy(logits, labels, reduction="mean"):
    """Cross-entropy of logits (N, C) against integer labels (N,) in [0, C).

    Class axis is 1 (last here); torch also skips labels equal to ignore_index=-100, which is
    rejected here like any other out-of-range label so that both twins agree.
    """
    _check_reduction(reduction)
    if logits.dim() != 2:
        raise ValueError(f"cross_entropy: logits must be 2-D (N, C), got shape {tuple(logits.shape)}")
    if tuple(labels.shape) != tuple(logits.shape[:1]):
        raise ValueError(f"cross_entropy: labels must have shape ({logits.shape[0]},) to match "
                         f"logits {tuple(logits.shape)}, got {tuple(labels.shape)}")
    if not logits.is_floating_point():
        check_dtype("cross_entropy", "logits", logits.dtype)
    if labels.dtype not in _INTEGER:
        check_labels(labels.dtype)
    c = logits.shape[1]
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= c):
        raise ValueError(f"cross_entropy: labels must lie in [0, {c}), got range "
                         f"[{int(labels.min())}, {int(labels.max())}]")
    return F.cross_entropy(logits, labels.long(), reduction=reduction)
