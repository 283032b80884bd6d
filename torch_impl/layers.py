"""Layers in PyTorch: the single neuron, Linear, Flatten and Dropout (docs/concepts.md §3–4).

torch stores a Linear's `weight` as (out, in) and computes x @ weight.T + bias; Flax stores
`kernel` as (in, out) (docs/traps.md, trap 2). Default inits differ between the frameworks (trap 16).
dtypes (shape_rules.dtypes): torch's own refusals (integer layers, an input of another dtype than the
layer's) raise the shared message before the kernel would raise a RuntimeError.
"""
import torch
from torch import nn

from shape_rules.dtypes import (KINDS, check_dtype, check_input_matches_layer, check_layer_dtype,
                                check_same_dtype, complex32_error)

_NUMERIC = frozenset(getattr(torch, n) for n in KINDS["numeric"][0])


def neuron(x, w, b):
    """One neuron a = sigmoid(x·w + b) for x (n, d), w (d, 1), b (1,) or a scalar.

    A weight of the wrong shape (the seed's (1, d)) is rejected; fix it with `w.view(d, 1)`. A bias
    that would broadcast the (n, 1) output to another shape, such as (d,), is rejected too.
    """
    if x.dim() != 2 or w.dim() != 2 or tuple(w.shape) != (x.shape[1], 1):
        raise ValueError(f"neuron: w must have shape ({x.shape[-1]}, 1) for x of shape "
                         f"{tuple(x.shape)}, got {tuple(w.shape)}; use w.view({x.shape[-1]}, 1)")
    b_shape = tuple(torch.as_tensor(b).shape)
    if b_shape not in ((), (w.shape[1],)):
        raise ValueError(f"neuron: b must have shape ({w.shape[1]},) or be a scalar for w of shape "
                         f"{tuple(w.shape)}, got {b_shape}")
    if x.dtype != w.dtype or x.dtype not in _NUMERIC:
        for name, t in (("x", x), ("w", w)):
            check_dtype("neuron", name, t.dtype)
        check_same_dtype("neuron", "x", x.dtype, "w", w.dtype, "cast one of them (as torch's matmul)")
    if x.dtype == torch.float16 and torch.result_type(x, b) == torch.complex32:
        raise complex32_error("neuron")  # JAX has no complex32
    return torch.sigmoid(x @ w + b)


class Linear(nn.Linear):
    """y = x @ weight.T + bias with weight of shape (out_features, in_features)."""

    def __init__(self, in_features, out_features, bias=True, *, dtype=torch.float32):
        if in_features < 1 or out_features < 1:
            raise ValueError(f"Linear: in_features and out_features must be >= 1, "
                             f"got {in_features} and {out_features}")
        check_layer_dtype("Linear", dtype)
        super().__init__(in_features, out_features, bias=bias, dtype=dtype)

    def forward(self, x):
        if x.shape[-1] != self.in_features:
            raise ValueError(f"Linear: input's last axis must be in_features={self.in_features}, "
                             f"got shape {tuple(x.shape)}")
        if x.dtype != self.weight.dtype:
            check_input_matches_layer("Linear", x.dtype, self.weight.dtype)
        return super().forward(x)


class Flatten(nn.Flatten):
    """The seed's x.view(x.shape[0], -1): everything after the batch axis in one axis.

    On NCHW input the order is (C, H, W), Flax's NHWC twin gives (H, W, C) (docs/traps.md, trap 4).
    """

    def __init__(self):
        super().__init__(start_dim=1, end_dim=-1)

    def forward(self, x):
        if x.dim() < 2:
            raise ValueError(f"Flatten: expected an input with a batch axis (at least 2-D), "
                             f"got shape {tuple(x.shape)}")
        return super().forward(x)


class Dropout(nn.Dropout):
    """Zero each element with probability p in training and scale survivors by 1/(1 − p).

    Masks come from torch's global RNG (Flax's from a key; docs/traps.md, trap 18). The hook: pass `mask`
    (keep = True/1, the input's shape and layout) to apply that mask instead of drawing one.
    `.eval()` makes it the identity.
    """

    def __init__(self, p=0.5):
        if not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: p must be a probability in [0, 1], got {p!r}")
        super().__init__(float(p))

    def forward(self, x, mask=None):
        if not self.training or self.p == 0.0:
            return x
        if mask is not None and tuple(mask.shape) != tuple(x.shape):
            raise ValueError(f"Dropout: mask must have the input's shape {tuple(x.shape)}, "
                             f"got {tuple(mask.shape)}")
        if self.p == 1.0:
            return x * torch.zeros((), dtype=x.dtype, device=x.device)  # torch's own p=1 rule, any dtype
        if not x.is_floating_point():  # torch draws a mask for floating input only; the hook follows
            check_dtype("Dropout", "input", x.dtype, when=" in training with 0 < p < 1")
        if mask is None:
            return super().forward(x)
        return x * mask.to(x.dtype) * torch.tensor(1.0 / (1.0 - self.p), dtype=x.dtype, device=x.device)
