"""Layers in Flax NNX: the single neuron and Linear (SEEDS.md §3–4).

Flax stores a Linear's `kernel` as (in, out) and computes x @ kernel + bias; torch stores
`weight` as (out, in) and computes x @ weight.T + bias (trap 2). Flax initialises with
lecun_normal and a zero bias, torch with kaiming_uniform(a=√5) and a uniform bias (trap 16).
"""
import jax
import jax.numpy as jnp
from flax import nnx


@jax.jit
def _neuron(x, w, b):
    return jax.nn.sigmoid(x @ w + b)


def neuron(x, w, b):
    """One neuron a = sigmoid(x·w + b) for x (n, d), w (d, 1), b (1,).

    A weight of the wrong shape (the seed's (1, d)) is rejected; reshape it to (d, 1).
    """
    if jnp.ndim(x) != 2 or jnp.ndim(w) != 2 or jnp.shape(w) != (jnp.shape(x)[1], 1):
        raise ValueError(f"neuron: w must have shape ({jnp.shape(x)[-1]}, 1) for x of shape "
                         f"{tuple(jnp.shape(x))}, got {tuple(jnp.shape(w))}; "
                         f"use w.reshape({jnp.shape(x)[-1]}, 1)")
    return _neuron(x, w, b)


class Linear(nnx.Module):
    """y = x @ kernel + bias with kernel of shape (in_features, out_features)."""

    def __init__(self, in_features, out_features, bias=True, *, dtype=jnp.float32, rngs):
        if in_features < 1 or out_features < 1:
            raise ValueError(f"Linear: in_features and out_features must be >= 1, "
                             f"got {in_features} and {out_features}")
        self.in_features, self.out_features = in_features, out_features
        self.kernel = nnx.Param(nnx.initializers.lecun_normal()(rngs.params(),
                                                               (in_features, out_features), dtype))
        self.bias = nnx.Param(jnp.zeros((out_features,), dtype)) if bias else None

    def __call__(self, x):
        if x.shape[-1] != self.in_features:
            raise ValueError(f"Linear: input's last axis must be in_features={self.in_features}, "
                             f"got shape {tuple(x.shape)}")
        y = x @ self.kernel[...]
        return y + self.bias[...] if self.bias is not None else y
