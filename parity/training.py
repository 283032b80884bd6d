"""Training both twins on identical weights and identical batches, and comparing their loss curves.

One NumPy source serves both frameworks: the data, the initial weights (drawn in NumPy with torch's
init ranges, trap 16, then converted) and the batch order (one seeded `data.Shuffler`). The `parity train` command
around it (checkpoints, TensorBoard events, plots) is in `parity.train_cmd`.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx

import jax_impl as J
import torch_impl as T
from parity import convert, data, precision
from parity.tolerances import Tolerance

MODELS = ("linreg", "softmax", "mlp", "cnn")
OPTIMIZERS = ("sgd", "adam", "adamw")
FRAMEWORKS = ("jax", "torch")
CLASS_NAMES = {"linreg": "LinearRegression", "softmax": "LinearNet", "mlp": "SimpleNet", "cnn": "SmallCNN"}


@dataclass
class Config:
    """One training run; None means the per-model default (`defaults`)."""

    model: str = "mlp"
    optimizer: str = "adam"
    epochs: int | None = None
    framework: str = "both"
    data: str | None = None
    batch_size: int | None = None
    lr: float | None = None
    momentum: float = 0.0
    weight_decay: float | None = None
    dtype: str = "float32"
    device: str = "cpu"
    seed: int = 0
    torch_threads: int | None = 1

    def resolved(self) -> "Config":
        """A copy with every default filled in and every choice checked."""
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {self.model!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.framework not in FRAMEWORKS + ("both",):
            raise ValueError(f"framework must be jax, torch or both, got {self.framework!r}")
        if self.epochs is not None and self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.dtype not in precision.DTYPES:
            raise ValueError(f"dtype must be one of {precision.DTYPES}, got {self.dtype!r}")
        linreg = self.model == "linreg"
        # linreg: d2l's 3 epochs of batch 10 at lr 0.03; classifiers: the seed's batch 64, Adam 1e-3
        lr = self.lr if self.lr is not None else (
            (0.03 if linreg else 0.05) if self.optimizer == "sgd" else (0.1 if linreg else 1e-3))
        return Config(self.model, self.optimizer, self.epochs or (3 if linreg else 10), self.framework,
                      self.data or ("synthetic-linear" if linreg else "digits"),
                      self.batch_size or (10 if linreg else 64), lr, self.momentum, self.weight_decay,
                      self.dtype, self.device, self.seed, self.torch_threads)

    @property
    def frameworks(self) -> tuple[str, ...]:
        return FRAMEWORKS if self.framework == "both" else (self.framework,)


# ---------------------------------------------------------------- models and weights
def model_kwargs(model: str, ds: data.Dataset) -> dict:
    """Constructor arguments that fit the data: the input width follows the images (64 for the
    8×8 digits, 784 for 28×28); the CNN pads its convolutions on images smaller than 16×16."""
    x = ds.x_train
    if model == "linreg":
        if x.ndim != 2:
            raise ValueError("linreg trains on feature vectors such as --data synthetic-linear, "
                             f"got images of shape {x.shape[1:]}")
        return {"in_features": x.shape[1]}
    if x.ndim != 4:
        raise ValueError(f"{model} trains on images (N, C, H, W), got shape {x.shape}")
    classes = int(max(ds.y_train.max(), ds.y_test.max())) + 1
    if model in ("softmax", "mlp"):
        return {"in_features": int(np.prod(x.shape[1:])), "num_classes": classes}
    small = x.shape[2] < 16
    return {"in_channels": x.shape[1], "image_size": x.shape[2], "channels": (16, 32) if small else (32, 64),
            "num_classes": classes, "padding": 1 if small else 0}


def build(model: str, kwargs: dict, framework: str, dtype: str, sd: dict | None = None):
    """The model of one framework, holding the canonical weights `sd` (a torch state_dict of NumPy
    arrays, converted for Flax) or, without them, its own init (torch) or zeros (Flax: traced with
    `nnx.eval_shape`, so no random initialiser runs op by op)."""
    cls = getattr(J.models if framework == "jax" else T.models, CLASS_NAMES[model])
    if framework == "torch":
        m = cls(**kwargs, dtype=getattr(torch, dtype))
        if sd is not None:
            load_torch_weights(m, sd)
        return m
    graphdef, state = nnx.split(nnx.eval_shape(lambda: cls(**kwargs, dtype=dtype, rngs=nnx.Rngs(0))))
    m = nnx.merge(graphdef, jax.tree.map(lambda a: jax.device_put(np.zeros(a.shape, a.dtype)), state))
    if sd is not None:
        load_flax_weights(m, torch_to_flax(model, sd))
    return m


def predict(model, x: np.ndarray) -> np.ndarray:
    """Outputs of a model of either framework for NCHW (or feature) inputs, as NumPy; one jitted
    call on the JAX side (images transposed to NHWC)."""
    if isinstance(model, torch.nn.Module):
        dev, was_training = next(model.parameters()).device, model.training
        try:
            with torch.no_grad():
                return model.eval()(torch.as_tensor(x).to(dev)).cpu().numpy()
        finally:
            model.train(was_training)
    graphdef, state = nnx.split(model)
    return np.asarray(_apply(graphdef, state, convert.nchw_to_nhwc(x) if x.ndim == 4 else x))


@partial(jax.jit, static_argnums=0)  # compiled once per model structure (graphdefs are hashable)
def _apply(graphdef, state, x):
    return nnx.merge(graphdef, state)(x)


def layer_map(model: str, params: dict, flax: bool) -> dict | None:
    """The layer kinds `convert.model_torch_to_flax` needs for one of our models, read off its
    parameter shapes (torch state_dict keys, or the Flax pure dict when `flax`); None where both
    twins store the same arrays (LinearRegression's w and b)."""
    if model == "linreg":
        return None
    if model == "softmax":
        return {"linear": "linear"}
    if model == "mlp":
        return {"fc1": "linear", "fc2": "linear"}
    if flax:  # kernels (kh, kw, in, out) and (in, out)
        c, n_in = params["conv2"]["kernel"].shape[-1], params["fc1"]["kernel"].shape[0]
    else:  # weights (out, in, kh, kw) and (out, in)
        c, n_in = params["conv2.weight"].shape[0], params["fc1.weight"].shape[1]
    s = math.isqrt(n_in // c)  # fc1 reads c maps of s × s, flattened in each framework's order (trap 4)
    return {"conv1": "conv", "conv2": "conv", "fc1": ("flatten_linear", (c, s, s)), "fc2": "linear"}


def model_name(model) -> str:
    """'mlp' for a SimpleNet of either framework, and so on."""
    return {v: k for k, v in CLASS_NAMES.items()}[type(model).__name__]


def init_state_dict(model: torch.nn.Module, rng: np.random.Generator) -> dict:
    """Initial weights drawn in NumPy: torch's ranges U(±1/√fan_in) for weights and biases
    (kaiming_uniform(a=√5), trap 16); d2l's N(0, 0.01²) and zero bias for linear regression."""
    sd = {}
    for name, p in model.state_dict().items():
        shape, dt = tuple(p.shape), str(p.dtype).removeprefix("torch.")
        if name == "w":
            sd[name] = (0.01 * rng.standard_normal(shape)).astype(dt)
        elif name == "b":
            sd[name] = np.zeros(shape, dt)
        else:
            weight = model.state_dict()[name.rsplit(".", 1)[0] + ".weight"]
            bound = 1 / math.sqrt(int(np.prod(weight.shape[1:])))
            sd[name] = rng.uniform(-bound, bound, shape).astype(dt)
    return sd


def torch_state(model: torch.nn.Module) -> dict:
    return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}


def flax_params(model) -> dict:
    return jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(model, nnx.Param)))


def load_torch_weights(model: torch.nn.Module, sd: dict) -> None:
    """Copy a state_dict of NumPy arrays (or tensors) into a torch model, in the model's dtype."""
    ref = model.state_dict()
    model.load_state_dict({k: torch.tensor(np.array(v)).to(ref[k].dtype) for k, v in sd.items()})


def load_flax_weights(model, params: dict) -> None:
    """Copy a nested pure dict of arrays into an NNX model, in the model's dtypes."""
    state = nnx.state(model, nnx.Param)
    ref = nnx.to_pure_dict(state)
    nnx.replace_by_pure_dict(state, jax.tree.map(
        lambda r, v: jax.device_put(np.asarray(v, r.dtype), r.device), ref, params))
    nnx.update(model, state)


def torch_to_flax(model: str, sd: dict) -> dict:
    """A torch state_dict of one of our models (by name) → the Flax pure dict of its twin."""
    layers = layer_map(model, sd, flax=False)
    return dict(sd) if layers is None else convert.model_torch_to_flax(sd, layers)


def flax_to_torch(model: str, params: dict) -> dict:
    """The Flax pure dict of one of our models (by name) → the torch state_dict of its twin."""
    layers = layer_map(model, params, flax=True)
    return dict(params) if layers is None else convert.model_flax_to_torch(params, layers)


# ---------------------------------------------------------------- one run in both frameworks
@dataclass
class Run:
    """Per-step losses, per-epoch records and the trainers of a finished run."""

    config: Config
    model_kwargs: dict
    losses: dict[str, np.ndarray] = field(default_factory=dict)
    epochs: list[dict] = field(default_factory=list)
    trainers: dict = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def curve_difference(self) -> tuple[float, float]:
        """Largest |loss_jax − loss_torch| over all steps, and the largest relative difference."""
        if set(self.losses) != set(FRAMEWORKS):
            return math.nan, math.nan
        a, b = self.losses["jax"].astype(np.float64), self.losses["torch"].astype(np.float64)
        diff = np.abs(a - b)
        return float(diff.max(initial=0.0)), float((diff / np.maximum(np.abs(b), 1e-300)).max(initial=0.0))

    def curves_agree(self, tol: Tolerance) -> bool:
        """Every step's |loss_jax − loss_torch| <= atol + rtol·|loss_torch|."""
        a, b = self.losses["jax"].astype(np.float64), self.losses["torch"].astype(np.float64)
        return bool(np.all(np.abs(a - b) <= tol.atol + tol.rtol * np.abs(b)))


def load_data(cfg: Config, ds: data.Dataset | None = None) -> data.Dataset:
    """The run's data (loaded unless given) in its dtype, with labels checked once here instead of
    in every step (T.losses.cross_entropy's check reads labels back to the host: a sync per step)."""
    ds = (ds if ds is not None else data.load(cfg.data, seed=cfg.seed)).astype(cfg.dtype)
    if cfg.model != "linreg":
        for y in (ds.y_train, ds.y_test):
            if y.dtype.kind not in "iu" or y.min() < 0:
                raise ValueError(f"{cfg.data}: labels must be non-negative integers for {cfg.model}")
    return ds


def _losses(model: str, framework: str):
    if model == "linreg":
        return J.losses.mse_loss if framework == "jax" else T.losses.mse_loss
    # torch: F.cross_entropy itself, since load_data checked the labels once
    return J.losses.cross_entropy if framework == "jax" else torch.nn.functional.cross_entropy


def _optimizer(cfg: Config, framework: str):
    lib = J.optim if framework == "jax" else T.optim
    return lib.from_library(cfg.optimizer, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


class _Side:
    """One framework's trainer and its device-resident data."""

    def __init__(self, framework, cfg, kwargs, sd, ds):
        self.framework, self.model_name = framework, cfg.model
        model = build(cfg.model, kwargs, framework, cfg.dtype, sd)
        four_d = ds.x_train.ndim == 4
        if framework == "jax":
            dev = precision.jax_device(cfg.device)
            prep = convert.nchw_to_nhwc if four_d else (lambda a: a)
            self.x, self.y, self.x_test, self.y_test = (jax.device_put(a, dev) for a in (
                prep(ds.x_train), ds.y_train, prep(ds.x_test), ds.y_test))
            self.trainer = J.train.Trainer(model, _optimizer(cfg, "jax"), _losses(cfg.model, "jax"))
        else:
            dev = precision.torch_device(cfg.device)
            model.to(dev)
            self.x, self.y, self.x_test, self.y_test = (torch.as_tensor(a).to(dev) for a in (
                ds.x_train, ds.y_train, ds.x_test, ds.y_test))
            self.trainer = T.train.Trainer(model, _optimizer(cfg, "torch"), _losses(cfg.model, "torch"))
        self.seconds = 0.0

    def epoch(self, batches: np.ndarray, advance=None) -> np.ndarray:
        """One step per batch row; the losses come to the host once, at the end."""
        t0 = time.perf_counter()
        rows = batches if self.framework == "jax" else torch.as_tensor(batches, device=self.x.device)
        losses = []
        for row in rows:
            losses.append(self.trainer.step(self.x, self.y, row))
            if advance:
                advance()
        out = (np.asarray(jnp.stack(losses)) if self.framework == "jax"
               else torch.stack(losses).cpu().numpy())
        self.seconds += time.perf_counter() - t0
        return out

    def evaluate(self) -> dict:
        """Test loss (and accuracy for classifiers) under the current weights."""
        out = self.trainer.predict(self.x_test)
        loss = float(_losses(self.model_name, self.framework)(out, self.y_test))
        if self.model_name == "linreg":
            return {"test_loss": loss}
        return {"test_loss": loss, "accuracy": self.trainer.accuracy(self.x_test, self.y_test)}


@contextlib.contextmanager
def _torch_threads(n: int | None):
    """torch's intra-op threads for the block. One by default on the CPU: a step of these small models
    gains nothing from OpenMP, whose spinning threads lose to XLA's pool in the same process (and to
    other processes): measured 0.85 ms vs 6–11 ms per MLP step on a busy 2-core machine."""
    saved = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def train(cfg: Config, ds: data.Dataset | None = None, on_step=None, on_epoch=None) -> Run:
    """Train the chosen frameworks side by side from one NumPy source of weights and batches.

    `on_step()` is called after every step (a progress bar; it must not read device values) and
    `on_epoch(record, losses)` after every epoch with that epoch's per-step losses per framework.
    """
    cfg = cfg.resolved()
    ds = load_data(cfg, ds)
    kwargs = model_kwargs(cfg.model, ds)
    ref = build(cfg.model, kwargs, "torch", cfg.dtype)
    sd = init_state_dict(ref, np.random.default_rng(cfg.seed))
    run = Run(cfg, kwargs, losses={fw: [] for fw in cfg.frameworks})
    with precision.policy("strict"), _torch_threads(cfg.torch_threads if cfg.device == "cpu" else None):
        sides = {fw: _Side(fw, cfg, kwargs, sd, ds) for fw in cfg.frameworks}
        shuffler = data.Shuffler(len(ds.x_train), cfg.batch_size, seed=cfg.seed)
        for epoch in range(1, cfg.epochs + 1):
            batches = shuffler.epoch()
            step_losses = {fw: s.epoch(batches, on_step) for fw, s in sides.items()}
            record = {"epoch": epoch}
            for fw, s in sides.items():
                run.losses[fw].append(step_losses[fw])
                record[fw] = {"train_loss": float(np.mean(step_losses[fw])), **s.evaluate()}
            run.epochs.append(record)
            if on_epoch:
                on_epoch(record, step_losses)
    run.losses = {fw: np.concatenate(v) for fw, v in run.losses.items()}
    run.trainers = {fw: s.trainer for fw, s in sides.items()}
    run.seconds = {fw: s.seconds for fw, s in sides.items()}
    return run
