"""Concepts of docs/concepts.md §1–5: tensors, autograd, activations, the neuron, Linear, losses.

Where both twins have the leaf under one dotted name, `twin()` builds both adapters from it and a
`call(fn, params, inputs, **kwargs)` that maps the runner's arguments onto the leaf's signature.
"""
from __future__ import annotations

import dataclasses
from functools import partial

import numpy as np
import torch

import jax_impl as J
import torch_impl as T
from parity import bridge, convert
from parity.concept import Concept, Sample, twin

CONCEPTS: list[Concept] = []


def _randn(rng, shape, dt):
    return rng.standard_normal(shape).astype(dt)


# ---------------------------------------------------------------- tensors
CONCEPTS.append(Concept(
    name="tensors.creation", group="tensors",
    summary="zeros, ones and eye in the requested dtype",
    samples=lambda rng, dt: [Sample(f"{shape}", {}, kwargs={"shape": shape, "n": n, "dtype": dt.name})
                             for shape, n in (((2, 3), 3), ((4,), 1), ((1, 2, 3, 4), 5))],
    jax=lambda p, x, shape, n, dtype: (J.tensors.zeros(shape, dtype), J.tensors.ones(shape, dtype),
                                       J.tensors.eye(n, dtype)),
    torch=lambda p, x, shape, n, dtype: (T.tensors.zeros(shape, getattr(torch, dtype)),
                                         T.tensors.ones(shape, getattr(torch, dtype)),
                                         T.tensors.eye(n, getattr(torch, dtype))),
    covers=("tensors.zeros", "tensors.ones", "tensors.eye"), differentiable=False))

CONCEPTS.append(twin(
    name="tensors.matmul", group="tensors",
    summary="a @ b with batch broadcasting (2-D, batched, broadcast batch, vector)",
    samples=lambda rng, dt: [Sample(f"{sa}@{sb}", {"a": _randn(rng, sa, dt), "b": _randn(rng, sb, dt)})
                             for sa, sb in (((3, 4), (4, 5)), ((2, 3, 4), (4, 5)),
                                            ((3, 1, 4, 5), (2, 5, 6)), ((4,), (4, 3)), ((64, 128), (128, 32)))],
    leaf="tensors.matmul", call=lambda f, p, x: f(x["a"], x["b"]),
    grad_inputs=("a", "b")))

CONCEPTS.append(twin(
    name="tensors.mm", group="tensors",
    summary="strict 2-D matrix product (no broadcasting)",
    samples=lambda rng, dt: [Sample(f"{m}x{k}@{k}x{n}", {"a": _randn(rng, (m, k), dt), "b": _randn(rng, (k, n), dt)})
                             for m, k, n in ((1, 10, 1), (3, 4, 5), (32, 64, 16))],
    leaf="tensors.mm", call=lambda f, p, x: f(x["a"], x["b"]),
    grad_inputs=("a", "b")))

CONCEPTS.append(twin(
    name="tensors.mul", group="tensors",
    summary="elementwise product with broadcasting",
    samples=lambda rng, dt: [Sample(f"{sa}*{sb}", {"a": _randn(rng, sa, dt), "b": _randn(rng, sb, dt)})
                             for sa, sb in (((3, 4), (3, 4)), ((2, 3, 4), (4,)), ((5, 1), (1, 6)))],
    leaf="tensors.mul", call=lambda f, p, x: f(x["a"], x["b"]),
    grad_inputs=("a", "b")))

CONCEPTS.append(twin(
    name="tensors.reshape", group="tensors", traps=(27,),
    summary="reshape with -1, and the seed's view(x.shape[0], -1) flatten of [1,2,3,4] to [1,24]",
    samples=lambda rng, dt: [Sample(f"{s}->{t}", {"x": _randn(rng, s, dt)}, kwargs={"shape": t})
                             for s, t in (((2, 3, 4), (-1, 4)), ((2, 3, 4), (4, -1)), ((6,), (2, 3)),
                                          ((1, 2, 3, 4), (1, -1)))],
    leaf="tensors.reshape", call=lambda f, p, x, shape: f(x["x"], shape),
    grad_inputs=("x",)))

CONCEPTS.append(twin(
    name="tensors.flatten_batch", group="tensors",
    summary="x.view(x.shape[0], -1): [1,2,3,4] -> [1,24], (8,1,28,28) -> (8,784)",
    samples=lambda rng, dt: [Sample(f"{s}", {"x": _randn(rng, s, dt)})
                             for s in ((1, 2, 3, 4), (8, 1, 28, 28), (5, 7))],
    leaf="tensors.flatten_batch", call=lambda f, p, x: f(x["x"]),
    grad_inputs=("x",)))

CONCEPTS.append(Concept(
    name="tensors.numpy_roundtrip", group="tensors", traps=(27,),
    summary="NumPy -> framework -> NumPy keeps values and dtype (memory sharing: see tests)",
    samples=lambda rng, dt: [Sample("float", {"x": _randn(rng, (3, 4), dt)}),
                             Sample("int", {"x": rng.integers(-5, 5, (6,)).astype(np.int64)})],
    jax=lambda p, x: J.tensors.from_numpy(J.tensors.to_numpy(x["x"])),
    torch=lambda p, x: T.tensors.from_numpy(T.tensors.to_numpy(x["x"])),
    covers=("tensors.from_numpy", "tensors.to_numpy"), differentiable=False,
    jit=False))  # a round trip through host memory cannot be traced


# ---------------------------------------------------------------- autograd
CONCEPTS.append(twin(
    name="autograd.quadratic", group="autograd",
    summary="y = 2x² + 3x + 1 and dy/dx = 4x + 3 (11 at x = 2)",
    samples=lambda rng, dt: [Sample("x=2", {"x": np.array(2.0, dt)}),
                             Sample("random (5,)", {"x": _randn(rng, (5,), dt)})],
    leaf="autograd.quadratic", call=lambda f, p, x: f(x["x"]),
    grad_inputs=("x",)))

CONCEPTS.append(twin(
    name="autograd.poly_sum", group="autograd",
    summary="y = Σ(x² + 2x + 1): 54 and gradient [[4,6],[8,10]] at [[1,2],[3,4]]",
    samples=lambda rng, dt: [Sample("seed [[1,2],[3,4]]", {"x": np.array([[1, 2], [3, 4]], dt)}),
                             Sample("random (3,4)", {"x": _randn(rng, (3, 4), dt)})],
    leaf="autograd.poly_sum", call=lambda f, p, x: f(x["x"]),
    grad_inputs=("x",)))

CONCEPTS.append(Concept(
    name="autograd.value_and_grad", group="autograd", traps=(26,),
    summary="each framework's own gradient API: jax.value_and_grad vs requires_grad_/backward()",
    samples=lambda rng, dt: [Sample("seed [[1,2],[3,4]]", {"x": np.array([[1, 2], [3, 4]], dt)}),
                             Sample("random (4,)", {"x": _randn(rng, (4,), dt)})],
    jax=lambda p, x: J.autograd.value_and_grad(J.autograd.poly_sum, x["x"]),
    torch=lambda p, x: T.autograd.value_and_grad(T.autograd.poly_sum, x["x"]),
    covers=("autograd.value_and_grad",), differentiable=False))

CONCEPTS.append(twin(
    name="autograd.gd_step", group="autograd",
    summary="one update w ← w − lr·dJ/dw on (w, b)",
    samples=lambda rng, dt: [Sample(f"lr={lr}", {"w": _randn(rng, (3, 2), dt), "b": _randn(rng, (2,), dt),
                                                "gw": _randn(rng, (3, 2), dt), "gb": _randn(rng, (2,), dt)},
                                    kwargs={"lr": lr}) for lr in (0.1, 0.03)],
    leaf="autograd.gd_step", call=lambda f, p, x, lr: f((x["w"], x["b"]), (x["gw"], x["gb"]), lr),
    differentiable=False))

CONCEPTS.append(twin(
    name="autograd.fit_line", group="autograd",
    summary="fit y = kx + b to (1,5), (2,7) by gradient descent: k→2, b→3",
    samples=lambda rng, dt: [Sample(f"{steps} steps", {"xs": np.array([1, 2], dt), "ys": np.array([5, 7], dt)},
                                    kwargs={"steps": steps, "lr": 0.1}) for steps in (1, 10, 100)],
    leaf="autograd.fit_line", call=lambda f, p, x, steps, lr: f(x["xs"], x["ys"], 0.0, 0.0, lr, steps),
    differentiable=False))


# ---------------------------------------------------------------- activations
def _activation_samples(rng, dt):
    return [
        Sample("random (4,5)", {"x": _randn(rng, (4, 5), dt) * 3}),
        Sample("zeros and ±edges", {"x": np.array([[0.0, -0.0, 1e-8, -1e-8, 20.0, -20.0]], dt)}, fd_ok=False),
        Sample("large logits 100, 1000", {"x": np.array([[100.0, 1000.0, 999.0, -1000.0]], dt)}, fd_ok=False),
    ]


for _name, _summary in (("relu", "max(0, x); gradient 0 at exactly 0 in both"),
                        ("sigmoid", "1/(1 + e^-x)"),
                        ("log_sigmoid", "log(1/(1 + e^-x)): the seed's misprinted 'sigmoid'"),
                        ("tanh", "hyperbolic tangent")):
    CONCEPTS.append(twin(
        name=f"activations.{_name}", group="activations", summary=_summary, samples=_activation_samples,
        leaf=f"activations.{_name}", call=lambda f, p, x: f(x["x"]), grad_inputs=("x",)))


def _softmax_samples(rng, dt):
    """torch's F.softmax(x, dim): the activation samples along the last axis, other axes, a 0-d input
    (dim 0 or −1: the result is 1, or 0 for log_softmax) and inputs with a zero-size axis (empty
    results; nothing to differentiate, so no finite differences)."""
    out = [dataclasses.replace(s, kwargs={"dim": -1}) for s in _activation_samples(rng, dt)]
    out += [Sample("random (4,5) dim=0", {"x": _randn(rng, (4, 5), dt) * 3}, kwargs={"dim": 0}),
            Sample("(2,3,4) dim=1", {"x": _randn(rng, (2, 3, 4), dt)}, kwargs={"dim": 1}),
            Sample("0-d dim=0", {"x": np.array(1.5, dt)}, kwargs={"dim": 0}),
            Sample("0-d dim=-1", {"x": np.array(-2.0, dt)}, kwargs={"dim": -1}),
            Sample("(3,0) dim=1 (zero-size reduced axis)", {"x": np.zeros((3, 0), dt)}, kwargs={"dim": 1}, fd_ok=False),
            Sample("(0,5) dim=1 (empty batch)", {"x": np.zeros((0, 5), dt)}, kwargs={"dim": 1}, fd_ok=False)]
    return out


for _name, _summary in (("softmax", "F.softmax(x, dim): stable e^x_i / Σ e^x_j, finite for logits 100 and 1000; "
                                    "0-d and empty input"),
                        ("log_softmax", "F.log_softmax(x, dim): x_i − logΣe^x_j with the max subtracted; "
                                        "0-d and empty input")):
    CONCEPTS.append(twin(
        name=f"activations.{_name}", group="activations", summary=_summary, samples=_softmax_samples, traps=(24,),
        leaf=f"activations.{_name}", call=lambda f, p, x, dim: f(x["x"], dim), grad_inputs=("x",)))


CONCEPTS.append(twin(
    name="activations.gelu", group="activations", traps=(15,),
    summary="x·Φ(x): exact (erf) by default as torch, and approximate='tanh', in both",
    samples=lambda rng, dt: [dataclasses.replace(s, label=f"{s.label}, approximate={a}", kwargs={"approximate": a})
                             for a in ("none", "tanh") for s in _activation_samples(rng, dt)],
    leaf="activations.gelu", call=lambda f, p, x, approximate: f(x["x"], approximate),
    grad_inputs=("x",)))


# ---------------------------------------------------------------- the neuron and Linear
CONCEPTS.append(twin(
    name="layers.neuron", group="layers",
    summary="a = sigmoid(x·w + b) on a 1×10 input (w of shape (10, 1))",
    samples=lambda rng, dt: [Sample(f"n={n}", {"x": _randn(rng, (n, 10), dt), "w": _randn(rng, (10, 1), dt),
                                               "b": _randn(rng, (1,), dt)}) for n in (1, 4)],
    leaf="layers.neuron", call=lambda f, p, x: f(x["x"], x["w"], x["b"]),
    grad_inputs=("x", "w", "b")))


def _linear_samples(rng, dt):
    out = []
    for label, x, i, o, bias in (("Linear(10,5) on ones(3,10)", np.ones((3, 10), dt), 10, 5, True),
                                 ("(4,7)->3", _randn(rng, (4, 7), dt), 7, 3, True),
                                 ("no bias", _randn(rng, (2, 6), dt), 6, 4, False),
                                 ("batched (2,3,8)->2", _randn(rng, (2, 3, 8), dt), 8, 2, True),
                                 ("empty batch (0,7)->3", np.zeros((0, 7), dt), 7, 3, True)):
        bound = 1 / np.sqrt(i)  # torch's default init range, drawn once in NumPy (docs/traps.md, trap 16)
        params = {"weight": rng.uniform(-bound, bound, (o, i)).astype(dt)}
        if bias:
            params["bias"] = rng.uniform(-bound, bound, (o,)).astype(dt)
        out.append(Sample(label, {"x": x}, params,
                          {"in_features": i, "out_features": o, "bias": bias, "dtype": dt.name},
                          fd_ok=x.size > 0))  # torch's gradcheck refuses zero-size inputs
    return out


def _torch_linear(p, x, in_features, out_features, bias, dtype):
    m = T.layers.Linear(in_features, out_features, bias, dtype=getattr(torch, dtype)).to(x["x"].device)
    return bridge.torch_call(m, p, x["x"])


def _jax_linear(p, x, in_features, out_features, bias, dtype):
    m = bridge.flax_module(J.layers.Linear, p, in_features=in_features, out_features=out_features,
                           bias=bias, dtype=dtype)
    return m(x["x"])


CONCEPTS.append(Concept(
    name="layers.linear", group="layers", traps=(2,),
    summary="y = xWᵀ + b: torch weight (out,in) ⇄ Flax kernel (in,out)",
    samples=_linear_samples, jax=_jax_linear, torch=_torch_linear,
    covers=("layers.Linear",), grad_inputs=("x",),
    params_to_jax=convert.linear_torch_to_flax, grads_to_torch=convert.linear_flax_to_torch))


# ---------------------------------------------------------------- losses
def _mse_samples(rng, dt):
    # empty inputs: torch's gradcheck refuses zero-size inputs, so no finite differences
    out = [Sample(f"{shape} {red}", {"y_hat": _randn(rng, shape, dt), "y": _randn(rng, shape, dt)},
                  kwargs={"reduction": red}, fd_ok=0 not in shape)
           for shape, red in (((10,), "mean"), ((10, 1), "mean"), ((4, 3), "sum"), ((6,), "none"),
                              ((0, 3), "sum"), ((0,), "none"))]
    # torch's mean over no elements is 0/0 = nan (gradient: empty)
    return out + [Sample("empty batch (0,) mean: nan", {"y_hat": np.zeros((0,), dt), "y": np.zeros((0,), dt)},
                         kwargs={"reduction": "mean"}, fd_ok=False)]


CONCEPTS.append(twin(
    name="losses.mse", group="losses", traps=(22, 23),
    summary="mean/sum of (ŷ − y)²; (10,1) vs (10,) raises instead of broadcasting; an empty mean is nan",
    samples=_mse_samples,
    leaf="losses.mse_loss", call=lambda f, p, x, reduction: f(x["y_hat"], x["y"], reduction),
    grad_inputs=("y_hat", "y")))

REDUCTIONS = ("mean", "sum", "none")


def _labels(rng, shape, c, ignored=0, ignore_index=-100):
    """Class indices in [0, c) of `shape`, the first `ignored` of them set to ignore_index."""
    y = rng.integers(0, c, shape).astype(np.int64)
    y.reshape(-1)[:ignored] = ignore_index
    return y


def _weight(rng, c, dt):
    return rng.uniform(0.2, 2.0, (c,)).astype(dt)


def _class_loss_samples(rng, dt, smoothing: bool):
    """Every option of F.cross_entropy / F.nll_loss with class-index targets, each in the three
    reductions: class weights, ignored targets (the default -100, and an index inside [0, C)),
    label smoothing (cross_entropy only), K-dimensional input, unbatched (C,) input, and the two
    cases where torch's 'mean' divides 0 by 0 and returns nan (every target ignored, an empty batch):
    their gradients are zeros (empty for the empty batch) in torch and in the JAX twin; nan has no
    finite differences, and torch's gradcheck refuses zero-size inputs, so those samples skip them."""
    out = [Sample(f"N={n} C={c} {red}", {"logits": _randn(rng, (n, c), dt) * scale, "labels": _labels(rng, (n,), c)},
                  kwargs={"reduction": red})
           for n, c, red, scale in ((8, 10, "mean", 1), (5, 3, "sum", 1), (4, 6, "none", 1), (3, 4, "mean", 100))]
    smooth = (0.0, 0.1) if smoothing else (0.0,)
    cases = [  # label, logits shape, labels, weight?, ignore_index, nan in 'mean'
        ("weight", (6, 4), _labels(rng, (6,), 4), True, -100, False),
        ("ignore -100 (2 of 6)", (6, 4), _labels(rng, (6,), 4, 2), False, -100, False),
        ("weight, ignore -100", (6, 4), _labels(rng, (6,), 4, 2), True, -100, False),
        ("ignore_index=2 (a class)", (6, 4), np.array([2, 0, 2, 1, 3, 2]), True, 2, False),
        ("K-dim (2,4,3,2), weight, ignore", (2, 4, 3, 2), _labels(rng, (2, 3, 2), 4, 3), True, -100, False),
        ("K-dim (2,3,5)", (2, 3, 5), _labels(rng, (2, 5), 3), False, -100, False),
        ("unbatched (5,)", (5,), np.array(3), True, -100, False),
        ("every target ignored", (4, 3), np.full((4,), -100), False, -100, True),
        ("every target ignored, weight", (4, 3), np.full((4,), -100), True, -100, True),
        ("counted targets all weigh 0 (nan gradients, as torch's)", (4, 3), np.array([0, 2, 0, -100]), "zero",
         -100, True),
        ("unbatched, ignored", (5,), np.array(-100), False, -100, True),
        ("empty batch N=0", (0, 3), np.zeros((0,), np.int64), False, -100, True),
        ("empty batch N=0, weight", (0, 3), np.zeros((0,), np.int64), True, -100, True),
    ]
    for label, shape, labels, weighted, ignore, nan in cases:
        c = shape[0] if len(shape) == 1 else shape[1]
        inputs = {"logits": _randn(rng, shape, dt), "labels": np.asarray(labels, np.int64)}
        if weighted:
            inputs["weight"] = _weight(rng, c, dt) if weighted is True else np.array([0.0, 1.0, 0.0], dt)
        for ls in smooth:
            for red in REDUCTIONS:
                out.append(Sample(f"{label} {red}" + (f" smoothing {ls}" if ls else ""), inputs,
                                  kwargs={"reduction": red, "ignore_index": ignore, "label_smoothing": ls},
                                  fd_ok=not (nan and red == "mean") and inputs["logits"].size > 0))
    if smoothing:
        out.append(Sample("smoothing 1.0 mean", {"logits": _randn(rng, (5, 4), dt), "labels": _labels(rng, (5,), 4)},
                          kwargs={"reduction": "mean", "ignore_index": -100, "label_smoothing": 1.0}))
    return out


def _ce_call(f, p, x, reduction, ignore_index=-100, label_smoothing=0.0):
    return f(x["logits"], x["labels"], x.get("weight"), ignore_index=ignore_index, reduction=reduction,
             label_smoothing=label_smoothing)


CONCEPTS.append(twin(
    name="losses.cross_entropy", group="losses", traps=(23, 22),
    summary="F.cross_entropy from class indices: weight, ignore_index, label_smoothing, (N,C,d1..dK), "
            "unbatched (C,), mean/sum/none; nan where torch's mean divides 0 by 0",
    samples=partial(_class_loss_samples, smoothing=True),
    leaf="losses.cross_entropy", call=_ce_call, grad_inputs=("logits",)))


def _probability_samples(rng, dt):
    """F.cross_entropy against class probabilities (a target of the logits' shape): weight, label
    smoothing, K-dimensional and unbatched input, each reduction; gradients for the logits and the
    target. An empty batch's 'mean' is nan, as torch's."""
    out = []
    for label, shape, weighted, ls in (("(6,4)", (6, 4), False, 0.0), ("(6,4) weight", (6, 4), True, 0.0),
                                       ("(6,4) smoothing 0.2", (6, 4), False, 0.2),
                                       ("(6,4) weight, smoothing 0.2", (6, 4), True, 0.2),
                                       ("K-dim (2,4,3,2) weight", (2, 4, 3, 2), True, 0.0),
                                       ("unbatched (5,) smoothing 0.1", (5,), False, 0.1),
                                       ("empty batch N=0", (0, 3), True, 0.0)):
        c = shape[0] if len(shape) == 1 else shape[1]
        p = rng.dirichlet(np.ones(c), size=int(np.prod(shape)) // c if c else 0)  # rows sum to 1
        classes_last = (shape[0],) + shape[2:] + (c,) if len(shape) > 1 else shape
        target = np.moveaxis(p.reshape(classes_last), -1, 1) if len(shape) > 1 else p.reshape(shape)
        inputs = {"logits": _randn(rng, shape, dt), "labels": target.astype(dt)}
        if weighted:
            inputs["weight"] = _weight(rng, c, dt)
        for red in REDUCTIONS:
            out.append(Sample(f"{label} {red}", inputs, kwargs={"reduction": red, "label_smoothing": ls},
                              fd_ok=shape[0] > 0))  # empty: nan mean, and gradcheck refuses zero-size inputs
    return out


CONCEPTS.append(twin(
    name="losses.cross_entropy_probabilities", group="losses", traps=(23,),
    summary="F.cross_entropy against class probabilities (soft targets): weight, label_smoothing, "
            "K-dim, unbatched; gradients for logits and target",
    samples=_probability_samples,
    leaf="losses.cross_entropy", call=_ce_call, grad_inputs=("logits", "labels")))


def _nll_call(f, p, x, reduction, ignore_index=-100, label_smoothing=0.0):
    return f(x["logits"], x["labels"], x.get("weight"), ignore_index=ignore_index, reduction=reduction)


CONCEPTS.append(twin(
    name="losses.nll_loss", group="losses", traps=(23,),
    summary="F.nll_loss over log-probabilities: weight, ignore_index, (N,C,d1..dK), unbatched (C,), "
            "mean/sum/none; nan where torch's mean divides 0 by 0",
    samples=partial(_class_loss_samples, smoothing=False),
    leaf="losses.nll_loss", call=_nll_call, grad_inputs=("logits",)))
