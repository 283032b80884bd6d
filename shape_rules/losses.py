"""The argument rules of cross_entropy, nll_loss and softmax's `dim`, as torch 2.13 applies them.

Pure Python on shapes (tuples) and dtype names, so both twins raise the same message for the same bad
value before any arithmetic, and agree on what the arguments mean:

* class indices or probabilities: torch reads a target of the logits' own shape as class
  probabilities (which must be floating) and any other target as class indices (which must be
  integers), with the class axis at 1 for (N, C, d1, …, dK) input and at 0 for unbatched (C,) input;
* `weight` is one value per class, in the logits' dtype; `ignore_index` is an int, and is refused
  for probability targets unless it is negative (torch's rule); `label_smoothing` lies in [0, 1];
* `size_average`/`reduce`, torch's deprecated pair, map onto `reduction` with torch's warning.

Where torch's own refusal differs in kind it is named: torch raises IndexError for a label out of
range and RuntimeError for most of the rest; the twins raise ValueError (a DtypeError, also a
TypeError, for dtypes) with one shared message. Two refusals are the twins' own (torch accepts the
value): a negative label_smoothing (torch silently treats it as 0) and 1-D logits with a 1-D target
(torch reads a (1,) target against (C,) logits as one class index).
"""
from __future__ import annotations

import warnings

from shape_rules.dtypes import FLOATING, DtypeError, check_dtype, check_labels, check_same_dtype, dtype_name, \
    promote_types

REDUCTIONS = ("mean", "sum", "none")
_SHAPES = "(C,) with labels (), (N, C) with labels (N,) or (N, C, d1, …, dK) with labels (N, d1, …, dK)"


def check_reduction(reduction) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def legacy_reduction(size_average, reduce, reduction) -> str:
    """`reduction`, or what torch's deprecated `size_average`/`reduce` mean when either is given
    (torch.nn._reduction.legacy_get_string, with its warning): both unset or true → 'mean', only
    reduce true → 'sum', reduce false → 'none'."""
    if size_average is not None or reduce is not None:
        size_average = True if size_average is None else size_average
        reduce = True if reduce is None else reduce
        reduction = "mean" if size_average and reduce else "sum" if reduce else "none"
        warnings.warn(f"size_average and reduce args will be deprecated, please use reduction='{reduction}' "
                      f"instead.", UserWarning, stacklevel=3)
    return check_reduction(reduction)


def check_class_loss(op: str, input_shape: tuple, input_dtype, target_shape: tuple, target_dtype,
                     weight_shape: tuple | None, weight_dtype, ignore_index, label_smoothing: float = 0.0,
                     probabilities_allowed: bool = True) -> tuple[bool, str]:
    """(probabilities?, result dtype name) for cross_entropy (`op` 'cross_entropy', input = logits) or
    nll_loss ('nll_loss', input = log-probabilities, no probability targets); a ValueError otherwise.

    The result dtype is the input's for class indices, the input's and target's promoted for
    probabilities (torch computes input · target).
    """
    what = "logits" if op == "cross_entropy" else "input"
    x = check_dtype(op, what, input_dtype, kind="floating")
    shape, tshape = tuple(input_shape), tuple(target_shape)
    if not isinstance(ignore_index, int) or isinstance(ignore_index, bool):
        raise TypeError(f"{op}: ignore_index must be an int, got {ignore_index!r}")
    if not isinstance(label_smoothing, (int, float)) or isinstance(label_smoothing, bool) or \
            not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{op}: label_smoothing must be between 0.0 and 1.0, got {label_smoothing!r}")
    if len(shape) == 0:
        raise ValueError(f"{op}: {what} must have a class axis: {_SHAPES}; got {what} of shape ()")
    c = shape[0] if len(shape) == 1 else shape[1]
    if weight_shape is not None:
        if tuple(weight_shape) != (c,):
            raise ValueError(f"{op}: weight must have shape ({c},), one value per class, got "
                             f"{tuple(weight_shape)}")
        check_same_dtype(op, "weight", weight_dtype, what, x,
                         f"cast the weight to the {what}' dtype (torch requires the same dtype)")
    probabilities = tshape == shape
    if probabilities:
        if not probabilities_allowed:
            raise ValueError(f"{op}: target must hold class indices of shape "
                             f"{_index_shape(shape)}, got a target of the input's shape {shape} "
                             f"(class probabilities: use cross_entropy)")
        t = dtype_name(target_dtype)
        if t not in FLOATING:
            raise DtypeError(f"{op}: a target of the {what}' shape {shape} holds class probabilities and "
                             f"must be floating, got target dtype {t}")
        if ignore_index >= 0:
            raise ValueError(f"{op}: ignore_index is not supported for class-probability targets, "
                             f"got ignore_index={ignore_index}")
        return True, promote_types(x, t)
    want = _index_shape(shape)
    if tshape != want:
        if len(shape) == 1:
            raise ValueError(f"{op}: labels of shape {tshape} do not fit {what} of shape {shape}: "
                             f"{what} must be 2-D (N, C) with labels (N,), or {_SHAPES}")
        detail = f"(N, C) {shape}" if len(shape) == 2 else f"(N, C, d1, …, dK) {shape}"
        raise ValueError(f"{op}: labels must have shape {want} to match {what} {detail}, got {tshape}")
    if dtype_name(target_dtype) in FLOATING:
        raise DtypeError(f"{op}: labels must be integers (class indices), got labels dtype "
                         f"{dtype_name(target_dtype)} for labels of shape {tshape} (class probabilities "
                         f"need the {what}' shape {shape})")
    check_labels(target_dtype)
    return False, x


def _index_shape(shape: tuple) -> tuple:
    """The class-index target's shape for input `shape`: () for (C,), (N, d1, …) for (N, C, d1, …)."""
    return () if len(shape) == 1 else (shape[0],) + tuple(shape[2:])


def weight_type_error(op: str, weight) -> TypeError:
    """The refusal of a `weight` that is no array, such as a reduction passed by position (torch's
    order puts weight third: (input, target, weight, size_average, ignore_index, reduce, reduction))."""
    return TypeError(f"{op}: weight must be an array of one value per class or None, got "
                     f"{type(weight).__name__} {weight!r}; pass reduction (and the other options) by keyword: "
                     f"the third positional argument is weight, as in torch")


def check_label_range(op: str, num_classes: int, low: int, high: int) -> None:
    """Concrete labels (the ignored ones left out) lie in [0, C): torch raises IndexError otherwise."""
    if low < 0 or high >= num_classes:
        raise ValueError(f"{op}: labels must lie in [0, {num_classes}) (or equal ignore_index), got range "
                         f"[{low}, {high}]")


def softmax_dim(op: str, ndim: int, dim) -> int:
    """The non-negative axis softmax/log_softmax reduce over, by torch's rules.

    dim None: torch's deprecated implicit choice (0 for 0-, 1- and 3-D input, else 1), with its
    warning; an int out of [-max(ndim, 1), max(ndim, 1) − 1] raises IndexError as in torch (a 0-d
    input has one axis to name: 0 or −1).
    """
    if dim is None:
        dim = 0 if ndim in (0, 1, 3) else 1
        warnings.warn(f"Implicit dimension choice for {op} has been deprecated. Change the call to "
                      f"include dim=X as an argument.", UserWarning, stacklevel=4)
    if not isinstance(dim, int) or isinstance(dim, bool):
        raise TypeError(f"{op}: dim must be an int, not {type(dim).__name__}")
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise IndexError(f"Dimension out of range (expected to be in range of [{-n}, {n - 1}], but got {dim})")
    return dim % n
