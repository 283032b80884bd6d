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


def _flax_momentum(momentum: float) -> float:
    """Flax's momentum (weight of the old running value), given torch's (weight of the new batch)."""
    return 1.0 - momentum


@partial(jax.jit, static_argnames=("eps", "decay"))
def _batch_norm_train(x, scale, bias, mean, var, count, eps, decay):
    out, state = x.dtype, mean.dtype
    x, scale, bias, mean, var = _compute(x, scale, bias, mean, var)
    n = x.shape[0] * x.shape[1] * x.shape[2]
    batch_mean = x.mean(axis=(0, 1, 2))
    centred = x - batch_mean
    sq_sum = (centred * centred).sum(axis=(0, 1, 2))  # two passes, as torch (trap 13)
    y = centred * (1 / jnp.sqrt(sq_sum / n + eps))  # the biased variance normalises
    if scale is not None:
        y = y * scale + bias
    # Running statistics are state, not part of the differentiated graph (torch updates them in place).
    batch_mean, unbiased = jax.lax.stop_gradient(batch_mean), jax.lax.stop_gradient(sq_sum / (n - 1))
    new_mean, new_var = decay * mean + (1 - decay) * batch_mean, decay * var + (1 - decay) * unbiased
    return y.astype(out), new_mean.astype(state), new_var.astype(state), count + 1


@partial(jax.jit, static_argnames=("eps",))
def _batch_norm_eval(x, scale, bias, mean, var, eps):
    out = x.dtype
    x, scale, bias, mean, var = _compute(x, scale, bias, mean, var)
    y = (x - mean) * (1 / jnp.sqrt(var + eps))
    return (y * scale + bias if scale is not None else y).astype(out)


def _compute(*arrays):
    """The arrays in the dtype the statistics are computed in: float32 for half input, as torch's kernels."""
    dt = compute_dtype(arrays[0].dtype.name)
    return tuple(None if a is None else a.astype(dt) for a in arrays)


class BatchNorm2d(nnx.Module):
    """Per-channel batch normalisation of NHWC input with running mean and variance.

    Arguments mean what torch's mean (momentum 0.1 = weight of the new batch; Flax's 0.9) and the
    running variance is unbiased as in torch; `.eval()` uses the running statistics.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, *, dtype=jnp.float32):
        check_batchnorm_args(num_features, eps, momentum)
        check_layer_dtype("BatchNorm2d", jnp.dtype(dtype).name)
        check_x64(dtype=dtype)
        self.num_features, self.eps, self.momentum = num_features, float(eps), float(momentum)
        self.use_running_average = False  # training mode by default, as torch modules
        self.scale = nnx.Param(jnp.ones((num_features,), dtype)) if affine else None
        self.bias = nnx.Param(jnp.zeros((num_features,), dtype)) if affine else None
        self.mean = nnx.BatchStat(jnp.zeros((num_features,), dtype))
        self.var = nnx.BatchStat(jnp.ones((num_features,), dtype))
        counter = jax.dtypes.canonicalize_dtype(jnp.int64)  # int64 as torch's where x64 is on
        self.num_batches_tracked = nnx.BatchStat(jnp.zeros((), counter))

    def __call__(self, x):
        check_x64(x)
        check_input("BatchNorm2d", x, self.num_features, "num_features")
        check_batchnorm_input(x.dtype.name, self.mean[...].dtype.name)
        scale = None if self.scale is None else self.scale[...]
        bias = None if self.bias is None else self.bias[...]
        if self.use_running_average:
            return _batch_norm_eval(x, scale, bias, self.mean[...], self.var[...], self.eps)
        if x.shape[0] * x.shape[1] * x.shape[2] < 2:
            raise ValueError(f"BatchNorm2d: expected more than 1 value per channel when training, "
                             f"got input shape {tuple(x.shape)}")
        y, self.mean[...], self.var[...], self.num_batches_tracked[...] = _batch_norm_train(
            x, scale, bias, self.mean[...], self.var[...], self.num_batches_tracked[...], self.eps,
            _flax_momentum(self.momentum))
        return y
