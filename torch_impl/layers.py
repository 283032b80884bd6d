"""Layers in PyTorch: the single neuron and Linear (SEEDS.md §3–4).

torch stores a Linear's `weight` as (out, in) and computes x @ weight.T + bias; Flax stores
`kernel` as (in, out) (trap 2). Default inits differ between the frameworks (trap 16).
"""
import torch
from torch import nn


def neuron(x, w, b):
    """One neuron a = sigmoid(x·w + b) for x (n, d), w (d, 1), b (1,).

    A weight of the wrong shape (the seed's (1, d)) is rejected; fix it with `w.view(d, 1)`.
    """
    if x.dim() != 2 or w.dim() != 2 or tuple(w.shape) != (x.shape[1], 1):
        raise ValueError(f"neuron: w must have shape ({x.shape[-1]}, 1) for x of shape "
                         f"{tuple(x.shape)}, got {tuple(w.shape)}; use w.view({x.shape[-1]}, 1)")
    return torch.sigmoid(x @ w + b)


class Linear(nn.Linear):
    """y = x @ weight.T + bias with weight of shape (out_features, in_features)."""

    def __init__(self, in_features, out_features, bias=True, *, dtype=torch.float32):
        if in_features < 1 or out_features < 1:
            raise ValueError(f"Linear: in_features and out_features must be >= 1, "
                             f"got {in_features} and {out_features}")
        super().__init__(in_features, out_features, bias=bias, dtype=dtype)

    def forward(self, x):
        if x.shape[-1] != self.in_features:
            raise ValueError(f"Linear: input's last axis must be in_features={self.in_features}, "
                             f"got shape {tuple(x.shape)}")
        return super().forward(x)
