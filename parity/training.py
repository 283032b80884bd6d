"""Training both twins on identical weights and identical batches, and comparing their loss curves.

One NumPy source serves both frameworks: the data, the initial weights (drawn in NumPy with torch's
init ranges, docs/traps.md, trap 16, then converted) and the batch order (one seeded
`data.Shuffler`). Each framework is one side class (`JaxSide`, `TorchSide`) with the same methods,
chosen once from `SIDES`; nothing below them asks which framework it is running.

When both frameworks train, a third side runs too: a JAX trainer restarted from the torch side's
weights and optimiser state every `SEGMENT_STEPS` steps (teacher forcing). Its losses, compared with
torch's over the same steps, give the curve verdict of `parity.curves` (why: that module's
docstring). The free-running JAX side is what the plots, checkpoints and timings show.
The `parity train` run around all this (its files and verdicts) is parity/train_run.py; the command
that prints it is parity/commands/train.py.
"""
from __future__ import annotations

import abc
import contextlib
import copy
import math
import time
from dataclasses import dataclass, field, replace
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
from flax import nnx

import jax_impl as J
import torch_impl as T
from parity import convert, curves, data, precision
from parity.porting import kinds
from parity.tolerances import Tolerance, training_curve
# the configuration lives in parity/train_config.py (light to import); its names are re-exported here
from parity.train_config import (  # noqa: F401
    snake_case, MODELS, OPTIMIZERS, FRAMEWORKS, class_name, model_name,
    MODEL_DEFAULTS, WEIGHT_DECAY_DEFAULTS, Config, defaults_help)
from shape_rules import cnn_features


def model_kwargs(model: str, ds: data.Dataset) -> dict:
    """Constructor arguments that fit the data: the input width follows the images (64 for the
    8×8 digits, 784 for 28×28); the CNN pads its convolutions on images smaller than 16×16."""
    x = ds.x_train
    if model == "linear_regression":
        if x.ndim != 2:
            raise ValueError("linear_regression trains on feature vectors such as --data synthetic-linear, "
                             f"got images of shape {x.shape[1:]}")
        return {"in_features": x.shape[1]}
    if x.ndim != 4:
        raise ValueError(f"{model} trains on images (N, C, H, W), got shape {x.shape}")
    classes = int(max(ds.y_train.max(), ds.y_test.max())) + 1
    if model in ("linear_net", "simple_net"):
        return {"in_features": int(np.prod(x.shape[1:])), "num_classes": classes}
    h, w = x.shape[2:]
    if h != w:
        raise ValueError(f"{ds.name}: small_cnn takes square images, got {h}×{w} (its Linear layer is "
                         f"sized for image_size × image_size feature maps)")
    small = h < 16
    kwargs = {"in_channels": x.shape[1], "image_size": h, "channels": (16, 32) if small else (32, 64),
              "num_classes": classes, "padding": 1 if small else 0}
    try:
        cnn_features(h, kwargs["channels"], kwargs["padding"])
    except ValueError:
        raise ValueError(f"{ds.name}: images of {h}×{w} are too small for small_cnn (two conv + 2×2 "
                         f"max-pool blocks need at least 2×2 images)") from None
    return kwargs


def layer_map(model: str, params: dict, flax: bool) -> dict | None:
    """The layer kinds `parity.porting.kinds.model_to_flax` needs for one of our models, read off its
    parameter shapes (torch state_dict keys, or the Flax pure dict when `flax`); None where both
    twins store the same arrays (LinearRegression's w and b)."""
    if model == "linear_regression":
        return None
    if model == "linear_net":
        return {"linear": "linear"}
    if model == "simple_net":
        return {"fc1": "linear", "fc2": "linear"}
    if flax:  # kernels (kh, kw, in, out) and (in, out)
        c, n_in = params["conv2"]["kernel"].shape[-1], params["fc1"]["kernel"].shape[0]
    else:  # weights (out, in, kh, kw) and (out, in)
        c, n_in = params["conv2.weight"].shape[0], params["fc1.weight"].shape[1]
    s = math.isqrt(n_in // c)  # fc1 reads c maps of s × s, flattened in each framework's order (docs/traps.md, trap 4)
    return {"conv1": "conv", "conv2": "conv", "fc1": ("flatten_linear", (c, s, s)), "fc2": "linear"}


def torch_to_flax(model: str, sd: dict) -> dict:
    """A torch state_dict of one of our models (by name) → the Flax pure dict of its twin."""
    layers = layer_map(model, sd, flax=False)
    return dict(sd) if layers is None else kinds.model_to_flax(sd, layers)


def flax_to_torch(model: str, params: dict) -> dict:
    """The Flax pure dict of one of our models (by name) → the torch state_dict of its twin."""
    layers = layer_map(model, params, flax=True)
    return dict(params) if layers is None else kinds.model_to_torch(params, layers)


def init_state_dict(model: torch.nn.Module, rng: np.random.Generator) -> dict:
    """Initial weights drawn in NumPy: torch's ranges U(±1/√fan_in) for weights and biases
    (kaiming_uniform(a=√5), docs/traps.md, trap 16); d2l's N(0, 0.01²) and zero bias for linear regression."""
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


def flax_params(model) -> dict:
    """An NNX model's parameters as a nested pure dict of NumPy arrays."""
    return jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(model, nnx.Param)))


def load_torch_weights(model: torch.nn.Module, sd: dict) -> None:
    """Copy a state_dict of NumPy arrays (or tensors) into a torch model, in the model's dtype."""
    ref = model.state_dict()
    model.load_state_dict({k: torch.tensor(np.array(v)).to(ref[k].dtype) for k, v in sd.items()})


def load_flax_weights(model, params: dict) -> None:
    """Copy a nested pure dict of arrays into an NNX model, in the model's dtypes."""
    state = nnx.state(model, nnx.Param)
    nnx.update(model, _filled(state, params))


def _filled(state, params: dict):
    """A copy of an NNX State (parameters, or an optimiser slot shaped like them) holding `params`
    (a nested pure dict), each array in the dtype and on the device of the one it replaces."""
    ref = nnx.to_pure_dict(state)
    new = jax.tree.map(lambda a: a, state)
    nnx.replace_by_pure_dict(new, jax.tree.map(
        lambda r, v: jax.device_put(np.asarray(v, r.dtype), r.device), ref, params))
    return new


# ---------------------------------------------------------------- one framework's trainer
@dataclass
class TrainState:
    """Everything a training step reads, in the canonical form: the weights as a torch state_dict
    of NumPy arrays, and the optimiser's slots under torch's names ('momentum_buffer', 'exp_avg',
    'exp_avg_sq'), each a state_dict-shaped dict, plus the optimiser's step count (0 where it keeps
    none: SGD's update does not depend on it)."""

    weights: dict
    slots: dict = field(default_factory=dict)
    step: int = 0


class Side(abc.ABC):
    """One framework's model, trainer and device-resident data, behind the same methods for both
    frameworks. A subclass (`JaxSide`, `TorchSide`) supplies the framework's part, listed here
    first; the rest is written once, here."""

    framework: str

    # ---- the framework's part
    @staticmethod
    @abc.abstractmethod
    def losses() -> dict:
        """{False: the regression loss, True: the classification loss}."""

    @staticmethod
    @abc.abstractmethod
    def build(model: str, kwargs: dict, dtype: str, sd: dict | None = None):
        """The framework's model `model` holding the canonical weights `sd` (if given)."""

    @staticmethod
    @abc.abstractmethod
    def predict_with(model, x: np.ndarray) -> np.ndarray:
        """A model's outputs for NCHW images (or feature rows), as NumPy."""

    @staticmethod
    @abc.abstractmethod
    def weights_of(model) -> dict:
        """A model's weights as a canonical (torch-layout) state_dict of NumPy arrays."""

    @abc.abstractmethod
    def put(self, a: np.ndarray, image: bool):
        """An array on the run's device, in the framework's layout (NHWC images for JAX)."""

    @abc.abstractmethod
    def make_trainer(self, model, cfg: Config):
        ...

    @abc.abstractmethod
    def rows(self, batches: np.ndarray):
        """Batch index rows as the framework's trainer takes them."""

    @abc.abstractmethod
    def sync(self, value) -> None:
        """Wait until `value` is computed."""

    @abc.abstractmethod
    def host(self, a) -> np.ndarray:
        ...

    @abc.abstractmethod
    def to_host(self, losses: list) -> np.ndarray:
        """A list of device scalars as one NumPy array (one transfer)."""

    @abc.abstractmethod
    def weights(self) -> dict:
        """The trainer's current weights, canonical."""

    @abc.abstractmethod
    def state(self) -> "TrainState":
        """The trainer's current weights and optimiser state, canonical."""

    @abc.abstractmethod
    def load_state(self, st: "TrainState") -> None:
        """Make the trainer continue from `st` (weights, optimiser slots and step count)."""

    # ---- written once

    def __init__(self, cfg: Config, kwargs: dict, sd: dict, ds: data.Dataset):
        self.model_name, self.classifier = cfg.model, cfg.model != "linear_regression"
        self.device = cfg.device
        self.loss_fn = self.losses()[self.classifier]
        self.x, self.y, self.x_test, self.y_test = (self.put(a, image=a.ndim == 4) for a in (
            ds.x_train, ds.y_train, ds.x_test, ds.y_test))
        self.trainer = self.make_trainer(self.build(cfg.model, kwargs, cfg.dtype, sd), cfg)
        self.seconds, self.first_step_seconds, self.steps = 0.0, math.nan, 0
        self.steps_per_epoch = len(ds.x_train) // cfg.batch_size

    def epoch(self, batches: np.ndarray, advance=None, step=None) -> np.ndarray:
        """One step per batch row (any number of rows); the losses come to the host once, at the
        end. The run's first step is timed apart (for JAX it includes compiling the step).
        `step(row)` replaces `trainer.step(x, y, row)` for each of `self.rows(batches)`."""
        rows, losses = self.rows(batches), []
        step = step or (lambda row: self.trainer.step(self.x, self.y, row))
        t0 = time.perf_counter()
        for row in rows:
            losses.append(step(row))
            if self.steps == 0:
                self.sync(losses[0])
                t1 = time.perf_counter()
                self.first_step_seconds, t0 = t1 - t0, t1
            self.steps += 1
            if advance:
                advance()
        out = self.to_host(losses)
        self.seconds += time.perf_counter() - t0
        return out

    def test_outputs(self) -> np.ndarray:
        """The model's outputs for the test inputs under the current weights."""
        return self.host(self.trainer.predict(self.x_test))

    def evaluate(self) -> dict:
        """Test loss, and test accuracy for classifiers, under the current weights."""
        out = self.trainer.predict(self.x_test)
        rec = {"test_loss": float(self.loss_fn(out, self.y_test))}
        if self.classifier:
            rec["test_accuracy"] = self.trainer.accuracy(self.x_test, self.y_test)
        return rec

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The current model's outputs for NCHW images (or feature rows), as NumPy."""
        return self.predict_with(self.trainer.model, x)


class JaxSide(Side):
    framework = "jax"

    @staticmethod
    def losses():
        return {False: J.losses.mse_loss, True: J.losses.cross_entropy}

    @staticmethod
    def build(model: str, kwargs: dict, dtype: str, sd: dict | None = None):
        """The Flax model holding `sd` (torch layout, converted) or zeros without it (traced with
        `nnx.eval_shape`, so no random initialiser runs op by op)."""
        cls = getattr(J.models, class_name(model))
        graphdef, state = nnx.split(nnx.eval_shape(lambda: cls(**kwargs, dtype=dtype, rngs=nnx.Rngs(0))))
        m = nnx.merge(graphdef, jax.tree.map(lambda a: jax.device_put(np.zeros(a.shape, a.dtype)), state))
        if sd is not None:
            load_flax_weights(m, torch_to_flax(model, sd))
        return m

    @staticmethod
    def predict_with(model, x: np.ndarray) -> np.ndarray:
        """One jitted call, images transposed to NHWC."""
        graphdef, state = nnx.split(model)
        return np.asarray(_apply(graphdef, state, convert.nchw_to_nhwc(x) if x.ndim == 4 else x))

    @staticmethod
    def weights_of(model) -> dict:
        return flax_to_torch(model_name(model), flax_params(model))

    def put(self, a: np.ndarray, image: bool):
        return jax.device_put(convert.nchw_to_nhwc(a) if image else a, precision.jax_device(self.device))

    def make_trainer(self, model, cfg):
        opt = J.optim.from_library(cfg.optimizer, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        self.scan_epochs = scan_allowed(cfg.model, cfg.device)
        return J.train.Trainer(model, opt, self.loss_fn)

    #: run rows in one `Trainer.epoch` (lax.scan) call where the model allows (`scan_allowed`)
    scan_epochs = False

    def rows(self, batches):
        return batches

    def epoch(self, batches: np.ndarray, advance=None) -> np.ndarray:
        """As `Side.epoch`, with the rows on the device in one transfer, padded to `steps_per_epoch`
        rows with skipped (−1) rows so that runs of every length (whole epochs, the parts the forced
        side restarts between, replayed segments) share one compiled function: one `Trainer.epoch`
        scan with `scan_epochs` (timed as the run's first step when it is the first: compiling it
        and its steps), else one `Trainer.step_at` per row (a NumPy row per step would cost a
        transfer, 35-90 µs)."""
        own_step = self.trainer._step is self.trainer._flat_step  # not replaced (parity.distributed)
        if not own_step:
            return super().epoch(batches, advance)
        k = len(batches)
        padded = np.full((max(k, self.steps_per_epoch), np.shape(batches)[1]), -1, np.int32)
        padded[:k] = batches
        rows = jax.device_put(padded, precision.jax_device(self.device))
        if not self.scan_epochs:
            return Side.epoch(self, range(k), advance, step=lambda i: self.trainer.step_at(self.x, self.y, rows, i))
        t0 = time.perf_counter()
        losses = self.trainer.epoch(self.x, self.y, rows)
        if self.steps == 0:
            self.sync(losses)
            t1 = time.perf_counter()
            self.first_step_seconds, t0 = t1 - t0, t1
        self.steps += k
        for _ in range(k if advance else 0):
            advance()
        out = np.asarray(losses)[:k]
        self.seconds += time.perf_counter() - t0
        return out

    def sync(self, value):
        jax.block_until_ready(value)

    def to_host(self, losses):
        return np.asarray(_stack(*losses))

    def host(self, a):
        return np.asarray(a)

    def fork(self) -> "JaxSide":
        """A second side on this one's data and compiled step, with its own copy of the training
        state (the teacher-forced side): a Trainer of its own would compile the step and the
        predictions again, which is most of a short run's time."""
        twin = copy.copy(self)
        twin.trainer = copy.copy(self.trainer)  # the jitted functions are shared; `state` is its own
        twin.trainer.state = jax.tree.map(jnp.copy, self.trainer.state)
        twin.seconds, twin.first_step_seconds, twin.steps = 0.0, math.nan, 0
        return twin

    def weights(self) -> dict:  # read off the trainer's state: `trainer.model` would copy it first
        return flax_to_torch(self.model_name, jax.tree.map(np.asarray, nnx.to_pure_dict(self.trainer.state[0])))

    def state(self) -> TrainState:
        slots, step = {}, 0

        def read(slot, value):
            nonlocal step
            if slot == "step":
                step = int(value)
            else:
                slots[slot] = flax_to_torch(self.model_name, jax.tree.map(np.asarray, nnx.to_pure_dict(value)))
            return value
        _map_slots(self.trainer.state[2], read)
        return TrainState(self.weights(), slots, step)

    def load_state(self, st: TrainState) -> None:
        params, rest, opt_state = self.trainer.state
        count_device = jax.tree.leaves(params)[0].device

        def write(slot, value):
            if slot == "step":
                return jax.device_put(np.asarray(st.step, value.dtype), count_device)
            if slot not in st.slots:  # the optimiser has not stepped yet: its slots are zeros
                return jax.tree.map(jnp.zeros_like, value)
            return _filled(value, torch_to_flax(self.model_name, st.slots[slot]))
        self.trainer.state = (_filled(params, torch_to_flax(self.model_name, st.weights)), rest,
                              _map_slots(opt_state, write))


# optax states holding per-parameter slots, and torch's names for them (the twins' optimisers
# are checked equal step by step in parity/concepts/optim.py, so the slots mean the same)
_OPTAX_SLOTS = {optax.ScaleByAdamState: {"count": "step", "mu": "exp_avg", "nu": "exp_avg_sq"},
                optax.TraceState: {"trace": "momentum_buffer"}}


def _map_slots(state, f):
    """Rebuild an optax state with f(slot, value) in place of each slot named in _OPTAX_SLOTS."""
    names = _OPTAX_SLOTS.get(type(state))
    if names:
        return state._replace(**{k: f(v, getattr(state, k)) for k, v in names.items()})
    if type(state) is tuple:  # optax.chain's states
        return tuple(_map_slots(s, f) for s in state)
    return state


@partial(jax.jit, static_argnums=0)  # compiled once per model structure (graphdefs are hashable)
def _apply(graphdef, state, x):
    return nnx.merge(graphdef, state)(x)


@jax.jit  # one dispatch (compiled once per count): ~10 µs for an epoch's losses, jnp.stack ~120 µs
def _stack(*losses):
    return jnp.stack(losses)


def scan_allowed(model: str, device: str) -> bool:
    """Whether a whole epoch runs faster in one lax.scan than step by step: always, except a
    convolutional model on the CPU, where XLA runs convolutions inside a loop 14× slower (measured on
    small_cnn's Adam step, MNIST-sized batch of 64) and unrolling a whole epoch would compile every
    step of it."""
    return not (device == "cpu" and model == "small_cnn")


class TorchSide(Side):
    framework = "torch"

    @staticmethod
    def losses():
        # F.cross_entropy itself, since load_data checked the labels once (torch_impl's check reads
        # the labels back to the host: a sync per step)
        return {False: T.losses.mse_loss, True: torch.nn.functional.cross_entropy}

    @staticmethod
    def build(model: str, kwargs: dict, dtype: str, sd: dict | None = None):
        """The torch model holding `sd`, or its own init without it."""
        m = getattr(T.models, class_name(model))(**kwargs, dtype=getattr(torch, dtype))
        if sd is not None:
            load_torch_weights(m, sd)
        return m

    @staticmethod
    def predict_with(model, x: np.ndarray) -> np.ndarray:
        """In eval mode and without gradients, on the model's device; the mode is restored."""
        dev, was_training = next(model.parameters()).device, model.training
        try:
            with torch.no_grad():
                return model.eval()(torch.as_tensor(x).to(dev)).cpu().numpy()
        finally:
            model.train(was_training)

    @staticmethod
    def weights_of(model) -> dict:
        return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}

    def put(self, a: np.ndarray, image: bool):
        return torch.as_tensor(a).to(precision.torch_device(self.device))

    def make_trainer(self, model, cfg):
        opt = T.optim.from_library(cfg.optimizer, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        return T.train.Trainer(model.to(precision.torch_device(self.device)), opt, self.loss_fn)

    def rows(self, batches):
        return torch.as_tensor(batches, device=self.x.device)

    def sync(self, value):
        if value.device.type == "cuda":
            torch.cuda.synchronize(value.device)

    def to_host(self, losses):
        return torch.stack(losses).cpu().numpy()

    def host(self, a):
        return a.detach().cpu().numpy()

    def _named(self):
        return dict(self.trainer.model.named_parameters())

    def weights(self) -> dict:
        return self.weights_of(self.trainer.model)

    def state(self) -> TrainState:
        slots, step = {}, 0
        for name, p in self._named().items():
            for slot, v in self.trainer.optimizer.state.get(p, {}).items():
                if slot == "step":
                    step = int(v)
                elif v is not None:
                    slots.setdefault(slot, {})[name] = v.detach().cpu().numpy().copy()
        return TrainState(self.weights(), slots, step)

    def load_state(self, st: TrainState) -> None:
        load_torch_weights(self.trainer.model, st.weights)
        opt = self.trainer.optimizer
        for name, p in self._named().items():
            s = opt.state[p]
            s.clear()  # no slots: the optimiser has not stepped yet
            for slot, arrays in st.slots.items():
                s[slot] = torch.as_tensor(np.array(arrays[name]), dtype=p.dtype, device=p.device)
            if "exp_avg" in st.slots:  # Adam keeps its step count per parameter, as a float32 tensor
                on_device = opt.defaults.get("fused") or opt.defaults.get("capturable")  # else on the CPU
                s["step"] = torch.tensor(float(st.step), dtype=torch.float32,
                                         device=p.device if on_device else None)


SIDES: dict[str, type[Side]] = {"jax": JaxSide, "torch": TorchSide}


def build(model: str, kwargs: dict, framework: str, dtype: str, sd: dict | None = None):
    """The model of one framework, holding the canonical weights `sd` (a torch state_dict of NumPy
    arrays, converted for Flax) or, without them, its own init (torch) or zeros (Flax)."""
    return SIDES[framework].build(model, kwargs, dtype, sd)


def framework_of(model) -> str:
    return "torch" if isinstance(model, torch.nn.Module) else "jax"


def predict(model, x: np.ndarray) -> np.ndarray:
    """Outputs of a model of either framework for NCHW (or feature) inputs, as NumPy."""
    return SIDES[framework_of(model)].predict_with(model, x)


def state_dict(model) -> dict:
    """The weights of a model of either framework as a canonical (torch-layout) state_dict of NumPy arrays."""
    return SIDES[framework_of(model)].weights_of(model)


def linreg_weights(model) -> tuple[np.ndarray, np.ndarray]:
    """(w, b) of a LinearRegression of either framework, as NumPy."""
    sd = state_dict(model)
    return sd["w"], sd["b"]


# ---------------------------------------------------------------- one run in both frameworks
# Teacher forcing: the forced JAX side restarts from the torch side's state every this many steps
# (why, and how the number was chosen: parity/curves.py).
SEGMENT_STEPS = curves.SEGMENT_STEPS


@dataclass
class Run:
    """Per-step losses, per-epoch records and the trainers of a finished run.

    `losses[fw]`: each free-running framework's per-step training losses. `forced_losses`: the
    losses of the JAX trainer restarted from torch's state every `segment_steps` steps (None unless
    both frameworks ran). `seconds[fw]`: time of every step after the first; `first_step_seconds[fw]`:
    the first step alone (for JAX it includes compiling the step; where JAX runs whole epochs in one
    scan, `scan_allowed`, the first epoch with its compilation, and `seconds` the later epochs).
    `test_outputs`: final test outputs of 'jax', 'torch' and 'forced'; `y_test` their labels.
    """

    config: Config
    model_kwargs: dict
    losses: dict[str, np.ndarray] = field(default_factory=dict)
    epochs: list[dict] = field(default_factory=list)
    trainers: dict = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    first_step_seconds: dict[str, float] = field(default_factory=dict)
    forced_losses: np.ndarray | None = None
    segment_steps: int = SEGMENT_STEPS
    test_outputs: dict[str, np.ndarray] = field(default_factory=dict)
    y_test: np.ndarray | None = None
    replays: list = field(default_factory=list)  # curves.Replay: segments replayed in float64

    def curve_difference(self) -> tuple[float, float]:
        """Largest |loss_jax − loss_torch| of the free-running curves over all steps, and the largest
        relative difference (informative only: float32 rounding drift grows with the run's length;
        the verdict is `curve_verdict`)."""
        if set(self.losses) != set(FRAMEWORKS):
            return math.nan, math.nan
        a, b = self.losses["jax"].astype(np.float64), self.losses["torch"].astype(np.float64)
        diff = np.abs(a - b)
        return float(diff.max(initial=0.0)), float((diff / np.maximum(np.abs(b), 1e-300)).max(initial=0.0))

    def curves_agree(self, tol: Tolerance) -> bool:
        """Every step's free-running |loss_jax − loss_torch| <= atol + rtol·|loss_torch|. Meaningful
        for runs of one segment, where free running and teacher forcing are the same run."""
        a, b = self.losses["jax"].astype(np.float64), self.losses["torch"].astype(np.float64)
        return bool(np.all(np.abs(a - b) <= tol.atol + tol.rtol * np.abs(b)))

    def curve_verdict(self) -> curves.CurveVerdict | None:
        """Do the two frameworks train alike? The rule, its bound and measured margins:
        parity/curves.py. None unless both frameworks ran."""
        if self.forced_losses is None:
            return None
        return curves.curve_verdict(self.losses["torch"], self.forced_losses, self.segment_steps,
                                    self.config.dtype, self.replays)

    def accuracy_verdict(self) -> curves.AccuracyVerdict | None:
        """Do the final models classify the test set alike? The rule: parity/curves.py. None unless
        both frameworks trained a classifier."""
        if self.forced_losses is None or self.config.model == "linear_regression":
            return None
        last = len(curves.segment_slices(len(self.forced_losses), self.segment_steps)) - 1
        final = [r for r in self.replays if r.segment == last]
        if final and self.curve_verdict().excused[-1:] == (last,):  # decided in float64
            return curves.accuracy_verdict(final[0].teacher_outputs, final[0].forced_outputs, self.y_test,
                                           "float64")
        return curves.accuracy_verdict(self.test_outputs["torch"], self.test_outputs["forced"], self.y_test,
                                       self.config.dtype)


def load_data(cfg: Config, ds: data.Dataset | None = None) -> data.Dataset:
    """The run's data (loaded unless given) in its dtype, with labels checked once here instead of
    in every step (T.losses.cross_entropy's check reads labels back to the host: a sync per step)."""
    ds = (ds if ds is not None else data.load(cfg.data, seed=cfg.seed)).astype(cfg.dtype)
    if cfg.model != "linear_regression":
        for y in (ds.y_train, ds.y_test):
            if y.dtype.kind not in "iu" or y.min() < 0:
                raise ValueError(f"{cfg.data}: labels must be non-negative integers for {cfg.model}")
    return ds


@contextlib.contextmanager
def torch_threads(n: int):
    """torch's intra-op threads for the block (0 leaves them). One by default on the CPU: a step of
    these small models gains nothing from OpenMP, whose spinning threads lose to XLA's pool in the
    same process (and to other processes): measured 0.85 ms vs 6–11 ms per MLP step on a busy
    2-core machine."""
    saved = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


class _Float64Referee:
    """Replays a segment in float64 in both frameworks from a given state (the float64 sides are
    built on first use). Once the verdict has failed (a replay disagreed, or more segments needed
    one than the rule allows) it stops replaying: the rest cannot change the verdict."""

    def __init__(self, cfg: Config, kwargs: dict, ds: data.Dataset, allowed: int):
        self.cfg, self.kwargs, self.ds, self.sides = replace(cfg, dtype="float64"), kwargs, ds, None
        self.allowed, self.replays, self.failed = allowed, 0, False

    def replay(self, segment: int, st: TrainState, rows: np.ndarray) -> curves.Replay | None:
        if self.failed or self.replays > self.allowed:
            return None
        self.replays += 1
        if self.sides is None:
            ds = self.ds.astype("float64")
            self.sides = {fw: SIDES[fw](self.cfg, self.kwargs, st.weights, ds) for fw in FRAMEWORKS}
        for s in self.sides.values():
            s.load_state(st)
        t, f = self.sides["torch"], self.sides["jax"]
        losses = {fw: s.epoch(rows) for fw, s in self.sides.items()}
        bound = curves.ulps_of(training_curve("float64"), "float64")
        self.failed = bool(curves.drift(losses["torch"], losses["jax"], "float64").max() > bound)
        return curves.Replay(segment, losses["torch"], losses["jax"], t.test_outputs(), f.test_outputs())


class _Segment:
    """The segment in progress: its start state, batches and both losses."""

    def __init__(self, index: int, st: TrainState):
        self.index, self.state, self.rows, self.teacher, self.forced = index, st, [], [], []

    def add(self, rows, teacher, forced):
        self.rows.append(rows), self.teacher.append(teacher), self.forced.append(forced)

    def close(self, dtype: str, referee: _Float64Referee) -> curves.Replay | None:
        t, f = np.concatenate(self.teacher), np.concatenate(self.forced)
        if curves.needs_replay(t, f, dtype):
            return referee.replay(self.index, self.state, np.concatenate(self.rows))
        return None


def train(cfg: Config, ds: data.Dataset | None = None, on_step=None, on_epoch=None) -> Run:
    """Train the chosen frameworks side by side from one NumPy source of weights and batches.

    `on_step()` is called after every step of each free-running framework (a progress bar; it must
    not read device values) and `on_epoch(record, losses)` after every epoch with the record
    {"epoch": n, fw: {"train_loss", "test_loss", "test_accuracy"}} (train_loss: the mean of the
    epoch's step losses; no accuracy for linear_regression) and that epoch's per-step losses per
    framework. With both frameworks, the forced JAX side (see `Run`) runs beside them, and a
    segment whose drift exceeds the curve bound is replayed in float64 (parity/curves.py).
    """
    cfg = cfg.resolved()
    ds = load_data(cfg, ds)
    kwargs = model_kwargs(cfg.model, ds)
    sd = init_state_dict(build(cfg.model, kwargs, "torch", cfg.dtype), np.random.default_rng(cfg.seed))
    run = Run(cfg, kwargs, segment_steps=SEGMENT_STEPS, y_test=ds.y_test)
    k = run.segment_steps
    losses: dict[str, list] = {fw: [] for fw in cfg.frameworks}
    forced_losses: list = []
    with precision.policy("strict"), torch_threads(cfg.torch_threads if cfg.device == "cpu" else 0):
        sides = {fw: SIDES[fw](cfg, kwargs, sd, ds) for fw in cfg.frameworks}
        forced = sides["jax"].fork() if len(sides) == 2 else None
        # a side that scans runs its free epochs whole (it need not stop on segment boundaries)
        whole = {fw for fw, s in sides.items() if getattr(s, "scan_epochs", False)}
        shuffler = data.Shuffler(len(ds.x_train), cfg.batch_size, seed=cfg.seed)
        step, total = 0, cfg.epochs * shuffler.steps_per_epoch
        allowed = curves.excused_allowed(len(curves.segment_slices(total, k)))
        referee, segment = _Float64Referee(cfg, kwargs, ds, allowed), None
        for epoch in range(1, cfg.epochs + 1):
            batches = shuffler.epoch()
            step_losses = {fw: [sides[fw].epoch(batches, on_step)] if fw in whole else [] for fw in sides}
            # cut the epoch where a segment ends, so that the forced side restarts on the boundary
            cuts = [i for i in range(1, len(batches)) if (step + i) % k == 0]
            for part in np.split(batches, cuts):
                if forced is not None and step % k == 0:
                    segment = _Segment(step // k, sides["torch"].state())
                    forced.load_state(segment.state)
                for fw, s in sides.items():
                    if fw not in whole:
                        step_losses[fw].append(s.epoch(part, on_step))
                step += len(part)
                if forced is not None:
                    forced_losses.append(forced.epoch(part))
                    segment.add(part, step_losses["torch"][-1], forced_losses[-1])
                    if step % k == 0 or step == total:
                        replay = segment.close(cfg.dtype, referee)
                        if replay is not None:
                            run.replays.append(replay)
            record = {"epoch": epoch}
            for fw, s in sides.items():
                step_losses[fw] = np.concatenate(step_losses[fw])
                losses[fw].append(step_losses[fw])
                record[fw] = {"train_loss": float(np.mean(step_losses[fw])), **s.evaluate()}
            run.epochs.append(record)
            if on_epoch:
                on_epoch(record, step_losses)
        run.test_outputs = {fw: s.test_outputs() for fw, s in sides.items()}
        if forced is not None:
            run.test_outputs["forced"] = forced.test_outputs()
            run.forced_losses = np.concatenate(forced_losses)
    run.losses = {fw: np.concatenate(v) for fw, v in losses.items()}
    run.trainers = {fw: s.trainer for fw, s in sides.items()}
    run.seconds = {fw: s.seconds for fw, s in sides.items()}
    run.first_step_seconds = {fw: s.first_step_seconds for fw, s in sides.items()}
    return run
