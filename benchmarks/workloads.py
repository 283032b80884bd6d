"""What the benchmarks run: single ops built from the registry's concepts at a swept size, and whole
training steps of `jax_impl.train.Trainer` / `torch_impl.train.Trainer`.

Each workload counts its FLOPs (multiply and add counted apart; exp, max, compare count 1; a training
step's model FLOPs are read off the built model, `model_counts`) and the fewest bytes it must move
(inputs read once, outputs written once), so a time becomes a rate.
"""
from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
from dataclasses import dataclass
from functools import partial
from typing import Callable

import jax
import numpy as np
import torch
import torch.nn.functional as F
from flax import nnx

import jax_impl as J
import torch_impl as T
from benchmarks import modes as M
from benchmarks.harness import Runner, modes_for, op_runners
from parity import bridge, convert, data, registry, training
from parity.precision import torch_device
from parity.registry import Sample

SEED = 20261123
BATCHES = (1, 16, 128, 1024, 8192)
IMAGES = (8, 16, 32, 64, 128)


@dataclass(frozen=True)
class Workload:
    name: str
    kind: str  # "op" or "train"
    summary: str
    size_name: str  # what the swept size is: "batch", "n", "image"
    sizes: tuple[int, ...]  # the full sweep
    smoke_sizes: tuple[int, ...]
    build: Callable[[int, str, str], dict]  # (size, device, dtype) → {mode: () → Runner}
    count: Callable[[int, int], tuple[float, float]]  # (size, bytes per element) → (FLOPs, bytes)
    cpu_max: int | None = None  # sizes above this are left out of the CPU sweep (too slow there)
    # A workload that times other implementations than the suite's modes names them itself:
    # (dicts: left out of the hash, which a frozen dataclass otherwise takes over every field)
    own_modes: dict[str, str] | None = dataclasses.field(default=None, hash=False)  # instead of the suite's
    extra_modes: dict[str, str] = dataclasses.field(default_factory=dict, hash=False)  # added to the suite's
    vs: dict[str, str] = dataclasses.field(default_factory=dict, hash=False)  # mode → the mode its ratio is against

    def modes_on(self, device: str) -> list[str]:
        """The modes this workload offers on a device, in order."""
        base = list(self.own_modes) if self.own_modes is not None else modes_for(self.kind, device)
        return base + list(self.extra_modes)

    def describe(self, mode: str) -> str:
        return {**(M.MODES if self.own_modes is None else self.own_modes), **self.extra_modes}[mode]

    def reference(self, mode: str) -> str | None:
        """The mode whose time `mode`'s ratio is taken against: `vs`, else the suite's REFERENCE
        (for the suite's modes; a workload's own modes without an entry in `vs` have none)."""
        if mode in self.vs:
            return self.vs[mode]
        return M.REFERENCE if self.own_modes is None and mode != M.REFERENCE else None

    def sweep(self, device: str, full: bool) -> tuple[int, ...]:
        if not full:
            return self.smoke_sizes
        return tuple(s for s in self.sizes if device != "cpu" or self.cpu_max is None or s <= self.cpu_max)


WORKLOADS: dict[str, Workload] = {}
SMOKE = ("tensors.matmul", "activations.relu", "losses.cross_entropy", "layers.conv2d",
         "train.simple_net.adam")


def _add(w: Workload) -> None:
    WORKLOADS[w.name] = w


# ---------------------------------------------------------------- single ops from the registry
def _concept_case(name: str, sample_at: Callable[[np.random.Generator, int, np.dtype], Sample]):
    """Build a concept's own adapters on a sample of the swept size (function concepts)."""
    def build(n, device, dtype):
        c = registry.get(name)
        s = sample_at(np.random.default_rng(SEED), n, np.dtype(dtype))
        jp = c.params_to_jax(s.params) if c.params_to_jax else dict(s.params)
        jargs = (bridge.to_jax(jp, device), bridge.to_jax(dict(s.inputs), device))
        targs = (bridge.to_torch(s.params, device), bridge.to_torch(dict(s.inputs), device))
        return op_runners(partial(c.jax, **s.kwargs), jargs, partial(c.torch, **s.kwargs), targs, device)
    return build


def _module_case(name: str, sample_at):
    """Build the leaf class a layer concept covers once, with the sample's weights.

    The concept's adapters build a module on every call, right for parity and wrong for timing;
    each framework here gets its own layout (NHWC for JAX), as a user would feed it.
    """
    def build(n, device, dtype):
        c = registry.get(name)
        s = sample_at(np.random.default_rng(SEED), n, np.dtype(dtype))
        mod, cls = c.covers[0].split(".")
        kw = dict(s.kwargs)
        dt = kw.pop("dtype", None)
        tm = getattr(getattr(T, mod), cls)(**kw, **({"dtype": getattr(torch, dt)} if dt else {}))
        tm = tm.to(torch_device(device)).eval()
        if s.params:
            tm.load_state_dict(bridge.to_torch(s.params, device))
            jm = bridge.flax_module(getattr(getattr(J, mod), cls),
                                    c.params_to_jax(s.params) if c.params_to_jax else dict(s.params),
                                    **kw, **({"dtype": dt} if dt else {}))
        else:
            jm = getattr(getattr(J, mod), cls)(**kw)
        x = s.inputs["x"]
        jx = bridge.to_jax(convert.nchw_to_nhwc(x) if x.ndim == 4 else x, device)
        tx = bridge.to_torch({"x": x}, device)["x"]
        graphdef, state = nnx.split(jm)
        runners = op_runners(lambda st, v: nnx.merge(graphdef, st)(v), (state, jx),
                             tm, (tx,), device)
        runners["jax-eager"] = lambda: Runner(lambda: jm(jx), "jax", context=jax.disable_jit)
        return runners
    return build


def _randn(rng, shape, dt):
    return rng.standard_normal(shape).astype(dt)


_add(Workload(
    "tensors.matmul", "op", "n×n @ n×n", "n", (16, 64, 256, 1024, 2048), (64, 256),
    _concept_case("tensors.matmul", lambda rng, n, dt: Sample(
        f"n={n}", {"a": _randn(rng, (n, n), dt), "b": _randn(rng, (n, n), dt)})),
    lambda n, b: (2.0 * n ** 3, 3.0 * n * n * b)))

# FLOPs per element of each activation, as written (exp, log, max, compare count 1)
_ACT_FLOPS = {"relu": 1, "sigmoid": 3, "log_sigmoid": 4, "tanh": 1, "softmax": 4, "log_softmax": 4, "gelu": 5}
_ACT_KWARGS = {"gelu": {"approximate": "none"},  # torch's default, the exact erf form
               "softmax": {"dim": -1}, "log_softmax": {"dim": -1}}  # over the features, as in a classifier
for _a, _f in _ACT_FLOPS.items():
    _add(Workload(
        f"activations.{_a}", "op", f"{_a} on (batch, 1024)", "batch", BATCHES, (16, 1024),
        _concept_case(f"activations.{_a}", lambda rng, n, dt, _a=_a: Sample(
            f"batch={n}", {"x": _randn(rng, (n, 1024), dt)}, kwargs=_ACT_KWARGS.get(_a, {}))),
        lambda n, b, _f=_f: (_f * n * 1024.0, 2.0 * n * 1024 * b)))

_add(Workload(
    "losses.mse", "op", "mean squared error on (batch, 1024)", "batch", BATCHES, (16, 1024),
    _concept_case("losses.mse", lambda rng, n, dt: Sample(
        f"batch={n}", {"y_hat": _randn(rng, (n, 1024), dt), "y": _randn(rng, (n, 1024), dt)},
        kwargs={"reduction": "mean"})),
    lambda n, b: (3.0 * n * 1024, 2.0 * n * 1024 * b)))

_add(Workload(
    "losses.cross_entropy", "op", "cross-entropy of (batch, 1000) logits", "batch", BATCHES, (16, 1024),
    _concept_case("losses.cross_entropy", lambda rng, n, dt: Sample(
        f"batch={n}", {"logits": _randn(rng, (n, 1000), dt),
                       "labels": rng.integers(0, 1000, (n,)).astype(np.int64)},
        kwargs={"reduction": "mean"})),
    lambda n, b: (4.0 * n * 1000, n * 1000.0 * b + 8.0 * n)))


def _conv_sample(rng, n, dt):
    bound = 1 / np.sqrt(3 * 9)
    return Sample(f"{n}x{n}", {"x": _randn(rng, (16, 3, n, n), dt)},
                  {"weight": rng.uniform(-bound, bound, (32, 3, 3, 3)).astype(dt),
                   "bias": rng.uniform(-bound, bound, (32,)).astype(dt)},
                  dict(in_channels=3, out_channels=32, kernel_size=3, padding=1, dtype=dt.name))


_add(Workload(
    "layers.conv2d", "op", "Conv2d(3, 32, 3, padding=1) on 16 images n×n", "image", IMAGES, (8, 32),
    _module_case("layers.conv2d", _conv_sample),
    lambda n, b: (2.0 * 16 * 32 * n * n * 3 * 9, (16 * 3 * n * n + 32 * 27 + 32 + 16 * 32 * n * n) * b)))

_add(Workload(
    "layers.max_pool2d", "op", "MaxPool2d(2) on (16, 32, n, n)", "image", IMAGES, (8, 32),
    _module_case("layers.max_pool2d", lambda rng, n, dt: Sample(
        f"{n}x{n}", {"x": _randn(rng, (16, 32, n, n), dt)}, kwargs={"kernel_size": 2})),
    lambda n, b: (3.0 * 16 * 32 * (n // 2) ** 2, 16 * 32 * (n * n + (n // 2) ** 2) * b)))

def _module_fwd_bwd_case(name: str, sample_at, extra: dict | None = None):
    """Forward and backward of the leaf class a layer concept covers: the output and the gradients
    of sum(y · ct) for a fixed cotangent `ct`, with respect to the input and every parameter.

    JAX: one `jax.vjp` of the merged module (jitted, or op by op); torch: the module, then
    `torch.autograd.grad` (eager, or on the output of `torch.compile(module)`, whose backward AOT
    compiles too). Each framework gets its own layout, as `_module_case`. `extra`: mode → a jitted
    JAX function of (NHWC input, cotangent), another implementation timed beside them.
    """
    extra = extra or {}
    def build(n, device, dtype):
        c = registry.get(name)
        rng = np.random.default_rng(SEED)
        s = sample_at(rng, n, np.dtype(dtype))
        mod, cls = c.covers[0].split(".")
        kw = dict(s.kwargs)
        dt = kw.pop("dtype", None)
        dkw = {"dtype": dt} if dt else {}
        tm = getattr(getattr(T, mod), cls)(**kw, **({"dtype": getattr(torch, dt)} if dt else {}))
        tm = tm.to(torch_device(device))
        if s.params:
            tm.load_state_dict(bridge.to_torch(s.params, device))
            jm = bridge.flax_module(getattr(getattr(J, mod), cls),
                                    c.params_to_jax(s.params) if c.params_to_jax else dict(s.params), **kw, **dkw)
        else:
            jm = getattr(getattr(J, mod), cls)(**kw)
        x = s.inputs["x"]
        with torch.no_grad():
            y_shape = tuple(tm(bridge.to_torch({"x": x}, device)["x"]).shape)
        ct = rng.standard_normal(y_shape).astype(dtype)
        jx, jct = bridge.to_jax((convert.nchw_to_nhwc(x), convert.nchw_to_nhwc(ct)), device)
        tx = bridge.to_torch({"x": x}, device)["x"].requires_grad_(True)
        tct = bridge.to_torch({"ct": ct}, device)["ct"]
        graphdef, state = nnx.split(jm)

        def jax_fb(st, v, g):
            y, vjp = jax.vjp(lambda st_, v_: nnx.merge(graphdef, st_)(v_), st, v)
            return y, vjp(g)

        jitted = jax.jit(jax_fb)

        def torch_fb(module):
            y = module(tx)
            return y, torch.autograd.grad(y, [tx, *tm.parameters()], tct)

        def compiled(mode=None):
            torch.compiler.reset()
            f = torch.compile(tm, mode=mode, dynamic=False)
            return Runner(lambda: torch_fb(f), "torch")

        out = {"jax-jit": lambda: Runner(lambda: jitted(state, jx, jct), "jax"),
               "jax-eager": lambda: Runner(lambda: jax_fb(state, jx, jct), "jax", context=jax.disable_jit),
               **{m: (lambda f=f: Runner(partial(f, jx, jct), "jax")) for m, f in extra.items()},
               "torch-eager": lambda: Runner(lambda: torch_fb(tm), "torch"),
               "torch-compile": lambda: compiled(None)}
        if device == "cuda":
            out["torch-compile-ro"] = lambda: compiled("reduce-overhead")
        return out
    return build


CONV_FB_BATCH = 64
_add(Workload(
    "layers.conv2d.fwd_bwd", "op", f"Conv2d(3, 32, 3, padding=1) forward + backward on {CONV_FB_BATCH} images n×n",
    "image", IMAGES, (8, 32),
    _module_fwd_bwd_case("layers.conv2d", lambda rng, n, dt: dataclasses.replace(
        _conv_sample(rng, n, dt), inputs={"x": _randn(rng, (CONV_FB_BATCH, 3, n, n), dt)})),
    # forward, input gradient and weight gradient: one convolution's multiply-adds each, plus the
    # bias gradient's sum; reads x, w, b and the cotangent, writes y and the three gradients
    lambda n, b: (3 * 2.0 * CONV_FB_BATCH * 32 * n * n * 3 * 9 + CONV_FB_BATCH * 32 * n * n,
                  (2 * (CONV_FB_BATCH * 3 * n * n + 32 * 27 + 32) + 2 * CONV_FB_BATCH * 32 * n * n) * b),
    cpu_max=64))

@jax.jit
def _reduce_window_pool_fwd_bwd(x, ct):
    """MaxPool2d(2) written plainly: lax.reduce_window's max forward, JAX's VJP of it backward."""
    def pool(v):
        return jax.lax.reduce_window(v, -np.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    y, vjp = jax.vjp(pool, x)
    return y, vjp(ct)


_add(Workload(
    "layers.max_pool2d.fwd_bwd", "op", "MaxPool2d(2) forward + backward on (16, 32, n, n)", "image", IMAGES, (8, 32),
    _module_fwd_bwd_case("layers.max_pool2d", lambda rng, n, dt: Sample(
        f"{n}x{n}", {"x": _randn(rng, (16, 32, n, n), dt)}, kwargs={"kernel_size": 2}),
        {"jax-reduce-window": _reduce_window_pool_fwd_bwd}),
    # forward: 3 comparisons per 2×2 window; backward: one comparison and one select per input
    # element; reads x and the cotangent, writes y and the input gradient
    lambda n, b: (3.0 * 16 * 32 * (n // 2) ** 2 + 2.0 * 16 * 32 * n * n,
                  2 * 16 * 32 * (n * n + (n // 2) ** 2) * b),
    extra_modes=M.REDUCE_WINDOW, vs={"jax-jit": "jax-reduce-window"}))

LINEAR_IN, LINEAR_OUT = 784, 128  # SimpleNet's first layer on MNIST
_add(Workload(
    "layers.linear", "op", f"Linear({LINEAR_IN}, {LINEAR_OUT}) on (batch, {LINEAR_IN})", "batch", BATCHES, (16, 1024),
    _module_case("layers.linear", lambda rng, n, dt: Sample(
        f"batch={n}", {"x": _randn(rng, (n, LINEAR_IN), dt)},
        {"weight": rng.uniform(-LINEAR_IN ** -0.5, LINEAR_IN ** -0.5, (LINEAR_OUT, LINEAR_IN)).astype(dt),
         "bias": rng.uniform(-LINEAR_IN ** -0.5, LINEAR_IN ** -0.5, (LINEAR_OUT,)).astype(dt)},
        dict(in_features=LINEAR_IN, out_features=LINEAR_OUT, bias=True, dtype=dt.name))),
    # x·Wᵀ: 2 FLOPs per multiply-add, then the bias add
    lambda n, b: (2.0 * n * LINEAR_IN * LINEAR_OUT + n * LINEAR_OUT,
                  (n * LINEAR_IN + LINEAR_IN * LINEAR_OUT + LINEAR_OUT + n * LINEAR_OUT) * b)))


# ---------------------------------------------------------------- whole training steps
# MNIST-sized data: 1×28×28 images, 10 classes. The models are the ones `parity train` builds for
# such data (`training.model_kwargs`), so their sizes and FLOPs are read off the built models,
# never written down.
TRAIN_IMAGE = (1, 28, 28)
TRAIN_CLASSES = 10
TRAIN_MODELS = ("linear_net", "simple_net", "small_cnn")
# optimiser → (hyperparameters, FLOPs per parameter of one update, state tensors per parameter)
_OPTIMS = {"sgd": ({"lr": 0.05, "momentum": 0.9}, 4, 1), "adam": ({"lr": 1e-3}, 12, 2)}


@dataclass(frozen=True)
class ModelCounts:
    """What one training workload's model costs, per example: `forward_flops` and
    `train_flops` (forward + backward of the cross-entropy loss), as torch.utils.flop_counter counts
    them on the built torch model (matmuls and convolutions, 2 FLOPs per multiply-add; the
    elementwise bias adds, ReLUs and poolings are left out), and the parameters of the model."""

    kwargs: dict
    params: int
    forward_flops: float
    train_flops: float
    input_elements: int


@functools.cache
def model_counts(model: str) -> ModelCounts:
    from torch.utils.flop_counter import FlopCounterMode

    n = 2  # every count here is linear in the batch; two examples, so nothing special-cases one
    probe = data.Dataset("probe", np.zeros((n, *TRAIN_IMAGE), np.float32), np.array([0, TRAIN_CLASSES - 1]),
                         np.zeros((1, *TRAIN_IMAGE), np.float32), np.array([0]))
    kwargs = training.model_kwargs(model, probe)
    tm = training.build(model, kwargs, "torch", "float32")
    x, y = torch.as_tensor(probe.x_train), torch.as_tensor(probe.y_train)
    with FlopCounterMode(display=False) as fwd:
        tm(x)
    with FlopCounterMode(display=False) as both:
        F.cross_entropy(tm(x), y).backward()
    return ModelCounts(kwargs, sum(p.numel() for p in tm.parameters()), fwd.get_total_flops() / n,
                       both.get_total_flops() / n, int(np.prod(TRAIN_IMAGE)))


def _scan_steps(batch: int) -> int:
    return max(2, min(10, 4096 // batch))


def _train_case(model: str, opt: str):
    hyper = _OPTIMS[opt][0]

    def build(n, device, dtype):
        rng = np.random.default_rng(SEED)
        k = _scan_steps(n)
        kwargs = model_counts(model).kwargs
        xs = rng.random((k, n, *TRAIN_IMAGE)).astype(dtype)
        ys = rng.integers(0, TRAIN_CLASSES, (k, n)).astype(np.int64)
        jxs, jys = bridge.to_jax((xs.transpose(0, 1, 3, 4, 2), ys), device)  # NHWC for JAX
        jx, jy = jxs[0], jys[0]
        tx, ty = (bridge.to_torch({"v": v}, device)["v"] for v in (xs[0], ys[0]))

        def jax_trainer():
            m = getattr(J.models, training.class_name(model))(**kwargs, dtype=dtype, rngs=nnx.Rngs(0))
            return J.train.Trainer(m, J.optim.from_library(opt, **hyper), J.losses.cross_entropy)

        def torch_model():
            torch.manual_seed(0)
            return training.build(model, kwargs, "torch", dtype).to(torch_device(device))

        def torch_trainer():
            # F.cross_entropy, as `parity train` does: the labels are made in range above, and
            # torch_impl's check reads them back to the host (a sync and a graph break per step)
            return T.train.Trainer(torch_model(), T.optim.from_library(opt, **hyper), F.cross_entropy)

        def jit(context=contextlib.nullcontext):
            tr = jax_trainer()
            return Runner(lambda: tr.step(jx, jy), "jax", context=context)

        def scan():
            tr = jax_trainer()
            step = tr.step_fn  # the pure step the Trainer jits

            # XLA:CPU runs convolutions inside a while loop ~9× slower (measured on the CNN step),
            # so on the CPU the few steps are unrolled; on a GPU the loop stays rolled
            @partial(jax.jit, donate_argnums=0)
            def epoch(state, xs, ys):
                return jax.lax.scan(lambda st, b: step(st, b[0], b[1], None), state, (xs, ys),
                                    unroll=device == "cpu")

            def call():
                tr.state, losses = epoch(tr.state, jxs, jys)
                return losses
            return Runner(call, "jax", steps=k)

        def eager():
            tr = torch_trainer()
            return Runner(lambda: tr.step(tx, ty), "torch")

        def compiled(mode=None):
            tr = torch_trainer()
            torch.compiler.reset()
            f = torch.compile(tr.step, mode=mode)
            return Runner(lambda: f(tx, ty), "torch")

        def op_by_op():
            # a debugging mode: JAX's op-by-op dispatch compiles each primitive once per static
            # argument, and optax's bias correction decay ** count is one integer_pow per step count,
            # so successive steps would time a compilation each (~30 ms). The state is put back
            # before every timed call (the count repeats, only dispatch is timed; under
            # disable_jit nothing is donated, and the assignment costs ~30 µs of a step of ms).
            tr = jax_trainer()
            start = tr.state

            def call():
                tr.state = start
                return tr.step(jx, jy)
            return Runner(call, "jax", context=jax.disable_jit)

        out = {"jax-jit": jit, "jax-eager": op_by_op, "jax-scan": scan,
               "torch-eager": eager, "torch-compile": compiled}
        if device == "cuda":
            out["torch-compile-ro"] = partial(compiled, "reduce-overhead")
            out["torch-graph"] = lambda: Runner(_graphed_step(torch_model().train(), opt, hyper, tx, ty), "torch")
        return out
    return build


def _graphed_step(model, opt, hyper, x, y):
    """A zero-argument step whose first call captures the whole step in one CUDA graph, then replays.

    Capture cannot contain a host sync, so the loss is F.cross_entropy without torch_impl's label
    range check, and Adam keeps its step count on the GPU (capturable=True).
    """
    params = list(model.parameters())
    o = (torch.optim.Adam(params, **hyper, fused=True, capturable=True) if opt == "adam"
         else torch.optim.SGD(params, **hyper, foreach=True))
    loss_fn = torch.nn.functional.cross_entropy
    graph, loss = None, None

    def step():
        nonlocal graph, loss
        if graph is None:
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):  # warm-up outside the graph, as torch's docs prescribe
                for _ in range(3):
                    o.zero_grad(set_to_none=True)
                    loss_fn(model(x), y).backward()
                    o.step()
            torch.cuda.current_stream().wait_stream(s)
            graph = torch.cuda.CUDAGraph()
            o.zero_grad(set_to_none=True)
            with torch.cuda.graph(graph):
                loss = loss_fn(model(x), y)
                loss.backward()
                o.step()
        graph.replay()
        return loss
    return step


def train_count(model: str, opt: str):
    """(batch, bytes per element) → (FLOPs, bytes) of one training step.

    FLOPs: forward and backward on the batch (`model_counts`) plus the optimiser's update of every
    parameter. Bytes: the batch read once (images and int64 labels), the parameters read twice
    (forward and backward), and the update reading and writing parameters, gradients and optimiser
    state once each.
    """
    _, opt_flops, n_state = _OPTIMS[opt]

    def count(n, b):
        c = model_counts(model)
        return (c.train_flops * n + opt_flops * c.params,
                n * (c.input_elements * b + 8.0) + c.params * b * (2 + 2 * (2 + n_state)))
    return count


for _m in TRAIN_MODELS:
    for _o in _OPTIMS:
        _add(Workload(
            f"train.{_m}.{_o}", "train",
            f"one {training.class_name(_m)} + {_o} step on MNIST-sized data ({'×'.join(map(str, TRAIN_IMAGE))})",
            "batch", (1, 16, 64, 256, 1024, 8192) if _m == "small_cnn" else (1, 64, 1024, 8192),
            (64,), _train_case(_m, _o), train_count(_m, _o), cpu_max=1024 if _m == "small_cnn" else None))


# ---------------------------------------------------------------- each Trainer against a minimal step
# How much each framework's Trainer costs over the least code that trains the same model: a
# `jax.jit` step over plain arrays with optax (donated buffers, index rows already on the device)
# and a torch step with fused Adam. The Trainers are driven as `parity train` drives them (index
# rows of a dataset on the device, put there once per epoch). The modes are these workloads' own
# (benchmarks/modes.py, TRAINER_VS_MINIMAL), each Trainer's ratio taken against its framework's
# minimal step.


def _trainer_vs_minimal_case(model: str):
    hyper = _OPTIMS["adam"][0]

    def build(n, device, dtype):
        rng = np.random.default_rng(SEED)
        k = _scan_steps(n)
        kwargs = model_counts(model).kwargs
        xs = rng.random((n * k, *TRAIN_IMAGE)).astype(dtype)
        ys = rng.integers(0, TRAIN_CLASSES, (n * k,)).astype(np.int64)
        rows = rng.permutation(n * k).reshape(k, n)
        jx, jy = bridge.to_jax((xs.transpose(0, 2, 3, 1), ys), device)
        tx, ty = (bridge.to_torch({"v": v}, device)["v"] for v in (xs, ys))
        trows = [torch.as_tensor(r, device=torch_device(device)) for r in rows]
        sd = training.init_state_dict(training.build(model, kwargs, "torch", dtype), np.random.default_rng(0))

        def jax_trainer():
            m = training.build(model, kwargs, "jax", dtype, sd)
            return J.train.Trainer(m, J.optim.from_library("adam", **hyper), J.losses.cross_entropy)

        def jax_step_at():
            tr, box = jax_trainer(), {"i": k}

            def call():
                if box["i"] == k:  # a new epoch: its rows onto the device once, as JaxSide.epoch
                    box["rows"], box["i"] = jax.device_put(rows.astype(np.int32), jx.device), 0
                box["i"] += 1
                return tr.step_at(jx, jy, box["rows"], box["i"] - 1)
            return Runner(call, "jax")

        def jax_epoch():
            tr = jax_trainer()
            return Runner(lambda: tr.epoch(jx, jy, jax.device_put(rows.astype(np.int32), jx.device)), "jax", steps=k)

        def jax_minimal():
            import optax
            graphdef, params, rest = nnx.split(training.build(model, kwargs, "jax", dtype, sd), nnx.Param, ...)
            tx_ = optax.adam(**{"learning_rate": hyper["lr"]})
            # committed to the device, as the step's outputs are: uncommitted first inputs would make
            # the second call compile the step again (and the harness calibrate on that call)
            p = jax.device_put(jax.tree.map(jax.numpy.copy, nnx.to_pure_dict(params)), jx.device)
            box = {"p": p, "o": jax.device_put(tx_.init(p), jx.device), "i": 0}
            drows = [jax.device_put(r.astype(np.int32), jx.device) for r in rows]

            @partial(jax.jit, donate_argnums=(0, 1))
            def step(p, o, idx):
                def loss(p):
                    return J.losses.cross_entropy(nnx.merge(graphdef, nnx.State(p), rest)(jx[idx]), jy[idx])
                value, g = jax.value_and_grad(loss)(p)
                u, o = tx_.update(g, o, p)
                return optax.apply_updates(p, u), o, value

            def call():
                box["p"], box["o"], value = step(box["p"], box["o"], drows[box["i"] % k])
                box["i"] += 1
                return value
            return Runner(call, "jax")

        def torch_model():
            return training.build(model, kwargs, "torch", dtype, sd).to(torch_device(device))

        @contextlib.contextmanager
        def one_thread():  # parity train's torch threads on the CPU (training._torch_threads says why)
            saved = torch.get_num_threads()
            torch.set_num_threads(1 if device == "cpu" else saved)
            try:
                yield
            finally:
                torch.set_num_threads(saved)

        def torch_trainer():
            tr, box = T.train.Trainer(torch_model(), T.optim.from_library("adam", **hyper), F.cross_entropy), {"i": 0}

            def call():
                box["i"] += 1
                return tr.step(tx, ty, trows[(box["i"] - 1) % k])
            return Runner(call, "torch", context=one_thread)

        def torch_minimal():
            m = torch_model().train()
            opt, box = torch.optim.Adam(m.parameters(), **hyper, fused=True), {"i": 0}

            def call():
                idx = trows[box["i"] % k]
                box["i"] += 1
                opt.zero_grad(set_to_none=True)
                value = F.cross_entropy(m(tx[idx]), ty[idx])
                value.backward()
                opt.step()
                return value.detach()
            return Runner(call, "torch", context=one_thread)

        return {"torch-minimal": torch_minimal, "torch-trainer": torch_trainer, "jax-minimal": jax_minimal,
                "jax-trainer": jax_step_at, "jax-trainer-scan": jax_epoch}
    return build


for _m in TRAIN_MODELS:
    _add(Workload(
        f"train.{_m}.adam.trainer_vs_minimal", "train",
        f"{training.class_name(_m)} + adam: each framework's Trainer step against a minimal step",
        "batch", (1, 64, 1024) if _m != "small_cnn" else (1, 64, 256), (64,),
        _trainer_vs_minimal_case(_m), train_count(_m, "adam"),
        own_modes=M.TRAINER_VS_MINIMAL, vs=M.TRAINER_VS_MINIMAL_VS))


# ---------------------------------------------------------------- data-parallel training steps
# One data-parallel training step over N ranks/devices (the swept size): torch DDP over N processes
# (gloo on the CPU, NCCL on CUDA) and JAX's step sharded over N devices of one process (on the CPU,
# N host devices of a process started with XLA_FLAGS=--xla_force_host_platform_device_count=N).
# Every device gets the same batch of 64 (weak scaling). The step runs in worker processes, so each
# timed call asks them for `timing.STEPS_PER_CALL` steps and waits for all of them
# (parity/distributed/timing.py says why that is the harness's own model, and how
# `python -m parity.distributed.timing bench-cpu.json` turns the results into scaling efficiency).
DP_RANKS = (1, 2, 4, 8)


@dataclass(frozen=True)
class DataParallelWorkload(Workload):
    """Its sweep stops at the ranks the machine has: CPU cores, or CUDA devices (then the device
    count itself is added to the full sweep)."""

    def sweep(self, device: str, full: bool) -> tuple[int, ...]:
        from parity.distributed.compare import devices_available
        have = devices_available(device)
        keep = tuple(n for n in (self.sizes if full else self.smoke_sizes) if n <= have)
        if full and device == "cuda" and have not in keep and have <= max(self.sizes):
            keep = tuple(sorted(keep + (have,)))
        return keep or (1,)


def _dp_case(model: str, opt: str):
    hyper = _OPTIMS[opt][0]

    def build(n, device, dtype):
        from parity.distributed import timing
        spec = {"model": model, "kwargs": model_counts(model).kwargs, "optimizer": opt, "hyper": hyper,
                "dtype": dtype, "image": list(TRAIN_IMAGE), "classes": TRAIN_CLASSES}

        def runner(fw, mode):
            def make():  # the workers start (once per bench run) and build the step: nothing timed yet
                group, key = timing.prepare(fw, n, device, {**spec, "mode": mode})
                return Runner(lambda: timing.steps(group, key, timing.STEPS_PER_CALL), "jax",
                              steps=timing.STEPS_PER_CALL, context=timing.guard)
            return make

        out = {"jax-jit": runner("jax", "jit"), "jax-eager": runner("jax", "eager"),
               "torch-eager": runner("torch", "eager"), "torch-compile": runner("torch", "compile")}
        if device == "cuda":
            out["torch-compile-ro"] = runner("torch", "compile-ro")
        return out
    return build


def dp_count(model: str, opt: str):
    """(N, bytes per element) → (FLOPs, bytes) of one data-parallel step: N single-device steps of
    the per-device batch (`train_count`), plus the gradients' ring all-reduce, which moves
    2·(N − 1)/N of the parameters in and out of each of the N devices."""
    single = train_count(model, opt)

    def count(n, b):
        from parity.distributed.timing import PER_DEVICE_BATCH
        flops, nbytes = single(PER_DEVICE_BATCH, b)
        return n * flops, n * nbytes + 2.0 * (n - 1) * model_counts(model).params * b
    return count


for _m in TRAIN_MODELS:
    for _o in _OPTIMS:
        _add(DataParallelWorkload(
            f"dp.{_m}.{_o}", "dp",
            f"one data-parallel {training.class_name(_m)} + {_o} step, 64 images per device (torch DDP, JAX sharded)",
            "ranks", DP_RANKS, (1, 2), _dp_case(_m, _o), dp_count(_m, _o)))


def all_workloads() -> list[Workload]:
    return list(WORKLOADS.values())


def select(names: list[str] | None, full: bool = False) -> list[Workload]:
    """Workloads by name or prefix ("train", "activations"); with no names, SMOKE (all when `full`)."""
    ws = list(WORKLOADS.values())
    if not names:
        return ws if full else [w for w in ws if w.name in SMOKE]
    chosen: list[Workload] = []
    for n in names:
        hit = [w for w in ws if w.name == n or w.name.startswith(n + ".")]
        if not hit:
            raise UnknownWorkload(n, close_names(n))
        chosen += [w for w in hit if w not in chosen]
    return chosen


class UnknownWorkload(KeyError):
    def __init__(self, name: str, close: list[str]):
        self.name, self.close = name, close
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        super().__init__(f"unknown workload {name!r}{hint} (parity bench --list shows them)")

    def __str__(self):
        return self.args[0]


def close_names(name: str) -> list[str]:
    ws = all_workloads()
    keys = {w.name: w.name for w in ws}
    keys.update({w.name.split(".", 1)[1]: w.name for w in ws})
    keys.update({w.name.split(".", 1)[0]: w.name.split(".", 1)[0] for w in ws})
    return list(dict.fromkeys(keys[h] for h in difflib.get_close_matches(name, list(keys), n=5, cutoff=0.6)))
