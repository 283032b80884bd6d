"""Batch normalisation in PyTorch over NCHW input, with input validation.

Flax's twin keeps torch's meaning of momentum and torch's unbiased running variance (traps 11–13).
dtypes: a floating layer; the input has its dtype or is float16/bfloat16 into a float32 layer (torch's
mixed mode); anything else raises the shared dtype message instead of the kernel's RuntimeError.
"""
from __future__ import annotations

import torch
from torch import nn

from shape_rules import check_batchnorm_args
from shape_rules.dtypes import check_batchnorm_input, check_layer_dtype

from torch_impl.checks import check_input


class BatchNorm2d(nn.BatchNorm2d):
    """Per-channel batch normalisation of NCHW input with running mean and variance.

    nn.BatchNorm2d with validation; momentum 0.1 is Flax's 0.9, None the cumulative average;
    track_running_stats=False keeps no statistics and normalises with the batch's own in eval too.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True, *,
                 dtype=torch.float32):
        check_batchnorm_args(num_features, eps, momentum)
        name = check_layer_dtype("BatchNorm2d", dtype)
        super().__init__(num_features, float(eps), None if momentum is None else float(momentum), affine,
                         bool(track_running_stats), dtype=dtype)
        self._layer_dtype = name  # the dtype an input must have when no parameter or buffer holds it

    def forward(self, x):
        check_input("BatchNorm2d", x, self.num_features, "num_features")
        held = self.running_mean if self.running_mean is not None else self.weight
        layer = held.dtype if held is not None else self._layer_dtype
        if x.dtype != layer:  # the layer's dtype is floating (checked when built)
            check_batchnorm_input(x.dtype, layer)
        if (self.training or self.running_mean is None) and x.shape[0] * x.shape[2] * x.shape[3] == 1:
            raise ValueError(f"BatchNorm2d: expected more than 1 value per channel when training, "
                             f"got input shape {tuple(x.shape)}")
        return super().forward(x)
