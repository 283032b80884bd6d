"""Layers in Flax NNX: the single neuron, Linear, Flatten and Dropout (docs/concepts.md §3–4).

Flax stores a Linear's `kernel` as (in, out) and computes x @ kernel + bias; torch stores
`weight` as (out, in) and computes x @ weight.T + bias (docs/traps.md, trap 2). Flax initialises with
lecun_normal and a zero bias, torch with kaiming_uniform(a=√5) and a uniform bias (docs/traps.md, trap 16).
dtypes follow torch (shape_rules.dtypes): a Linear's input must have the layer's dtype (jnp would
promote), and float16/bfloat16 products accumulate in float32 and round once, as torch's addmm.
"""
import jax
import jax.numpy as jnp
from flax import nnx

from shape_rules.dtypes import (HALF, check_dtype, check_input_matches_layer, check_layer_dtype,
                                check_same_dtype, compute_dtype, float_result, result_type)

from jax_impl.checks import check_x64


def _operand(x) -> tuple:
    """(dtype name, ndim, is a Python scalar) for torch's promotion rule (a traced Python scalar is weak)."""
    t = jax.typeof(x)
    return t.dtype.name, t.ndim, bool(t.weak_type and t.ndim == 0)


@jax.jit
def _neuron(x, w, b):
    for name, t in (("x", x), ("w", w)):
        check_dtype("neuron", name, t.dtype.name)
    check_same_dtype("neuron", "x", x.dtype.name, "w", w.dtype.name, "cast one of them (as torch's matmul)")
    z = x @ w
    zt = result_type("neuron", _operand(z), _operand(b))  # torch's promotion of x·w + b
    z = z.astype(zt) + jnp.asarray(b).astype(zt)
    out = float_result(zt)  # an integer x·w + b gives float32, as torch.sigmoid
    return jax.nn.sigmoid(z.astype(compute_dtype(out))).astype(out)


def neuron(x, w, b):
    """One neuron a = sigmoid(x·w + b) for x (n, d), w (d, 1), b (1,) or a scalar.

    A weight of the wrong shape (the seed's (1, d)) is rejected; reshape it to (d, 1). A bias that
    would broadcast the (n, 1) output to another shape, such as (d,), is rejected too.
    """
    check_x64(x, w, b)
    if jnp.ndim(x) != 2 or jnp.ndim(w) != 2 or jnp.shape(w) != (jnp.shape(x)[1], 1):
        raise ValueError(f"neuron: w must have shape ({jnp.shape(x)[-1]}, 1) for x of shape "
                         f"{tuple(jnp.shape(x))}, got {tuple(jnp.shape(w))}; "
                         f"use w.reshape({jnp.shape(x)[-1]}, 1)")
    if jnp.shape(b) not in ((), (w.shape[1],)):
        raise ValueError(f"neuron: b must have shape ({w.shape[1]},) or be a scalar for w of shape "
                         f"{tuple(w.shape)}, got {tuple(jnp.shape(b))}")
    return _neuron(x, w, b)


class Linear(nnx.Module):
    """y = x @ kernel + bias with kernel of shape (in_features, out_features)."""

    def __init__(self, in_features, out_features, bias=True, *, dtype=jnp.float32, rngs):
        if in_features < 1 or out_features < 1:
            raise ValueError(f"Linear: in_features and out_features must be >= 1, "
                             f"got {in_features} and {out_features}")
        check_layer_dtype("Linear", jnp.dtype(dtype).name)
        check_x64(dtype=dtype)
        self.in_features, self.out_features = in_features, out_features
        self.kernel = nnx.Param(nnx.initializers.lecun_normal()(rngs.params(),
                                                               (in_features, out_features), dtype))
        self.bias = nnx.Param(jnp.zeros((out_features,), dtype)) if bias else None

    def __call__(self, x):
        check_x64(x)
        if x.shape[-1] != self.in_features:
            raise ValueError(f"Linear: input's last axis must be in_features={self.in_features}, "
                             f"got shape {tuple(x.shape)}")
        kernel = self.kernel[...]
        check_input_matches_layer("Linear", x.dtype.name, kernel.dtype.name)
        if x.dtype.name in HALF:  # torch's addmm: float32 accumulation, bias added, one rounding
            y = jnp.matmul(x, kernel, preferred_element_type=jnp.float32)
            y = y + self.bias[...].astype(jnp.float32) if self.bias is not None else y
            return y.astype(x.dtype)
        y = x @ kernel
        return y + self.bias[...] if self.bias is not None else y


@jax.jit
def _flatten(x):
    return x.reshape(x.shape[0], -1)


class Flatten(nnx.Module):
    """The seed's x.view(x.shape[0], -1): everything after the batch axis in one axis.

    On NHWC input the order is (H, W, C), torch's is (C, H, W): a following Linear converts (docs/traps.md, trap 4).
    """

    def __init__(self):
        pass

    def __call__(self, x):
        check_x64(x)
        if jnp.ndim(x) < 2:
            raise ValueError(f"Flatten: expected an input with a batch axis (at least 2-D), "
                             f"got shape {tuple(jnp.shape(x))}")
        return _flatten(x)


@jax.jit
def _masked(x, mask, scale):
    return x * mask.astype(x.dtype) * scale.astype(x.dtype)


@jax.jit
def _zeroed(x):
    return x * jnp.zeros((), x.dtype)  # torch's p = 1 rule: zeros that keep a (zero) gradient


@jax.jit
def _random_masked(x, key, p):
    return _masked(x, jax.random.bernoulli(key, 1.0 - p, x.shape), 1.0 / (1.0 - p))


class Dropout(nnx.Module):
    """Zero each element with probability p in training and scale survivors by 1/(1 − p).

    Masks come from the NNX `dropout` stream (torch's from its global RNG; docs/traps.md, trap 18). The hook: pass
    `mask` (keep = True/1, the input's shape and layout) to apply that mask instead of drawing one.
    `.eval()` (deterministic=True) makes it the identity, as torch's eval mode.
    """

    def __init__(self, p=0.5, *, rngs=None):
        if not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: p must be a probability in [0, 1], got {p!r}")
        self.p = float(p)
        self.deterministic = False  # training mode by default, as torch modules
        if rngs is not None and not isinstance(rngs, nnx.Rngs):
            raise TypeError(f"Dropout: rngs must be an nnx.Rngs or None, got {type(rngs).__name__}")
        self.rngs = rngs["dropout"].fork() if rngs is not None else nnx.data(None)

    def __call__(self, x, mask=None):
        check_x64(x)
        if self.deterministic or self.p == 0.0:
            return x
        if mask is not None and tuple(jnp.shape(mask)) != tuple(jnp.shape(x)):
            raise ValueError(f"Dropout: mask must have the input's shape {tuple(jnp.shape(x))}, "
                             f"got {tuple(jnp.shape(mask))}")
        if self.p == 1.0:
            return _zeroed(x)  # any dtype, as torch
        # torch draws its mask for floating input only; the mask hook stands in for that draw
        check_dtype("Dropout", "input", jnp.result_type(x).name, when=" in training with 0 < p < 1")
        if mask is None:
            if self.rngs is None:
                raise ValueError("Dropout: training mode needs rngs=nnx.Rngs(dropout=...) or a mask")
            return _random_masked(x, self.rngs(), jnp.asarray(self.p))
        return _masked(x, mask, jnp.asarray(1.0 / (1.0 - self.p)))
