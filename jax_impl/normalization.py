"""Batch normalisation in Flax NNX over NHWC input, with torch's momentum and running variance.

`nnx.BatchNorm` differs from PyTorch in three defaults (traps 11–13): its momentum is the weight of
the old running value (0.99), it stores the biased batch variance, and it computes the variance as
E[x²] − E[x]². This layer keeps torch's meaning of every argument and computes torch's statistics.
dtypes follow torch (shape_rules.dtypes): a floating layer; its input has the layer's dtype, or is
float16/bfloat16 into a float32 layer (torch's mixed mode). Half input is normalised in float32 and
the output keeps the input's dtype; the running statistics keep the layer's dtype (jnp would promote
the output to float32).
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from flax import nnx

from shape_rules import check_batchnorm_args
from shape_rules.dtypes import check_batchnorm_input, check_layer_dtype, compute_dtype

from jax_impl.checks import check_input, check_x64


@partial(jax.jit, static_argnames=("eps", "momentum"))
def _batch_norm_train(x, scale, bias, mean, var, count, eps, momentum):
    """Normalise with the batch's statistics; with running statistics (`mean` not None), also their
    update by torch's rule: momentum·batch + (1 − momentum)·running, momentum None meaning the
    cumulative average (1/n for the n-th batch, n counted before the update as torch's module does)."""
    out = x.dtype
    x, scale, bias = _compute(x, scale, bias)
    n = x.shape[0] * x.shape[1] * x.shape[2]
    batch_mean = x.mean(axis=(0, 1, 2))
    centred = x - batch_mean
    sq_sum = (centred * centred).sum(axis=(0, 1, 2))  # two passes, as torch (trap 13)
    y = centred * (1 / jnp.sqrt(sq_sum / n + eps))  # the biased variance normalises
    if scale is not None:
        y = y * scale + bias
    if mean is None:
        return y.astype(out), None, None, None
    state, (mean_c, var_c) = mean.dtype, _compute(mean, var)
    count = count + 1
    f = (1.0 / count).astype(mean_c.dtype) if momentum is None else momentum
    # Running statistics are state, not part of the differentiated graph (torch updates them in place).
    batch_mean, unbiased = jax.lax.stop_gradient(batch_mean), jax.lax.stop_gradient(sq_sum / (n - 1))
    new_mean, new_var = f * batch_mean + (1 - f) * mean_c, f * unbiased + (1 - f) * var_c
    return y.astype(out), new_mean.astype(state), new_var.astype(state), count


@partial(jax.jit, static_argnames=("eps",))
def _batch_norm_eval(x, scale, bias, mean, var, eps):
    out = x.dtype
    x, scale, bias, mean, var = _compute(x, scale, bias, mean, var)
    y = (x - mean) * (1 / jnp.sqrt(var + eps))
    return (y * scale + bias if scale is not None else y).astype(out)


@jax.jit
def _batch_norm_empty(x, scale, bias):
    """torch's result for an input without elements: empty, in the input's dtype (its parameters get
    zero gradients)."""
    y = _compute(x)[0]
    return (y * scale.astype(y.dtype) + bias.astype(y.dtype) if scale is not None else y).astype(x.dtype)


def _compute(*arrays):
    """The arrays in the dtype the statistics are computed in: float32 for half input, as torch's kernels."""
    dt = compute_dtype(arrays[0].dtype.name)
    return tuple(None if a is None else a.astype(dt) for a in arrays)


class BatchNorm2d(nnx.Module):
    """Per-channel batch normalisation of NHWC input with running mean and variance.

    Arguments mean what torch's mean (momentum 0.1 = weight of the new batch; Flax's 0.9) and the
    running variance is unbiased as in torch; `.eval()` uses the running statistics. momentum=None
    keeps the cumulative average of every batch's statistics; track_running_stats=False keeps no
    statistics (mean, var and num_batches_tracked are None) and normalises with the batch's own in
    eval mode too. An input without elements gives an empty output, leaves the statistics and still
    counts the batch (torch 2.13).
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True, *,
                 dtype=jnp.float32):
        check_batchnorm_args(num_features, eps, momentum)
        self._layer_dtype = check_layer_dtype("BatchNorm2d", jnp.dtype(dtype).name)
        check_x64(dtype=dtype)
        self.num_features, self.eps = num_features, float(eps)
        self.momentum = None if momentum is None else float(momentum)
        self.track_running_stats = bool(track_running_stats)
        self.use_running_average = False  # training mode by default, as torch modules
        self.scale = nnx.Param(jnp.ones((num_features,), dtype)) if affine else None
        self.bias = nnx.Param(jnp.zeros((num_features,), dtype)) if affine else None
        if self.track_running_stats:
            self.mean = nnx.BatchStat(jnp.zeros((num_features,), dtype))
            self.var = nnx.BatchStat(jnp.ones((num_features,), dtype))
            counter = jax.dtypes.canonicalize_dtype(jnp.int64)  # int64 as torch's where x64 is on
            self.num_batches_tracked = nnx.BatchStat(jnp.zeros((), counter))
        else:  # torch registers the three buffers as None
            self.mean = self.var = self.num_batches_tracked = None

    def __call__(self, x):
        check_x64(x)
        check_input("BatchNorm2d", x, self.num_features, "num_features")
        layer = self.mean[...].dtype.name if self.mean is not None else \
            self.scale[...].dtype.name if self.scale is not None else self._layer_dtype
        check_batchnorm_input(x.dtype.name, layer)
        scale = None if self.scale is None else self.scale[...]
        bias = None if self.bias is None else self.bias[...]
        tracking = self.mean is not None
        if self.use_running_average and tracking:
            return _batch_norm_eval(x, scale, bias, self.mean[...], self.var[...], self.eps)
        n = x.shape[0] * x.shape[1] * x.shape[2]
        if n == 1:  # torch's rule (F.batch_norm in training, or without running statistics)
            raise ValueError(f"BatchNorm2d: expected more than 1 value per channel when training, "
                             f"got input shape {tuple(x.shape)}")
        update = tracking and not self.use_running_average
        if n == 0:
            if update:
                self.num_batches_tracked[...] = self.num_batches_tracked[...] + 1
            return _batch_norm_empty(x, scale, bias)
        if not update:
            return _batch_norm_train(x, scale, bias, None, None, None, self.eps, self.momentum)[0]
        y, self.mean[...], self.var[...], self.num_batches_tracked[...] = _batch_norm_train(
            x, scale, bias, self.mean[...], self.var[...], self.num_batches_tracked[...], self.eps, self.momentum)
        return y
