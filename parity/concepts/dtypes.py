"""Dtype behaviour: what each twin computes for inputs other than float32/float64.

torch 2.13's CPU kernels are the rule (shape_rules.dtypes; the measured matrix is in
tests/test_twin_dtypes.py, which also checks every refusal). Most of this module is `VARIANTS`: the
float16, bfloat16, integer, bool and complex runs of the concepts of the other modules
(`activations.relu` in float16 is a row of `activations.relu`; parity/concepts/__init__.py folds each
variant into its owner):
  * float16 and bfloat16: inputs and parameters in that dtype, outputs and gradients compared at its
    tolerance (the runner picks it by the compared arrays' dtype);
  * integer and bool dtypes: compared exactly, no gradients;
  * complex64 and complex128: no gradients.
`CONCEPTS` holds what belongs to no single dtype: torch's promotion of mixed operands (one row per
dtype of the first operand), integer labels of cross_entropy, and Flatten alone.
parity/bridge.py carries bfloat16 into torch through float32 (exact).
Every sample has fd_ok=False: finite differences need float64 and belong to the float64 runs.
"""
from __future__ import annotations

import copy
import dataclasses
from functools import partial

import numpy as np
import torch
from flax import nnx

import jax_impl as J
import torch_impl as T
from parity import bridge, convert
from parity.concept import Concept, Sample, Variant, twin, variant
from parity.names import COMPLEX, HALVES
from parity.concepts.layers import torch_conv_call

CONCEPTS: list[Concept] = []
VARIANTS: list[Variant] = []
GROUP = "dtypes"
INTS = ("int32", "int64", "uint8", "int16")


def _randn(rng, shape, dt, scale=1.0):
    """Standard-normal samples rounded to `dt` (float16, bfloat16 or a float/complex run dtype)."""
    dt = np.dtype(dt)
    if dt.kind == "c":
        return ((rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) * scale).astype(dt)
    return (rng.standard_normal(shape) * scale).astype(np.float32).astype(dt)


def _ints(rng, shape, dt):
    lo = 0 if dt == "uint8" else -5
    return rng.integers(lo, 6, shape).astype(dt)


def _real(complex_dt) -> np.dtype:
    """The real dtype of a complex one (float32 for complex64)."""
    return np.dtype(np.float32 if np.dtype(complex_dt) == np.complex64 else np.float64)


def _samples(make):
    """A sample generator from `make(rng, run_dtype) -> [Sample]`, with fd_ok=False on every sample."""
    def samples(rng, dt):
        return [dataclasses.replace(s, fd_ok=False) for s in make(rng, dt)]
    return samples


def _by_label(make):
    """A generator of the samples of `make` whose label starts with the run's dtype ("int32 k2"): `make`
    draws every dtype's samples from one stream, so each dtype's arrays are those of all dtypes' run."""
    def samples(rng, dt):
        return [s for s in make(rng, dt) if s.label.split()[0] == dt.name]
    return _samples(samples)


def _device(x: dict) -> torch.device:
    return next(iter(x.values())).device


def _nhwc(f, x):
    return convert.nhwc_to_nchw(f(convert.nchw_to_nhwc(x)))


def _torch_dtype(name: str):
    return getattr(torch, name)


# ---------------------------------------------------------------- adapters of the layer classes
def _torch_linear(p, x, in_features, out_features, bias, dtype):
    m = T.layers.Linear(in_features, out_features, bias, dtype=_torch_dtype(dtype)).to(_device(x))
    return bridge.torch_call(m, p, x["x"])


def _jax_linear(p, x, in_features, out_features, bias, dtype):
    m = bridge.flax_module(J.layers.Linear, p, in_features=in_features, out_features=out_features,
                           bias=bias, dtype=dtype)
    return m(x["x"])


def _torch_conv(p, x, dtype, **kw):
    m = T.conv.Conv2d(**kw, dtype=_torch_dtype(dtype)).to(_device(x))
    return torch_conv_call(m, p, x["x"])  # torch's note on even kernels with padding='same' silenced (expected)


def _jax_conv(p, x, dtype, **kw):
    return _nhwc(bridge.flax_module(J.conv.Conv2d, p, **kw, dtype=dtype), x["x"])


def _torch_pool(cls, p, x, **kw):
    return getattr(T.pooling, cls)(**kw)(x["x"])


def _jax_pool(cls, p, x, **kw):
    return _nhwc(getattr(J.pooling, cls)(**kw), x["x"])


def _torch_flatten(p, x):
    return T.layers.Flatten()(x["x"])


def _jax_flatten(p, x):
    return J.layers.Flatten()(x["x"])  # layout-free here: both flatten the same (N, C, H, W) array


def _torch_dropout(params, x, p, training):
    return T.layers.Dropout(p).train(training)(x["x"], x.get("mask"))


def _jax_dropout(params, x, p, training):
    m = J.layers.Dropout(p)
    if not training:
        m.eval()
    return m(x["x"], x.get("mask"))


def _torch_bn(p, x, num_features, affine, training, dtype, stats):
    m = T.normalization.BatchNorm2d(num_features, affine=affine, dtype=_torch_dtype(dtype))
    m = m.to(_device(x)).train(training)
    state = {**p, "running_mean": x["running_mean"].clone(), "running_var": x["running_var"].clone(),
             "num_batches_tracked": torch.zeros((), dtype=torch.long, device=_device(x))}
    y = torch.func.functional_call(m, state, (x["x"],))
    return (y, state["running_mean"], state["running_var"]) if stats else y


def _jax_bn(p, x, num_features, affine, training, dtype, stats):
    m = J.normalization.BatchNorm2d(num_features, affine=affine, dtype=dtype)
    state = nnx.state(m)
    nnx.replace_by_pure_dict(state, {**p, "mean": x["running_mean"], "var": x["running_var"]})
    nnx.update(m, state)
    if not training:
        m.eval()
    y = _nhwc(m, x["x"])
    return (y, m.mean[...], m.var[...]) if stats else y


# ---------------------------------------------------------------- float16 / bfloat16
def _half(owner, samples, **fields):
    VARIANTS.append(variant(owner, HALVES, _samples(samples), **fields))


def _half_leaf(path, samples, call, grad_inputs, owner=None, **fields):
    _half(owner or path, samples, leaf=path, call=call, grad_inputs=grad_inputs, **fields)


# Every op the twins compute in float16 and bfloat16, with gradients, as torch does; a sample generator
# receives the half dtype (NumPy's float16, or ml_dtypes' bfloat16).
# tensors
_half_leaf("tensors.matmul", lambda rng, dt: [
    Sample(f"{sa}@{sb}", {"a": _randn(rng, sa, dt), "b": _randn(rng, sb, dt)})
    for sa, sb in (((3, 4), (4, 5)), ((2, 3, 8), (8, 5)), ((4,), (4, 3)), ((16, 64), (64, 8)))],
     lambda f, p, x: f(x["a"], x["b"]), ("a", "b"))
_half_leaf("tensors.mm", lambda rng, dt: [
    Sample(f"{m}x{k}@{k}x{n}", {"a": _randn(rng, (m, k), dt), "b": _randn(rng, (k, n), dt)})
    for m, k, n in ((3, 4, 5), (8, 32, 4))], lambda f, p, x: f(x["a"], x["b"]), ("a", "b"))
_half_leaf("tensors.mul", lambda rng, dt: [
    Sample(f"{sa}*{sb}", {"a": _randn(rng, sa, dt), "b": _randn(rng, sb, dt)})
    for sa, sb in (((3, 4), (3, 4)), ((2, 3, 4), (4,)))], lambda f, p, x: f(x["a"], x["b"]), ("a", "b"))
_half_leaf("tensors.reshape", lambda rng, dt: [
    Sample("(2,3,4)->(4,-1)", {"x": _randn(rng, (2, 3, 4), dt)}, kwargs={"shape": (4, -1)})],
     lambda f, p, x, shape: f(x["x"], shape), ("x",))
_half_leaf("tensors.flatten_batch", lambda rng, dt: [
    Sample("(2,3,4,5)", {"x": _randn(rng, (2, 3, 4, 5), dt)})], lambda f, p, x: f(x["x"]), ("x",))
_half("tensors.creation", lambda rng, dt: [Sample("(2,3), n=3", {}, kwargs={"shape": (2, 3), "n": 3,
                                                                            "dtype": dt.name})])

# activations: the same inputs as activations.*, in the half dtype (x·3 fills float16's range of interest)
def _act_samples(rng, dt):
    return [Sample("random (4,9)·3", {"x": _randn(rng, (4, 9), dt, 3.0)}),
            Sample("zeros and ±edges", {"x": np.array([[0.0, -0.0, 1e-3, -1e-3, 8.0, -8.0]]).astype(dt)}),
            Sample("logits 100, 200", {"x": np.array([[100.0, 200.0, 199.0, -200.0]], np.float32).astype(dt)})]

for _op in ("relu", "sigmoid", "log_sigmoid", "tanh"):
    _half_leaf(f"activations.{_op}", _act_samples, lambda f, p, x: f(x["x"]), ("x",))
for _op in ("softmax", "log_softmax"):  # over the last axis, named as torch asks
    _half_leaf(f"activations.{_op}", _act_samples, lambda f, p, x: f(x["x"], -1), ("x",))
_half_leaf("activations.gelu", lambda rng, dt: [
    dataclasses.replace(s, label=f"{s.label}, approximate={a}", kwargs={"approximate": a})
    for a in ("none", "tanh") for s in _act_samples(rng, dt)],
     lambda f, p, x, approximate: f(x["x"], approximate), ("x",))

# layers
_half_leaf("layers.neuron", lambda rng, dt: [
    Sample(f"n={n}", {"x": _randn(rng, (n, 10), dt), "w": _randn(rng, (10, 1), dt), "b": _randn(rng, (1,), dt)})
    for n in (1, 4)], lambda f, p, x: f(x["x"], x["w"], x["b"]), ("x", "w", "b"))


def _linear_samples(rng, dt):
    res = []
    for label, shape, i, o, bias in (("(4,7)->3", (4, 7), 7, 3, True), ("no bias", (2, 6), 6, 4, False),
                                     ("batched (2,3,32)->8", (2, 3, 32), 32, 8, True)):
        bound = 1 / np.sqrt(i)
        params = {"weight": rng.uniform(-bound, bound, (o, i)).astype(np.float32).astype(dt)}
        if bias:
            params["bias"] = rng.uniform(-bound, bound, (o,)).astype(np.float32).astype(dt)
        res.append(Sample(label, {"x": _randn(rng, shape, dt)}, params,
                          {"in_features": i, "out_features": o, "bias": bias, "dtype": dt.name}))
    return res

# Linear(dtype=half): float32 accumulation, one rounding
_half("layers.linear", _linear_samples,
    jax=_jax_linear, torch=_torch_linear, covers=("layers.Linear",), grad_inputs=("x",),
    params_to_jax=convert.linear_torch_to_flax, grads_to_torch=convert.linear_flax_to_torch)
_half("layers.flatten", lambda rng, dt: [Sample("(2,3,4,5)", {"x": _randn(rng, (2, 3, 4, 5), dt)})],
    jax=_jax_flatten, torch=_torch_flatten, covers=("layers.Flatten",), grad_inputs=("x",))


def _dropout_samples(rng, dt):
    res = []
    for label, shape, p, training, masked in (("eval p=0.5", (4, 6), 0.5, False, False),
                                              ("train p=1", (4, 6), 1.0, True, False),
                                              ("train p=0.3, injected mask (1/0.7 rounds)", (5, 6), 0.3, True, True),
                                              ("train p=0.5, injected mask", (2, 3, 4), 0.5, True, True)):
        inputs = {"x": _randn(rng, shape, dt)}
        if masked:
            inputs["mask"] = rng.random(shape) >= p
        res.append(Sample(label, inputs, kwargs={"p": p, "training": training}))
    return res

# Dropout: identity, zeros, one injected mask
_half("layers.dropout", _dropout_samples,
    jax=_jax_dropout, torch=_torch_dropout, covers=("layers.Dropout",), grad_inputs=("x",))


def _conv_samples(rng, dt):
    res = []
    for label, shape, kw in (("3->4 k3 p1", (2, 3, 6, 6),
                              dict(in_channels=3, out_channels=4, kernel_size=3, padding=1)),
                             ("16->2 k3 s2 no bias", (1, 16, 7, 7),
                              dict(in_channels=16, out_channels=2, kernel_size=3, stride=2, bias=False)),
                             ("groups 2 'same'", (1, 4, 5, 5),
                              dict(in_channels=4, out_channels=2, kernel_size=3, groups=2, padding="same"))):
        g = kw.get("groups", 1)
        bound = 1 / np.sqrt(kw["in_channels"] // g * 9)
        params = {"weight": rng.uniform(-bound, bound, (kw["out_channels"], kw["in_channels"] // g, 3, 3))
                  .astype(np.float32).astype(dt)}
        if kw.get("bias", True):
            params["bias"] = rng.uniform(-bound, bound, (kw["out_channels"],)).astype(np.float32).astype(dt)
        res.append(Sample(label, {"x": _randn(rng, shape, dt)}, params, {**kw, "dtype": dt.name}))
    return res

# Conv2d(dtype=half): float32 accumulation, one rounding
_half("layers.conv2d", _conv_samples,
    jax=_jax_conv, torch=_torch_conv, covers=("conv.Conv2d",), grad_inputs=("x",),
    params_to_jax=convert.conv_torch_to_flax, grads_to_torch=convert.conv_flax_to_torch)


def _pool_samples(cases):
    # "constant 0.1" sums 1024 equal terms: a float16 accumulator rounds each step the same way and
    # drifts (a planted one is off by 10.6 float16 ulps, 8 are allowed); torch and this twin accumulate in float32
    return lambda rng, dt: [Sample(label, {"x": np.full(shape, 0.1, dt) if "constant" in label
                                           else _randn(rng, shape, dt)}, kwargs=kw)
                            for label, shape, kw in cases]

_half("layers.max_pool2d", _pool_samples([
    ("k3 s2 p1", (2, 2, 7, 7), dict(kernel_size=3, stride=2, padding=1)),
    ("k2 ceil", (1, 3, 5, 5), dict(kernel_size=2, ceil_mode=True))]),
    jax=partial(_jax_pool, "MaxPool2d"), torch=partial(_torch_pool, "MaxPool2d"),
    covers=("pooling.MaxPool2d",), grad_inputs=("x",))
# AvgPool2d: float32 sums (XLA's reduce_window would sum in the half dtype)
_half("layers.avg_pool2d", _pool_samples([("k3 s2 p1", (2, 2, 7, 7), dict(kernel_size=3, stride=2, padding=1)),
                  ("k32 on constant 0.1 (1024-term sums)", (1, 1, 32, 32), dict(kernel_size=32)),
                  ("ceil exclude pad", (1, 2, 6, 6), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True,
                                                            count_include_pad=False))]),
    jax=partial(_jax_pool, "AvgPool2d"), torch=partial(_torch_pool, "AvgPool2d"),
    covers=("pooling.AvgPool2d",), grad_inputs=("x",))
_half("layers.adaptive_avg_pool2d", _pool_samples([
    ("(5,7)->(2,3)", (2, 3, 5, 7), dict(output_size=(2, 3))),
    ("(32,32)->1 on constant 0.1", (1, 1, 32, 32), dict(output_size=1))]),
    jax=partial(_jax_pool, "AdaptiveAvgPool2d"), torch=partial(_torch_pool, "AdaptiveAvgPool2d"),
    covers=("pooling.AdaptiveAvgPool2d",), grad_inputs=("x",))


def _bn_samples(float32_layer: bool):
    """BatchNorm2d(dtype=the run's) or, with `float32_layer`, BatchNorm2d(float32) on the run's dtype: a float32
    layer keeps float32 running statistics and parameters, compared at float32's tolerance."""
    def make(rng, dt):
        ld = np.dtype(np.float32) if float32_layer else dt
        res = []
        for label, shape, affine, training in (("train", (4, 3, 3, 3), True, True),
                                               ("train, affine=False", (2, 2, 4, 4), False, True),
                                               ("eval", (2, 3, 3, 3), True, False)):
            c = shape[1]
            inputs = {"x": (_randn(rng, shape, np.float32) * 2 + 1).astype(dt),
                      "running_mean": _randn(rng, (c,), ld), "running_var": rng.uniform(0.5, 2.0, (c,)).astype(ld)}
            params = {"weight": rng.uniform(0.5, 1.5, (c,)).astype(ld),
                      "bias": _randn(rng, (c,), ld)} if affine else {}
            res.append(Sample(f"float32 layer, {label}" if float32_layer else label, inputs, params,
                              dict(num_features=c, affine=affine, training=training, dtype=ld.name, stats=True)))
        return res
    return make


def _bn_both(rng, dt):
    """Both layers, each from the same stream state: statistics in float32, output in the input's dtype,
    running statistics in the layer's."""
    other = copy.deepcopy(rng)
    return _bn_samples(False)(rng, dt) + _bn_samples(True)(other, dt)


_half("layers.batchnorm2d", _bn_both, jax=_jax_bn, torch=_torch_bn, covers=("normalization.BatchNorm2d",),
    grad_inputs=("x",), params_to_jax=convert.batchnorm_torch_to_flax,
    grads_to_torch=convert.batchnorm_flax_to_torch)

# losses
_half_leaf("losses.mse_loss", lambda rng, dt: [
    Sample(f"{shape} {red}", {"y_hat": _randn(rng, shape, dt), "y": _randn(rng, shape, dt)},
           kwargs={"reduction": red})
    for shape, red in (((16,), "mean"), ((4, 3), "sum"), ((6,), "none"))],
     lambda f, p, x, reduction: f(x["y_hat"], x["y"], reduction), ("y_hat", "y"), owner="losses.mse")
_half_leaf("losses.cross_entropy", lambda rng, dt: [
    Sample(f"N={n} C={c} {red}", {"logits": _randn(rng, (n, c), dt, scale),
                                  "labels": rng.integers(0, c, (n,)).astype(np.int64)}, kwargs={"reduction": red})
    for n, c, red, scale in ((8, 10, "mean", 1), (5, 3, "sum", 1), (4, 6, "none", 3))],
     lambda f, p, x, reduction: f(x["logits"], x["labels"], reduction=reduction), ("logits",))


# ---------------------------------------------------------------- integer and bool: exact
def _int_leaf(op, dtypes, make, call):
    VARIANTS.append(variant(op, dtypes, _by_label(make), leaf=op, call=call, differentiable=False))


# a @ b in the operands' integer dtype
_int_leaf("tensors.matmul", INTS, lambda rng, dt: [
    Sample(f"{d} {sa}@{sb}", {"a": _ints(rng, sa, d), "b": _ints(rng, sb, d)})
    for d in INTS for sa, sb in (((3, 4), (4, 5)), ((2, 3, 4), (4,)))], lambda f, p, x: f(x["a"], x["b"]))
_int_leaf("tensors.mm", INTS, lambda rng, dt: [
    Sample(d, {"a": _ints(rng, (3, 4), d), "b": _ints(rng, (4, 2), d)}) for d in INTS],
    lambda f, p, x: f(x["a"], x["b"]))
_int_leaf("tensors.reshape", ("int32", "int64", "bool"), lambda rng, dt: [
    Sample(d, {"x": _ints(rng, (2, 3, 4), d) if d != "bool" else rng.random((2, 3, 4)) > 0.5},
           kwargs={"shape": (-1, 4)})
    for d in ("int32", "int64", "bool")], lambda f, p, x, shape: f(x["x"], shape))
_int_leaf("tensors.flatten_batch", ("int32", "uint8", "bool"), lambda rng, dt: [
    Sample(d, {"x": _ints(rng, (2, 3, 4), d) if d != "bool" else rng.random((2, 3, 4)) > 0.5})
    for d in ("int32", "uint8", "bool")], lambda f, p, x: f(x["x"]))
# max(0, x) keeps the integer dtype
_int_leaf("activations.relu", INTS + ("int8",), lambda rng, dt: [
    Sample(d, {"x": _ints(rng, (3, 5), d)}) for d in INTS + ("int8",)], lambda f, p, x: f(x["x"]))


def _mul_promotion_samples(rng, dt):
    """torch's promotion: dimensioned arrays outrank 0-d ones and Python scalars (jnp would promote
    float16 × a float32 0-d array to float32 and int32 × 2.5 to float64 under x64)."""
    a16, a32 = _randn(rng, (3, 4), np.float16), _ints(rng, (3, 4), "int32")
    cases = [("int32 × int64", a32, _ints(rng, (3, 4), "int64"), None),
             ("uint8 × int8", _ints(rng, (3, 4), "uint8"), _ints(rng, (3, 4), "int8"), None),
             ("bool × bool", rng.random((3, 4)) > 0.5, rng.random((3, 4)) > 0.5, None),
             ("bool × int32", rng.random((3, 4)) > 0.5, a32, None),
             ("int32 × int64 0-d", a32, np.array(3, np.int64), None),
             ("int32 × Python 2", a32, None, 2),
             ("float16 × float32 0-d", a16, np.array(1.5, np.float32), None),
             ("float16 × float64 0-d", a16, np.array(-0.75, np.float64), None),
             ("float16 × Python 2.5", a16, None, 2.5),
             ("int32 × float16 0-d", a32, np.array(0.5, np.float16), None),
             ("int32 × float16", a32, _randn(rng, (3, 4), np.float16), None)]
    return [Sample(label, {"a": a} if b is None else {"a": a, "b": b}, kwargs={"scalar": s})
            for label, a, b, s in cases]


CONCEPTS.append(twin(
    name="dtypes.mul_promotion", group=GROUP, traps=(35,),
    summary="a * b in torch's result dtype: 0-d arrays and Python scalars rank below dimensioned arrays "
            "(a row per dtype of a)",
    samples=_by_label(_mul_promotion_samples), leaf="tensors.mul", dtypes=("int32", "uint8", "bool", "float16"),
    call=lambda f, p, x, scalar: f(x["a"], x["b"] if scalar is None else scalar), differentiable=False))

VARIANTS.append(variant(  # zeros, ones and eye in integer and bool dtypes
    "tensors.creation", ("int32", "int64", "uint8", "bool"),
    _by_label(lambda rng, dt: [Sample(d, {}, kwargs={"dtype": d}) for d in ("int32", "int64", "uint8", "bool")]),
    jax=lambda p, x, dtype: (J.tensors.zeros((2, 3), dtype), J.tensors.ones((2, 3), dtype), J.tensors.eye(3, dtype)),
    torch=lambda p, x, dtype: (T.tensors.zeros((2, 3), _torch_dtype(dtype)),
                               T.tensors.ones((2, 3), _torch_dtype(dtype)), T.tensors.eye(3, _torch_dtype(dtype))),
    covers=("tensors.zeros", "tensors.ones", "tensors.eye"), differentiable=False))

# Flatten alone: the dtypes it keeps (float16, bfloat16, integers, bool; its variants)
CONCEPTS.append(Concept(
    name="layers.flatten", group="layers", summary="Flatten: (N, C, H, W) -> (N, C·H·W), keeping the dtype",
    samples=lambda rng, dt: [], dtypes=(), jax=_jax_flatten, torch=_torch_flatten, covers=("layers.Flatten",),
    grad_inputs=("x",), traps=(4,)))
VARIANTS.append(variant(
    "layers.flatten", ("int64", "bool"),
    _by_label(lambda rng, dt: [Sample(d, {"x": _ints(rng, (2, 3, 2, 2), d) if d != "bool" else
                                          rng.random((2, 3, 2, 2)) > 0.5}) for d in ("int64", "bool")]),
    differentiable=False))

# Dropout on integer and bool input: identity in eval and at p=0, zeros at p=1 (training with 0 < p < 1
# refuses them, as torch)
VARIANTS.append(variant(
    "layers.dropout", ("int32", "bool"), _by_label(lambda rng, dt: [
        Sample(f"{d} {label}", {"x": _ints(rng, (3, 4), d) if d != "bool" else rng.random((3, 4)) > 0.5},
               kwargs={"p": p, "training": training})
        for d in ("int32", "bool")
        for label, p, training in (("eval", 0.5, False), ("p=0", 0.0, True), ("p=1", 1.0, True))]),
    jax=_jax_dropout, torch=_torch_dropout, differentiable=False))


def _int_pool_samples(dtypes, cases):
    return _by_label(lambda rng, dt: [Sample(f"{d} {label}", {"x": rng.integers(-50, 50, shape).astype(d)
                                                              if d != "uint8" else rng.integers(0, 200, shape).astype(d)},
                                             kwargs=kw)
                                      for d in dtypes for label, shape, kw in cases])


# MaxPool2d keeps integer dtypes (padding by the dtype's minimum, never chosen)
VARIANTS.append(variant(
    "layers.max_pool2d", INTS + ("int8",), _int_pool_samples(INTS + ("int8",), [
        ("k3 s2 p1", (2, 2, 5, 5), dict(kernel_size=3, stride=2, padding=1)),
        ("k2 ceil", (1, 1, 5, 5), dict(kernel_size=2, ceil_mode=True))]),
    jax=partial(_jax_pool, "MaxPool2d"), torch=partial(_torch_pool, "MaxPool2d"), differentiable=False))

# AvgPool2d on int64: integer sums divided with truncation toward zero, torch's divisors
VARIANTS.append(variant(
    "layers.avg_pool2d", ("int64",), _int_pool_samples(("int64",), [
        ("k2", (2, 2, 6, 6), dict(kernel_size=2)),
        ("k3 s2 p1 include pad", (1, 2, 7, 7), dict(kernel_size=3, stride=2, padding=1)),
        ("k3 s2 p1 ceil exclude pad", (1, 2, 6, 6), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True,
                                                          count_include_pad=False))]),
    jax=partial(_jax_pool, "AvgPool2d"), torch=partial(_torch_pool, "AvgPool2d"), differentiable=False))

CONCEPTS.append(twin(
    name="dtypes.cross_entropy_labels", group=GROUP, traps=(35,),
    summary="cross_entropy takes class indices of any integer dtype (torch's kernel: int64 or uint8; its twin casts)",
    samples=_samples(lambda rng, dt: [
        Sample(f"labels {d}", {"logits": _randn(rng, (5, 4), dt), "labels": rng.integers(0, 4, (5,)).astype(d)})
        for d in ("int64", "int32", "int16", "int8", "uint8")]),
    leaf="losses.cross_entropy", call=lambda f, p, x: f(x["logits"], x["labels"]), grad_inputs=("logits",)))


# ---------------------------------------------------------------- complex: complex64 and complex128
def _complex_leaf(op, make, call):
    VARIANTS.append(variant(op, COMPLEX, _samples(make), leaf=op, call=call, differentiable=False))


_complex_leaf("tensors.matmul", lambda rng, dt: [
    Sample(f"{sa}@{sb}", {"a": _randn(rng, sa, dt), "b": _randn(rng, sb, dt)})
    for sa, sb in (((3, 4), (4, 5)), ((2, 3, 4), (4,)))], lambda f, p, x: f(x["a"], x["b"]))
_complex_leaf("tensors.mm", lambda rng, dt: [
    Sample("3x4@4x2", {"a": _randn(rng, (3, 4), dt), "b": _randn(rng, (4, 2), dt)})],
    lambda f, p, x: f(x["a"], x["b"]))
_complex_leaf("tensors.mul", lambda rng, dt: [
    Sample("complex × complex", {"a": _randn(rng, (3, 4), dt), "b": _randn(rng, (3, 4), dt)}),
    Sample("complex × real", {"a": _randn(rng, (3, 4), dt), "b": _randn(rng, (4,), _real(dt))})],
    lambda f, p, x: f(x["a"], x["b"]))
_complex_leaf("tensors.reshape", lambda rng, dt: [
    Sample("(2,3,4)->(-1,)", {"x": _randn(rng, (2, 3, 4), dt)}, kwargs={"shape": (-1,)})],
    lambda f, p, x, shape: f(x["x"], shape))
_complex_leaf("tensors.flatten_batch", lambda rng, dt: [
    Sample("(2,3,4)", {"x": _randn(rng, (2, 3, 4), dt)})], lambda f, p, x: f(x["x"]))
for _op in ("sigmoid", "tanh"):
    _complex_leaf(f"activations.{_op}", lambda rng, dt: [
        Sample("random (4,5)", {"x": _randn(rng, (4, 5), dt)})], lambda f, p, x: f(x["x"]))
_complex_leaf("layers.neuron", lambda rng, dt: [
    Sample("n=3", {"x": _randn(rng, (3, 5), dt), "w": _randn(rng, (5, 1), dt),
                   "b": _randn(rng, (1,), dt)})], lambda f, p, x: f(x["x"], x["w"], x["b"]))


def _complex_layer_samples(kind):
    def make(rng, c):
        if kind == "linear":
            return [Sample("(4,6)->3", {"x": _randn(rng, (4, 6), c)},
                           {"weight": _randn(rng, (3, 6), c, 0.4), "bias": _randn(rng, (3,), c, 0.4)},
                           {"in_features": 6, "out_features": 3, "bias": True, "dtype": c.name})]
        return [Sample("3->2 k3 p1", {"x": _randn(rng, (2, 3, 5, 5), c)},
                       {"weight": _randn(rng, (2, 3, 3, 3), c, 0.2), "bias": _randn(rng, (2,), c, 0.2)},
                       dict(in_channels=3, out_channels=2, kernel_size=3, padding=1, dtype=c.name))]
    return _samples(make)


# Linear(dtype=complex): no conjugation in either; Conv2d(dtype=complex): cross-correlation, no conjugation
VARIANTS.append(variant("layers.linear", COMPLEX, _complex_layer_samples("linear"), jax=_jax_linear,
                        torch=_torch_linear, differentiable=False, params_to_jax=convert.linear_torch_to_flax))
VARIANTS.append(variant("layers.conv2d", COMPLEX, _complex_layer_samples("conv"), jax=_jax_conv, torch=_torch_conv,
                        differentiable=False, params_to_jax=convert.conv_torch_to_flax))
# Dropout on complex input: identity in eval, zeros at p=1 (training with 0 < p < 1 refuses it, as torch)
VARIANTS.append(variant(
    "layers.dropout", COMPLEX, _samples(lambda rng, dt: [Sample(label, {"x": _randn(rng, (3, 4), dt)},
                                             kwargs={"p": p, "training": t})
                                      for label, p, t in (("eval", 0.5, False), ("p=1", 1.0, True))]),
    jax=_jax_dropout, torch=_torch_dropout, differentiable=False))
