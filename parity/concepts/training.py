"""Concepts of the models and of training.

`models.<model>`: one forward pass of each model, with gradients for the input and every parameter.
`train.<model>`: a few training steps from identical weights on identical batches (one seeded
shuffler); the compared outputs are the per-step losses and the model's outputs after the last step.
<model> is the model's one name, the snake_case of its class (`training.MODELS`).
Inputs are NCHW (torch's layout); the JAX adapters transpose images to NHWC themselves.
"""
from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import torch

import jax_impl as J
import torch_impl as T
from parity import bridge, convert, data, training
from parity.concept import Concept, Sample

CONCEPTS: list[Concept] = []

def _to_flax(model):
    return lambda p: training.torch_to_flax(model, p)


def _to_torch(model):
    return lambda g: training.flax_to_torch(model, g)


def _init(model: str, kwargs: dict, rng, dt) -> dict:
    """Initial weights drawn in NumPy in torch's ranges (docs/traps.md, trap 16), for the model's torch twin."""
    return training.init_state_dict(training.build(model, kwargs, "torch", dt.name), rng)


def _jax_in(x):
    return convert.nchw_to_nhwc(x) if x.ndim == 4 else x


def _jax_model(model, p, kwargs, dtype):
    return bridge.flax_module(getattr(J.models, training.class_name(model)), p, **dict(kwargs), dtype=dtype)


def _torch_model(model, p, kwargs, dtype, device):
    m = training.build(model, dict(kwargs), "torch", dtype).to(device)
    m.load_state_dict(p)
    return m


# ---------------------------------------------------------------- models: forward and gradients
_FORWARD = {  # model -> [(label, input shape, constructor arguments)]
    "linear_regression": [("d2l w (2,1)", (8, 2), {"in_features": 2}), ("5 features", (3, 5), {"in_features": 5})],
    "linear_net": [("8×8 digits width 64", (4, 1, 8, 8), {"in_features": 64, "num_classes": 10}),
                ("tiny 3×4, 3 classes", (2, 1, 3, 4), {"in_features": 12, "num_classes": 3})],
    "simple_net": [("8×8 digits 64-128-10", (4, 1, 8, 8), {"in_features": 64}),
            ("tiny 12-5-3", (2, 1, 3, 4), {"in_features": 12, "hidden": 5, "num_classes": 3})],
    # padding 0 as for 28×28 (train.small_cnn runs the digits' padding 1); 2·2 maps of 3 channels
    # into fc1, so its rows are permuted (docs/traps.md, trap 4)
    "small_cnn": [("10×10 padding 0, 2 channels in", (2, 2, 10, 10),
             {"in_channels": 2, "image_size": 10, "channels": (2, 3), "hidden": 5, "num_classes": 4, "padding": 0})],
}


def _forward_samples(model):
    def samples(rng, dt):
        out = []
        for label, shape, kw in _FORWARD[model]:
            x = (rng.standard_normal(shape).astype(dt) if model == "linear_regression"
                 else rng.uniform(0, 1, shape).astype(dt))
            out.append(Sample(label, {"x": x}, _init(model, kw, rng, dt),
                              {"kwargs": tuple(kw.items()), "dtype": dt.name}, fd_ok=model != "small_cnn"))
        return out
    return samples  # fd_ok: max-pooling and relu have kinks where random inputs can land


_SUMMARY = {
    "linear_regression": "d2l's ŷ = x·w + b with w (in, 1): same layout in both",
    "linear_net": "flatten (NHWC vs NCHW order agree for 1 channel), Linear",
    "simple_net": "flatten, Linear, ReLU, Linear (the seed's 784-128-10)",
    "small_cnn": "(Conv-ReLU-Pool)×2, flatten (docs/traps.md, trap 4), Linear-ReLU-Linear",
}
for _model in training.MODELS:
    CONCEPTS.append(Concept(
        name=f"models.{_model}", group="models", traps=(4,) if _model == "small_cnn" else (),
        summary=f"{training.class_name(_model)}: {_SUMMARY[_model]}",
        samples=_forward_samples(_model),
        jax=lambda p, x, kwargs, dtype, _m=_model: _jax_model(_m, p, kwargs, dtype)(_jax_in(x["x"])),
        torch=lambda p, x, kwargs, dtype, _m=_model: bridge.torch_call(
            _torch_model(_m, {k: v.detach() for k, v in p.items()}, kwargs, dtype, x["x"].device), p, x["x"]),
        covers=(f"models.{training.class_name(_model)}",), grad_inputs=("x",),
        params_to_jax=_to_flax(_model), grads_to_torch=_to_torch(_model)))


# ---------------------------------------------------------------- train: a few steps
STEPS, BATCH = 3, 8

_TRAIN = {  # model -> (constructor arguments, [(label, optimizer, hyperparameters)])
    "linear_regression": ({"in_features": 2}, [("sgd lr 0.03", "sgd", {"lr": 0.03})]),
    "linear_net": ({"in_features": 64}, [("sgd momentum 0.9", "sgd", {"lr": 0.1, "momentum": 0.9})]),
    "simple_net": ({"in_features": 64, "hidden": 16},
                   [("adamw wd 0.1", "adamw", {"lr": 0.01, "weight_decay": 0.1})]),
    # SGD only: Adam moves a parameter by lr·m̂/(√v̂ + eps), so for a gradient entry near eps in size
    # a rounding difference δ of the convolutions' gradients becomes a parameter difference of about
    # lr·δ/eps: ~1e-5 in float32 after one step, beyond the one-call tolerance compared here
    "small_cnn": ({"image_size": 8, "channels": (4, 8), "hidden": 16, "padding": 1},
                  [("sgd momentum 0.9", "sgd", {"lr": 0.05, "momentum": 0.9})]),
}


def _train_samples(model):
    def samples(rng, dt):
        kw, cases = _TRAIN[model]
        out = []
        for label, opt, hyper in cases:
            if model == "linear_regression":
                ds = data.synthetic_linear(n=40, seed=int(rng.integers(1 << 30)), test_fraction=0.0)
            else:
                ds = data.synthetic_images(n=32, seed=int(rng.integers(1 << 30)), test_fraction=0.0)
            n = len(ds.x_train)
            sh = data.Shuffler(n, BATCH, seed=int(rng.integers(1 << 30)))
            idx = np.concatenate([sh.epoch() for _ in range(math.ceil(STEPS / sh.steps_per_epoch))])[:STEPS]
            out.append(Sample(f"{label}, {STEPS} steps of {BATCH}",
                              {"x": ds.x_train.astype(dt), "y": ds.y_train.astype(dt) if model == "linear_regression"
                               else ds.y_train, "idx": idx},
                              _init(model, kw, rng, dt),
                              {"kwargs": tuple(kw.items()), "opt": opt, "hyper": tuple(hyper.items()),
                               "dtype": dt.name}))
        return out
    return samples


def _jax_train(model, p, x, kwargs, opt, hyper, dtype):
    loss = J.losses.mse_loss if model == "linear_regression" else J.losses.cross_entropy
    trainer = J.train.Trainer(_jax_model(model, p, kwargs, dtype), J.optim.from_library(opt, **dict(hyper)), loss)
    xs = _jax_in(x["x"])
    losses = [trainer.step(xs, x["y"], x["idx"][i]) for i in range(x["idx"].shape[0])]
    return jnp.stack(losses), trainer.predict(xs)


def _torch_train(model, p, x, kwargs, opt, hyper, dtype):
    loss = T.losses.mse_loss if model == "linear_regression" else T.losses.cross_entropy
    m = _torch_model(model, p, kwargs, dtype, x["x"].device)
    trainer = T.train.Trainer(m, T.optim.from_library(opt, **dict(hyper)), loss)
    losses = [trainer.step(x["x"], x["y"], row) for row in x["idx"]]
    return torch.stack(losses), trainer.predict(x["x"])


for _model in _TRAIN:
    CONCEPTS.append(Concept(
        name=f"train.{_model}", group="train",
        summary=f"{training.class_name(_model)}: {STEPS} training steps (library optimisers) from the same weights "
                f"and batches; losses and outputs",
        samples=_train_samples(_model),
        jax=lambda p, x, _m=_model, **kw: _jax_train(_m, p, x, **kw),
        torch=lambda p, x, _m=_model, **kw: _torch_train(_m, p, x, **kw),
        covers=(f"models.{training.class_name(_model)}", "train.Trainer"), differentiable=False,
        params_to_jax=_to_flax(_model),
        # the Trainer jits its step itself, with donated buffers; an outer jit would inline that
        # step and compare a different program from the one training runs
        jit=False))
