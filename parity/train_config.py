"""The `parity train` configuration, light to import (the CLI builds its flags from it without
loading JAX or torch): model names, per-model defaults, `Config` and its help text.
parity/training.py re-exports every name here."""
from __future__ import annotations

import math
import numbers
import re
from collections import Counter
from dataclasses import dataclass, fields

from parity.names import DEVICES, DTYPES

# ---------------------------------------------------------------- names
# The one table of model classes; every other name of a model is derived from it: the model's
# name is the snake_case of its class name (SmallCNN → small_cnn), used by `--model`, the
# concepts (models.small_cnn, train.small_cnn) and the benchmark workloads (train.small_cnn.adam).
_CLASSES = ("LinearRegression", "LinearNet", "SimpleNet", "SmallCNN")


def snake_case(class_name: str) -> str:
    """'SmallCNN' → 'small_cnn', 'LinearRegression' → 'linear_regression'."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", class_name).lower()


_CLASS_OF = {snake_case(c): c for c in _CLASSES}
MODELS = tuple(_CLASS_OF)
OPTIMIZERS = ("sgd", "adam", "adamw")
FRAMEWORKS = ("jax", "torch")


def class_name(model: str) -> str:
    """'small_cnn' → 'SmallCNN', the class of that name in both jax_impl.models and torch_impl.models."""
    try:
        return _CLASS_OF[model]
    except KeyError:
        raise ValueError(_choice_error("model", MODELS, model)) from None


def model_name(model) -> str:
    """'simple_net' for a SimpleNet of either framework, and so on."""
    name = snake_case(type(model).__name__)
    if name not in _CLASS_OF:
        raise ValueError(f"{type(model).__name__} is none of the trained models {MODELS}")
    return name


# ---------------------------------------------------------------- configuration
@dataclass(frozen=True)
class ModelDefaults:
    """What `None` means in a Config, per model."""

    epochs: int
    batch_size: int
    data: str
    lr: dict  # optimizer → learning rate


# The one table of per-model defaults (read by Config.resolved and by defaults_help, so the
# command's help text cannot drift from what runs). Linear regression: d2l's 3 epochs of batch 10
# at SGD lr 0.03 on its synthetic data; the classifiers: the seeds' batch 64, Adam lr 1e-3, 10 epochs.
_CLASSIFIER = ModelDefaults(epochs=10, batch_size=64, data="digits", lr={"sgd": 0.05, "adam": 1e-3, "adamw": 1e-3})
MODEL_DEFAULTS: dict[str, ModelDefaults] = {
    "linear_regression": ModelDefaults(epochs=3, batch_size=10, data="synthetic-linear",
                                       lr={"sgd": 0.03, "adam": 0.1, "adamw": 0.1}),
    "linear_net": _CLASSIFIER,
    "simple_net": _CLASSIFIER,
    "small_cnn": _CLASSIFIER,
}
# torch's own defaults, which both twins' `optim.from_library` apply for weight_decay=None
WEIGHT_DECAY_DEFAULTS = {"sgd": 0.0, "adam": 0.0, "adamw": 1e-2}


def _choice_error(name, choices, value) -> str:
    hint = ""
    if isinstance(value, str):
        close = [c for c in choices if value.lower() in c or c.startswith(value.lower()[:3])]
        hint = f" (did you mean {close[0]!r}?)" if len(close) == 1 else ""
    return f"{name} must be one of {', '.join(choices)}; got {value!r}{hint}"


def _int_at_least(name, value, low) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}; got {value!r}")
    return int(value)


def _finite(name, value, rule, ok) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number {rule}; got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(v) or not ok(v):
        raise ValueError(f"{name} must be a finite number {rule}; got {value!r}")
    return v


@dataclass
class Config:
    """One training run. The fields are the `parity train` flags, by name; None means the default
    (`MODEL_DEFAULTS` per model, `WEIGHT_DECAY_DEFAULTS` per optimiser; `defaults_help` renders them)."""

    model: str = "simple_net"
    optimizer: str = "adam"
    epochs: int | None = None
    framework: str = "both"
    data: str | None = None
    batch_size: int | None = None
    lr: float | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    dtype: str = "float32"
    device: str = "cpu"
    seed: int = 0
    torch_threads: int | None = 1

    def resolved(self) -> "Config":
        """A copy with every default filled in; every field checked, with a ValueError naming the
        field, what it accepts and the value given."""
        for name, choices in (("model", MODELS), ("optimizer", OPTIMIZERS),
                              ("framework", FRAMEWORKS + ("both",)), ("dtype", DTYPES),
                              ("device", DEVICES)):
            if getattr(self, name) not in choices:
                raise ValueError(_choice_error(name, choices, getattr(self, name)))
        d = MODEL_DEFAULTS[self.model]
        pick = (lambda v, default: default if v is None else v)
        data_spec = pick(self.data, d.data)
        if not isinstance(data_spec, str) or not data_spec:
            raise ValueError(f"data must be a dataset name such as 'digits'; got {data_spec!r}")
        momentum = _finite("momentum", pick(self.momentum, 0.0), "in [0, 1)", lambda v: 0 <= v < 1)
        if momentum and self.optimizer != "sgd":
            raise ValueError(f"momentum applies to the sgd optimizer only; got momentum {momentum:g} "
                             f"with optimizer {self.optimizer!r}")
        return Config(
            model=self.model, optimizer=self.optimizer,
            epochs=_int_at_least("epochs", pick(self.epochs, d.epochs), 1),
            framework=self.framework, data=data_spec,
            batch_size=_int_at_least("batch_size", pick(self.batch_size, d.batch_size), 1),
            lr=_finite("lr", pick(self.lr, d.lr[self.optimizer]), "> 0", lambda v: v > 0),
            momentum=momentum,
            weight_decay=_finite("weight_decay", pick(self.weight_decay, WEIGHT_DECAY_DEFAULTS[self.optimizer]),
                                 ">= 0", lambda v: v >= 0),
            dtype=self.dtype, device=self.device,
            seed=_int_at_least("seed", self.seed, 0),
            torch_threads=_int_at_least("torch_threads", pick(self.torch_threads, 1), 0))

    @property
    def frameworks(self) -> tuple[str, ...]:
        return FRAMEWORKS if self.framework == "both" else (self.framework,)


def _fmt(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _per_model(values: dict) -> str:
    """'10 (linear_regression: 3)': the most common value, then the models that differ."""
    common = Counter(values.values()).most_common(1)[0][0]
    odd = [f"{m}: {v}" for m, v in values.items() if v != common]
    return common + (f" ({'; '.join(odd)})" if odd else "")


def defaults_help(field_name: str) -> str:
    """The default of one Config field as help text, e.g. 'default 10 (linear_regression: 3)'."""
    if field_name in ("epochs", "batch_size", "data"):
        return "default " + _per_model({m: _fmt(getattr(d, field_name)) for m, d in MODEL_DEFAULTS.items()})
    if field_name == "lr":
        return "default " + _per_model({m: ", ".join(f"{o} {_fmt(d.lr[o])}" for o in OPTIMIZERS)
                                        for m, d in MODEL_DEFAULTS.items()})
    if field_name == "weight_decay":
        return "default " + ", ".join(f"{o} {_fmt(v)}" for o, v in WEIGHT_DECAY_DEFAULTS.items())
    if field_name == "momentum":
        return "default 0"
    names = [f.name for f in fields(Config)]
    if field_name not in names:
        raise ValueError(f"no Config field {field_name!r}; fields: {', '.join(names)}")
    return f"default {getattr(Config(), field_name)}"


# ---------------------------------------------------------------- models and weights
