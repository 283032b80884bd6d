"""nnx.Einsum as a torch Linear: the kernel's axes read from its einsum string.

An `nnx.Einsum("btd,dnh->btnh", (D, N, H))` computes what `torch.nn.Linear(D, N·H)` computes, with the
output's last axis split into heads: the kernel axes that appear in the input operand are the Linear's
input features (in the input's order), the others its output features (in the output's order). torch
keeps the weight as (out, in); the Einsum's kernel holds the same numbers with its axes in the order
its string names them. The conversion only reshapes and transposes, so it is exact both ways.
"""
from __future__ import annotations

import numpy as np


class NotLinear(ValueError):
    """The Einsum is no Linear: a kernel axis that is also a batch axis of the output, or two operands."""


def _operands(einsum_str: str) -> tuple[str, str, str]:
    s = einsum_str.replace(" ", "")
    try:
        lhs, out = s.split("->")
        x, k = lhs.split(",")
    except ValueError:
        raise NotLinear(f"einsum {einsum_str!r}: expected 'input,kernel->output'") from None
    return x.replace("...", "."), k, out.replace("...", ".")


def axes(einsum_str: str) -> tuple[list[str], list[str], str]:
    """(input-feature letters in the input's order, output-feature letters in the output's order, the
    kernel's letters). A kernel axis must be either contracted (in the input, not the output) or an
    output feature (in the output, not the input)."""
    x, k, out = _operands(einsum_str)
    if "." in k:
        raise NotLinear(f"einsum {einsum_str!r}: the kernel may not take '...'")
    ins = [c for c in x if c in k]
    outs = [c for c in out if c in k]
    for c in k:
        if (c in x) == (c in out):
            raise NotLinear(f"einsum {einsum_str!r}: kernel axis {c!r} is "
                            + ("a batch axis" if c in x else "in neither operand"))
    if ins != [c for c in x if c in k] or x[-len(ins):] != "".join(ins) or out[-len(outs):] != "".join(outs):
        raise NotLinear(f"einsum {einsum_str!r}: the contracted axes must end the input and the output "
                        f"features end the output, as a Linear's do")
    return ins, outs, k


def is_linear(fm) -> bool:
    try:
        axes(fm.einsum_str)
        return True
    except (NotLinear, AttributeError, TypeError):
        return False


def kernel_to_flax(w: np.ndarray, fm) -> np.ndarray:
    """torch (out, in) → the Einsum's kernel."""
    ins, outs, k = axes(fm.einsum_str)
    size = dict(zip(k, fm.kernel.shape))
    std = w.T.reshape([size[c] for c in ins] + [size[c] for c in outs])
    return np.ascontiguousarray(std.transpose([(ins + outs).index(c) for c in k]))


def kernel_to_torch(kernel: np.ndarray, fm) -> np.ndarray:
    """The Einsum's kernel → torch (out, in)."""
    ins, outs, k = axes(fm.einsum_str)
    std = kernel.transpose([k.index(c) for c in ins + outs])
    n_in = int(np.prod([std.shape[i] for i in range(len(ins))]))
    return np.ascontiguousarray(std.reshape(n_in, -1).T)


def bias_to_flax(b: np.ndarray, fm) -> np.ndarray:
    """torch (out,) → the Einsum's bias shape; its axes must be the output features in the output's
    order (nnx.Einsum broadcasts the bias over the output's trailing axes)."""
    return b.reshape(fm.bias.shape)
