"""Tensor basics in PyTorch: creation, products, shape changes, NumPy interop (docs/concepts.md §1).

dtypes (shape_rules.dtypes): matmul and mm refuse bool and mixed dtypes with the message JAX's twin
gives (torch's own is a RuntimeError from the kernel); mul promotes by torch's rules, which JAX's twin copies.
"""
import torch

from shape_rules.dtypes import KINDS, check_dtype, check_same_dtype, complex32_error

_NUMERIC = frozenset(getattr(torch, n) for n in KINDS["numeric"][0])


def _check_product(op, a, b):
    """One numeric dtype for both operands; the shared checks (and their message) only when that fails."""
    if a.dtype != b.dtype or a.dtype not in _NUMERIC:
        check_dtype(op, "a", a.dtype)
        check_dtype(op, "b", b.dtype)
        check_same_dtype(op, "a", a.dtype, "b", b.dtype, "cast one of them (torch never mixes dtypes here)")


def randn(key, shape, dtype=torch.float32):
    """Standard-normal samples drawn from an explicit `torch.Generator`.

    torch's stream for a seed differs from JAX's key-based stream (docs/traps.md, trap 17).
    """
    return torch.randn(shape, generator=key, dtype=dtype)


def zeros(shape, dtype=torch.float32):
    """A tensor of zeros."""
    return torch.zeros(shape, dtype=dtype)


def ones(shape, dtype=torch.float32):
    """A tensor of ones."""
    return torch.ones(shape, dtype=dtype)


def eye(n, dtype=torch.float32):
    """The n×n identity matrix."""
    return torch.eye(n, dtype=dtype)


def matmul(a, b):
    """Matrix product with batch broadcasting, like `a @ b`; a and b share one numeric dtype."""
    _check_product("matmul", a, b)
    return torch.matmul(a, b)


def mm(a, b):
    """Strict 2-D matrix product (`torch.mm`): other ranks are rejected, nothing broadcasts."""
    for name, t in (("a", a), ("b", b)):
        if t.dim() != 2:
            raise ValueError(f"mm: {name} must be 2-D, got shape {tuple(t.shape)}")
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"mm: a of shape {tuple(a.shape)} and b of shape {tuple(b.shape)} "
                         f"cannot be multiplied ({a.shape[1]} != {b.shape[0]})")
    _check_product("mm", a, b)
    return torch.mm(a, b)


def mul(a, b):
    """Elementwise (Hadamard) product with broadcasting, in torch's result dtype (JAX's twin copies the rule)."""
    if torch.float16 in (getattr(a, "dtype", None), getattr(b, "dtype", None)) \
            and torch.result_type(a, b) == torch.complex32:  # JAX has no complex32: both twins refuse
        raise complex32_error("mul")
    return a * b


def reshape(x, shape):
    """Reshape; one dimension may be -1. Returns a view that shares memory when it can (docs/traps.md, trap 27)."""
    return x.reshape(shape)


def flatten_batch(x):
    """Keep the first axis and flatten the rest: the seed's `x.view(x.shape[0], -1)`."""
    return x.view(x.shape[0], -1)


def from_numpy(a):
    """A tensor that shares memory with the NumPy array `a`: writes to either are seen by both."""
    return torch.from_numpy(a)


def to_numpy(x):
    """A NumPy array sharing the tensor's memory (detached from the autograd graph first)."""
    return x.detach().numpy()
