"""`compare_training`: the same initial weights, the same batches, N optimiser steps in each framework;
both loss curves, and the first step (and parameter) where they part.

The bound is `parity.tolerances.training_curve(dtype)`: |flax − torch| <= N·u·(1 + |torch|) per step,
for the loss and, after each step, elementwise for every parameter. It holds for free-running curves
over one segment of `parity.curves.SEGMENT_STEPS` (20) steps; beyond that rounding drift feeds back
step after step (parity/curves.py), so every 20 steps the Flax side restarts from torch's weights,
statistics and optimiser slots (teacher forcing), which needs the optax state to be one whose slots
map onto torch's (SGD momentum: `trace` ⇄ `momentum_buffer`; Adam/AdamW: `mu`, `nu`, `count` ⇄
`exp_avg`, `exp_avg_sq`, `step`).

A float32 run can, rarely, exceed the bound through a rounding event (a ReLU input or a max-pool
runner-up within rounding of its threshold; parity/curves.py measured two segments in 396). Such a
segment is replayed in float64 by both frameworks from the state it started from (torch's weights,
statistics and optimiser state, the same dropout masks, the same batches): where the replay agrees
within the float64 bound, the segment is excused as rounding; a real difference (a wrong formula or
hyperparameter) is as large in float64 and the replay confirms it. At most one segment in
`parity.curves.EXCUSED_SHARE` (8), and at least one, may be excused, the rule `parity train` uses,
so that a float32-only defect, which shows in every segment, is not explained away. Each replay is
listed in the report (`replays`) with both runs' worst errors.
"""
from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
from flax import nnx
from rich.table import Table

from parity import curves, precision
from parity.console import write_json_atomic
from parity.porting import core, trace
from parity.porting.pairing import PortingError
from parity.porting.report import _json_safe
from parity.tolerances import Tolerance, training_curve

LOSSES = ("mse", "cross_entropy")


def _losses(loss):
    if isinstance(loss, tuple) and len(loss) == 2 and all(callable(f) for f in loss):
        return loss
    if loss == "mse":  # mean((out − y)²) in both (docs/traps.md, trap 22)
        return (torch.nn.functional.mse_loss, lambda o, y: jnp.mean((o - y) ** 2))
    if loss == "cross_entropy":  # mean over the batch, classes on the last axis of (N, C) logits (trap 23)
        return (torch.nn.functional.cross_entropy,
                lambda o, y: optax.softmax_cross_entropy_with_integer_labels(o, y).mean())
    raise PortingError(f"loss must be 'mse', 'cross_entropy' or a (torch_fn, jax_fn) pair; got {loss!r}")


@dataclass(frozen=True)
class SegmentReplay:
    """A float32 segment whose loss or parameters exceeded the bound, replayed in float64 from the
    state it started from. Steps are 1-based; errors are in multiples of each run's own bound."""

    segment: int
    first: int
    last: int
    worst32: float
    worst64: float
    agrees: bool  # the float64 replay is within its bound: the float32 excess was rounding
    excused: bool  # counted as a rounding event (at most one segment in curves.EXCUSED_SHARE)
    replay_summary: str = ""

    def describe(self) -> str:
        head = (f"steps {self.first}–{self.last} exceeded the float32 bound ({self.worst32:.3g}× it); their "
                f"float64 replay is within {self.worst64:.3g}× the float64 bound")
        if self.excused:
            return head + ": excused as a rounding event"
        if self.agrees:
            return head + (": agrees in float64, but more segments exceed in float32 than rounding events "
                           "explain (a float32-only difference)")
        return head.replace("is within", "is at") + ": the float64 replay confirms a real difference"

    def to_dict(self) -> dict:
        return _json_safe(dataclasses.asdict(self) | {"text": self.describe()})


@dataclass
class TrainingReport:
    """Both loss curves (per step, float64) and where they first part. Steps are 1-based."""

    torch_model: str
    flax_model: str
    dtype: str
    device: str
    steps: int
    tolerance: Tolerance
    torch_losses: np.ndarray
    flax_losses: np.ndarray
    param_errors: np.ndarray  # per step: the largest parameter error, in multiples of the bound
    first_loss_step: int | None
    first_param_step: int | None
    first_param: str | None
    forced_every: int | None
    notes: list = field(default_factory=list)
    seconds: float = 0.0
    replays: list = field(default_factory=list)  # [SegmentReplay]: float32 segments replayed in float64

    @property
    def excused(self) -> list:
        """The segments excused as rounding events by their float64 replay."""
        return [r for r in self.replays if r.excused]

    @property
    def passed(self) -> bool:
        return self.first_loss_step is None and self.first_param_step is None

    def summary(self) -> str:
        head = (f"{self.torch_model} (torch) vs {self.flax_model} (Flax), {self.steps} steps, {self.dtype} on "
                f"{self.device}, bound {self.tolerance.rtol:.3g}·(1 + |value|): ")
        if self.passed:
            judged = self._judged()
            worst = float(np.max(self._loss_gaps()[judged], initial=0.0))
            extra = (f"; {len(self.excused)} segment(s) excused as rounding by a float64 replay"
                     if self.excused else "")
            return head + (f"SAME — losses within {worst:.2g} of each other; parameters within "
                           f"{float(np.max(self.param_errors[judged], initial=0.0)):.2g} of the bound{extra}")
        parts = []
        if self.first_loss_step is not None:
            k = self.first_loss_step - 1
            parts.append(f"losses part at step {self.first_loss_step} (torch {self.torch_losses[k]:.9g}, "
                         f"Flax {self.flax_losses[k]:.9g})")
        if self.first_param_step is not None:
            parts.append(f"parameters part after step {self.first_param_step}, first `{self.first_param}` "
                         f"({self.param_errors[self.first_param_step - 1]:.3g}× the bound)")
        return head + "DIFFERENT — " + "; ".join(parts)

    def _judged(self) -> np.ndarray:
        """Per step: False inside a segment excused by its float64 replay."""
        judged = np.ones(self.steps, bool)
        for r in self.excused:
            judged[r.first - 1:r.last] = False
        return judged

    def _loss_gaps(self) -> np.ndarray:
        """|flax − torch| per step; 0 where both are the same non-finite value (agreement)."""
        t, f = np.asarray(self.torch_losses, np.float64), np.asarray(self.flax_losses, np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            return np.where(curves.same_nonfinite(t, f), 0.0, np.abs(f - t))

    def lines(self) -> list[str]:
        """The replays and notes printed under the table."""
        return [f"replay: {r.describe()}" for r in self.replays] + [f"note: {n}" for n in self.notes]

    def table(self, every: int = 1) -> Table:
        t = Table(title=f"{self.torch_model} ⇄ {self.flax_model}: training", header_style="bold")
        gaps = self._loss_gaps()
        rows = []
        for k in range(0, self.steps, every):
            a, b = self.torch_losses[k], self.flax_losses[k]
            bad = (self.first_loss_step == k + 1) or (self.first_param_step == k + 1)
            rows.append(([str(k + 1), f"{a:.9g}", f"{b:.9g}", f"{gaps[k]:.2g}", f"{self.param_errors[k]:.2g}",
                          "◀ parts" if bad else ""], bad))
        # numbers are never cut: each column at least as wide as its widest cell (headers may wrap)
        for i, col in enumerate(("step", "torch loss", "Flax loss", "|Δ loss|", "params (× bound)", "")):
            t.add_column(col, justify="right", min_width=max((len(r[i]) for r, _ in rows), default=1))
        for cells, bad in rows:
            t.add_row(*cells, style="bold red" if bad else None)
        return t

    def to_dict(self) -> dict:
        return _json_safe({
            "passed": self.passed, "summary": self.summary(), "torch_model": self.torch_model,
            "flax_model": self.flax_model, "dtype": self.dtype, "device": self.device, "steps": self.steps,
            "tolerance": {"rtol": self.tolerance.rtol, "atol": self.tolerance.atol, "source": self.tolerance.source},
            "torch_losses": self.torch_losses.tolist(), "flax_losses": self.flax_losses.tolist(),
            "param_errors_over_bound": self.param_errors.tolist(), "first_loss_step": self.first_loss_step,
            "first_param_step": self.first_param_step, "first_param": self.first_param,
            "forced_every": self.forced_every, "notes": self.notes, "seconds": self.seconds,
            "replays": [r.to_dict() for r in self.replays]})

    def write_json(self, path) -> None:
        write_json_atomic(self.to_dict(), path)


# optax states whose slots map onto torch's optimiser state, by name
_SLOTS = {optax.ScaleByAdamState: {"mu": "exp_avg", "nu": "exp_avg_sq", "count": "step"},
          optax.TraceState: {"trace": "momentum_buffer"}}


def _force_slots(opt_state, torch_opt, pairing, params_state, names):
    """The optax state with its slots replaced by torch's (converted to Flax layout)."""
    by_param = {id(p): n for n, p in names.items()}

    def slot(torch_key):
        sd = {}
        step = 0
        for group in torch_opt.param_groups:
            for p in group["params"]:
                st = torch_opt.state.get(p, {})
                if torch_key == "step":
                    step = int(st.get("step", 0))
                elif torch_key in st:
                    sd[by_param[id(p)]] = st[torch_key].detach().cpu().numpy().copy()
        return step if torch_key == "step" else sd

    def walk(s):
        m = _SLOTS.get(type(s))
        if m:
            new = {}
            for field_, key in m.items():
                old = getattr(s, field_)
                if key == "step":
                    new[field_] = jnp.asarray(slot("step"), old.dtype)
                else:
                    sd = slot(key)
                    ref = nnx.to_pure_dict(old)
                    pure = pairing.torch_to_flax(sd) if sd else jax.tree.map(np.zeros_like, ref)
                    filled = jax.tree.map(lambda a: a, old)
                    nnx.replace_by_pure_dict(filled, jax.tree.map(lambda r, v: jnp.asarray(v, r.dtype), ref,
                                                                  _complete(ref, pure)))
                    new[field_] = filled
            return s._replace(**new)
        if type(s) is tuple:
            return tuple(walk(x) for x in s)
        if isinstance(s, (optax.EmptyState, optax.ScaleByScheduleState)) or not jax.tree.leaves(s):
            return s
        if any(np.shape(a) == np.shape(b) for a in jax.tree.leaves(s) for b in jax.tree.leaves(params_state)
               if np.ndim(a) > 0):
            raise PortingError(f"steps > {curves.SEGMENT_STEPS}: teacher forcing cannot map the optax state "
                               f"{type(s).__name__} onto torch's optimiser state (known: SGD momentum, Adam, "
                               f"AdamW); run at most {curves.SEGMENT_STEPS} steps")
        return s
    return walk(opt_state)


def _complete(ref: dict, pure: dict) -> dict:
    out = {}
    for k, r in ref.items():
        if isinstance(r, dict):
            out[k] = _complete(r, pure.get(k, {}) if isinstance(pure, dict) else {})
        else:
            out[k] = pure[k] if isinstance(pure, dict) and k in pure else np.zeros(np.shape(r))
    return out


def compare_training(torch_model, flax_model, batches, torch_optimizer_factory, optax_tx, steps: int | None = None,
                     *, loss="mse", dtype: str = "float32", device: str = "cpu", mode: str = "strict",
                     weights="torch->flax", layout: str = "nhwc", train: bool = True, seed: int = core.SEED,
                     torch_kwargs: dict | None = None, flax_kwargs: dict | None = None,
                     on_step=None, replay: bool = True, _start: dict | None = None) -> TrainingReport:
    """Train a copy of each model from the same weights on the same batches for `steps` steps.

    `batches`: a sequence of (x, y) in torch's layout (x one array or a tuple of them), used in order
    and cycled; a list or tuple is checked whole before training, any other Sequence (one that makes
    each batch when indexed, so that a long run never holds them all) batch by batch as it is used.
    `on_step(k)`, if given, is called after step k (1-based) of `steps`, for a progress bar.
    `torch_optimizer_factory(parameters)` builds the torch optimiser, `optax_tx` is the
    optax transformation; `loss` is 'mse', 'cross_entropy' or a (torch_fn(out, y), jax_fn(out, y)) pair.
    Training mode by default (train=False trains in eval mode); paired Dropouts share one mask per
    step. Parameters are compared after every step (BatchNorm's running statistics are not: stock
    nnx.BatchNorm keeps a biased variance, docs/traps.md, trap 12, which `compare(train=True)` shows).
    Models with one output. The caller's models are not changed. `replay` (float32 only): replay a
    segment that exceeds the bound in float64 and excuse it as a rounding event where the replay
    agrees (module docstring); replay=False judges float32 by its bound alone."""
    t0 = time.perf_counter()
    if not isinstance(batches, Sequence) or isinstance(batches, (str, bytes)):
        batches = list(batches)
    if not len(batches):
        raise PortingError("no batches given")
    steps = len(batches) if steps is None else steps
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise PortingError(f"steps must be an integer >= 1; got {steps!r}")
    if not callable(torch_optimizer_factory):
        raise PortingError("torch_optimizer_factory must be callable: parameters → torch optimiser")
    if not (hasattr(optax_tx, "init") and hasattr(optax_tx, "update")):
        raise PortingError("optax_tx must be an optax.GradientTransformation")
    t_loss, j_loss = _losses(loss)
    for name, value, choices in (("dtype", dtype, precision.DTYPES), ("mode", mode, precision.MODES)):
        core._choice(name, value, choices)
    if callable(weights) and not isinstance(weights, dict):
        raise PortingError("compare_training takes weights='torch->flax', 'flax->torch' or a {torch_name: "
                           "flax_path} mapping")
    mapping, _, direction = core._weights_arg(weights, None)
    if isinstance(torch_model, torch.nn.Module) and next(torch_model.parameters(), None) is None:
        raise PortingError(f"the torch model ({type(torch_model).__name__}) has no parameters: there is nothing "
                           f"to train")

    def batch(i):
        b = batches[i]
        if not (isinstance(b, (tuple, list)) and len(b) == 2):
            raise PortingError(f"batch {i}: expected (x, y), got {type(b).__name__}")
        return core.as_numpy_inputs(b[0], dtype), core.as_numpy_inputs(b[1], dtype)[0]
    eager = isinstance(batches, (list, tuple))
    data = [batch(i) for i in range(len(batches))] if eager else None
    first_batch = data[0] if eager else batch(0)
    notes: list[str] = []
    tol = training_curve(dtype)
    seg = curves.SEGMENT_STEPS

    with precision.policy(mode):
        t, f, tl, fl, np_in, t_kw, runner, _, masks = core._prepare(
            torch_model, flax_model, first_batch[0], dtype, device, mode, layout, train, torch_kwargs, flax_kwargs,
            seed, notes)
        tdev, jdev = core._tdev(t), precision.jax_device(device)
        f_kw = dict(flax_kwargs or {})
        with trace.patched({type(lf.module) for lf in fl.values()}):
            pairing = core.pair_and_convert(t, f, tl, fl, np_in, t_kw, runner, mapping, None, direction, layout,
                                            notes)
            if any(p.flatten_candidate for p in pairing.pairs):
                f_calls, _, _, _ = runner.run(pairing)
                core._check_flatten(pairing, f_calls, t, f, direction, None, layout)
            names = dict(t.named_parameters())
            try:
                opt = torch_optimizer_factory(t.parameters())
            except Exception as e:  # noqa: BLE001 - the caller's factory refusing its settings is bad input
                raise PortingError(f"torch_optimizer_factory failed: {core._first_line(e)}") from None
            graphdef, params, rest = nnx.split(f, nnx.Param, ...)
            opt_state = optax_tx.init(params)
            if _start is not None:  # a replay: torch's optimiser state and the masks where the segment began
                opt.load_state_dict(_start["optimizer"])  # torch casts the slots to the parameters' dtype
                masks.rng.bit_generator.state = _start["masks"]
                if _start["optimizer"]["state"]:
                    opt_state = _force_slots(opt_state, opt, pairing, params, names)
            # all of the state committed to the device, as the step's outputs will be: otherwise the
            # second step (uncommitted → committed inputs) compiles the step again
            params, rest, opt_state = jax.device_put((params, rest, opt_state), jdev)

            def jax_step(params, rest, opt_state, xs, y, mask_arrays):
                handler = trace.flax_recorder(None, core._mask_store(mask_arrays, layout).flax_inject(pairing, train))

                def lossf(m):
                    with trace.bind(m, fl, handler):
                        out = m(*xs, **f_kw)
                    channels_last = 3 <= out.ndim <= 5 and core.is_nhwc(out.shape, y.shape, layout)
                    out_t = jnp.moveaxis(out, -1, 1) if channels_last else out
                    return j_loss(out_t, y)
                m = nnx.merge(graphdef, params, rest)
                # nnx's transform, so that the pass may update BatchNorm statistics; parameters only
                value, grads = nnx.value_and_grad(lossf, argnums=nnx.DiffState(0, nnx.Param))(m)
                updates, new_opt = optax_tx.update(grads, opt_state, params)
                return optax.apply_updates(params, updates), nnx.split(m, nnx.Param, ...)[2], new_opt, value

            step_fn = jax.jit(jax_step)
            # per-step arrays (NumPy's empty pages cost no memory until written: a long run stays small)
            t_losses, f_losses, p_err = np.empty(steps), np.empty(steps), np.empty(steps)
            loss_err = np.empty(steps)  # per step: the loss error in multiples of the bound
            first_param_of: dict[int, tuple] = {}  # segment → (step, parameter, notes) where it first parts
            # float32 segments beyond the bound, kept with the state they began from, for float64 replays
            # after the run; past `allowed` + 1 of them the run fails whatever the replays say
            pending: list[tuple] = []
            allowed = curves.excused_allowed(len(curves.segment_slices(steps, seg)))
            can_replay = replay and dtype != "float64"
            unjudged: dict[str, float] = {}  # rounding-driven parameters: the largest gradient ratio seen
            for k in range(steps):
                xs, y = data[k % len(data)] if eager else (first_batch if k == 0 else batch(k % len(batches)))
                if k % seg == 0:
                    conditioning: dict[str, np.ndarray] = {}  # per parameter, see _perturbed_step
                if k and k % seg == 0:  # teacher forcing: restart the Flax side from torch's state
                    params, rest = _state_from_torch(t, f, pairing)
                    opt_state = _force_slots(opt_state, opt, pairing, params, names)
                    params, rest, opt_state = jax.device_put((params, rest, opt_state), jdev)
                if k % seg == 0 and can_replay and len(pending) <= allowed:
                    start = {"model": copy.deepcopy(t), "optimizer": copy.deepcopy(opt.state_dict()),
                             "masks": copy.deepcopy(masks.rng.bit_generator.state), "rng": torch.get_rng_state()}
                masks.masks = {}
                t_in = [torch.as_tensor(x, device=tdev) for x in xs]
                opt.zero_grad(set_to_none=True)
                with core._framework("torch", [x.shape for x in xs]), \
                        trace.torch_tracer(tl.values(), None, masks.torch_inject(pairing)):
                    out = t(*t_in, **t_kw)
                    lv = t_loss(out, torch.as_tensor(y, device=tdev))
                    lv.backward()
                    perturbed = _perturbed_step(opt, names, dtype, k)
                    opt.step()
                mask_arrays = core._mask_args(masks.masks)
                f_in = [jax.device_put(a, jdev) for a in core.flax_inputs(xs, layout)[0]]
                with core._framework("Flax", [x.shape for x in xs]):
                    params, rest, opt_state, fv = step_fn(params, rest, opt_state, f_in, jax.device_put(y, jdev),
                                                          mask_arrays)
                a, b = float(lv.detach().cpu()), float(fv)
                t_losses[k], f_losses[k] = a, b
                loss_err[k] = _over_bound(a, b, tol)
                f_params = pairing.flax_to_torch(jax.tree.map(np.asarray, nnx.to_pure_dict(params)),
                                                 params_only=True)
                noise = _rounding_driven(names, dtype)
                for n, g in noise.items():
                    unjudged[n] = max(unjudged.get(n, 0.0), g)
                worst, worst_name = 0.0, None
                for n, p in names.items():
                    if n in noise:
                        continue
                    ref = p.detach().cpu().numpy().astype(np.float64)
                    got = f_params[n].astype(np.float64)
                    # what rounding-level changes of the gradients do to torch's own steps, summed over the
                    # steps since the Flax side last started from torch's state (0 without a gradient)
                    if n in perturbed:
                        conditioning[n] = conditioning.get(n, 0.0) + np.abs(perturbed[n] - ref)
                    # equal non-finite values agree (curves.same_nonfinite); nothing to warn about
                    with np.errstate(invalid="ignore", over="ignore"):
                        err = np.where(curves.same_nonfinite(got, ref), 0.0,
                                       np.abs(got - ref) / (tol.atol + tol.rtol * np.abs(ref) + conditioning.get(n, 0.0)))
                    e = float(np.max(err, initial=0.0)) if np.all(np.isfinite(err)) else np.inf
                    if e > worst:
                        worst, worst_name = e, n
                p_err[k] = worst
                if worst > 1 and k // seg not in first_param_of:
                    first_param_of[k // seg] = (k + 1, worst_name, _zero_gradient_note(names, worst_name))
                if can_replay and ((k + 1) % seg == 0 or k + 1 == steps) and len(pending) <= allowed:
                    s0 = k - k % seg
                    exceeded = max(float(loss_err[s0:k + 1].max()), float(p_err[s0:k + 1].max()))
                    if exceeded > 1:
                        pending.append((start, s0, k + 1, exceeded))
                if on_step is not None:
                    on_step(k + 1)
    replays: list[SegmentReplay] = []
    for start, s0, end, exceeded in pending:  # in order, until one is not excused (that decides the run)
        replays.append(_replay_segment(
            start, [batches[j % len(batches)] for j in range(s0, end)], s0 // seg, s0, exceeded,
            excusable=sum(r.excused for r in replays) < allowed, args=dict(
                flax_model=flax_model, torch_optimizer_factory=torch_optimizer_factory, optax_tx=optax_tx,
                loss=loss, device=device, mode=mode, weights=weights if isinstance(weights, dict) else "torch->flax",
                layout=layout, train=train, seed=seed, torch_kwargs=torch_kwargs, flax_kwargs=flax_kwargs)))
        if not replays[-1].excused:
            break
    excused = {r.segment for r in replays if r.excused}
    judged = np.array([k // seg not in excused for k in range(steps)], bool)
    bad_loss = np.flatnonzero(judged & (loss_err > 1))
    first_loss = int(bad_loss[0]) + 1 if bad_loss.size else None
    first_param_step = first_param = None
    for segment in sorted(set(first_param_of) - excused)[:1]:
        first_param_step, first_param, zero_note = first_param_of[segment]
        notes += zero_note
    if unjudged:
        shown = ", ".join(f"`{n}` ({g:.1g})" for n, g in list(unjudged.items())[:4])
        notes.append(f"{len(unjudged)} parameter(s) with a gradient zero in exact arithmetic (at most "
                     f"{ROUNDING_GRADIENT:g} unit roundoffs of the largest gradient; ratio shown) were not compared "
                     f"elementwise at those steps: {shown}{' …' if len(unjudged) > 4 else ''}. Their steps are "
                     f"rounding noise, which an optimiser that normalises (Adam: m/(√v + eps)) scales up to about "
                     f"the learning rate, differently in each framework (docs/traps.md, trap 20); in exact "
                     f"arithmetic they do not change the loss, which is still compared at every step")
    if steps > seg:
        notes.append(f"the Flax side restarted from torch's weights and optimiser state every {seg} steps "
                     f"(teacher forcing, parity/curves.py)")
    both = curves.same_nonfinite(t_losses, f_losses)
    if both.any():
        k = int(np.argmax(both))
        notes.append(f"both losses are {t_losses[k]:g} at step {k + 1} ({int(both.sum())} non-finite step(s) in "
                     f"all): the same non-finite value in both frameworks counts as agreement (parity/curves.py, "
                     f"same_nonfinite), but such a run shows little; a smaller learning rate shows more")
    return TrainingReport(type(torch_model).__name__, type(flax_model).__name__, dtype, device, steps, tol,
                          t_losses, f_losses, p_err, first_loss,
                          first_param_step, first_param, seg if steps > seg else None,
                          [*pairing.notes, *notes], time.perf_counter() - t0, replays)


def _over_bound(a: float, b: float, tol: Tolerance) -> float:
    """|b − a| in multiples of the curve bound at a; 0 for the same non-finite value, inf for others."""
    if curves.same_nonfinite(a, b):
        return 0.0
    gap = abs(b - a)
    return gap / (tol.atol + tol.rtol * abs(a)) if np.isfinite(gap) else np.inf


def _replay_segment(start: dict, seg_batches: list, segment: int, first: int, worst32: float, *,
                    excusable: bool, args: dict) -> SegmentReplay:
    """Replay one float32 segment in float64 from the state it started from (the same batches, the same
    dropout masks and torch's random state, restored afterwards)."""
    state = torch.get_rng_state()
    torch.set_rng_state(start["rng"])
    try:
        r = compare_training(start["model"], batches=seg_batches, steps=len(seg_batches), dtype="float64",
                             replay=False, _start=start, **args)
    finally:
        torch.set_rng_state(state)
    worst64 = max(float(np.max(r.param_errors, initial=0.0)),
                  max((_over_bound(a, b, r.tolerance) for a, b in zip(r.torch_losses, r.flax_losses)), default=0.0))
    agrees = r.passed
    return SegmentReplay(segment, first + 1, first + len(seg_batches), worst32, worst64, agrees, agrees and excusable,
                         r.summary())


# A parameter is rounding-driven when torch's gradient of it is at most this many unit roundoffs of the
# largest gradient: zero in exact arithmetic (a key bias before a softmax, a bias before a BatchNorm).
# Measured over 40 AdamW steps of the three examples in examples/: attention's key bias at 0.1 u in
# float32 and 0.03 u in float64; every other gradient at least 1e-2 of the largest. 64 is the curve
# bound's N (parity/tolerances.py, training_curve).
ROUNDING_GRADIENT = 64.0


def _rounding_driven(names: dict, dtype: str) -> dict[str, float]:
    """{parameter: its largest |gradient| ÷ the largest of all} for those at rounding level, this step."""
    grads = {n: float(p.grad.detach().abs().max()) for n, p in names.items() if p.grad is not None and p.grad.numel()}
    top = max(grads.values(), default=0.0)
    if top == 0 or not np.isfinite(top):
        return {}
    u = float(np.finfo(np.dtype(dtype)).eps) / 2
    return {n: g / top for n, g in grads.items() if g <= ROUNDING_GRADIENT * u * top}


def _perturbed_step(opt, names: dict, dtype: str, step: int) -> dict[str, np.ndarray]:
    """torch's parameters after this step taken from gradients changed at rounding level (each element
    by ±ROUNDING_GRADIENT unit roundoffs of its tensor's largest |gradient|, signs drawn from `step`);
    parameters, gradients and optimiser state are then put back for the real step.

    The difference between these parameters and the real step's is how much the optimiser itself
    amplifies rounding in the gradient, element by element, and it is added to each element's bound.
    For SGD it is the learning rate times that change, far below the bound. Adam divides by √v + eps:
    where |gradient| is near eps its step moves by up to lr/(4·eps) per unit of gradient change
    (2.5e4 at lr 1e-3, eps 1e-8), so a gradient that is the cancelling sum of larger terms (a fully
    connected weight after ReLUs, say) moves by far more than N·u·(1 + |w|) in either framework,
    float64 included (measured: 11.5× the float64 bound at step 1 on the small CNN of examples/
    small_cnn.py with Adam), and where |gradient| is itself at rounding level its step's sign is
    rounding's (docs/traps.md, trap 20)."""
    before = {n: p.detach().clone() for n, p in names.items() if p.grad is not None}
    if not before:
        return {}
    grads = {n: names[n].grad.detach().clone() for n in before}
    state = copy.deepcopy(opt.state_dict())
    gen = torch.Generator().manual_seed(step)
    u = float(np.finfo(np.dtype(dtype)).eps) / 2
    with torch.no_grad():
        for n, g in grads.items():
            sign = torch.randint(0, 2, g.shape, generator=gen).to(g) * 2 - 1
            names[n].grad.add_(sign * (ROUNDING_GRADIENT * u) * g.abs().max())
    opt.step()
    out = {n: names[n].detach().cpu().numpy().astype(np.float64) for n in before}
    with torch.no_grad():
        for n, p in before.items():
            names[n].copy_(p)
            names[n].grad.copy_(grads[n])
    opt.load_state_dict(state)
    return out


def _zero_gradient_note(names: dict, name: str) -> list[str]:
    """A note when the parameter that parted has a gradient at rounding level (a bias before a
    softmax or a BatchNorm, zero in exact arithmetic): Adam divides by √v + eps and scales such
    noise up to steps of about the learning rate, differently in each framework."""
    grads = {n: p.grad.detach().abs().max().item() for n, p in names.items() if p.grad is not None}
    top = max(grads.values(), default=0.0)
    g = grads.get(name)
    if g is None or top == 0 or g > 1e-6 * top:
        return []
    return [f"torch's gradient of `{name}` at that step is at most {g:.2g} ({g / top:.1g} of the largest): "
            f"zero in exact arithmetic, so what parts is rounding noise; an optimiser that normalises steps "
            f"(Adam: m/(√v + eps)) scales it up to about the learning rate (docs/traps.md, trap 20). Check "
            f"with SGD or in float64"]


def _state_from_torch(t, f, pairing):
    """The Flax (params, rest) holding torch's current weights and statistics (copied: a NumPy view of
    a torch tensor that JAX took without copying would change with torch's next in-place update;
    docs/traps.md, trap 27)."""
    sd = {k: v.detach().cpu().numpy().copy() for k, v in t.state_dict().items()}
    pairing.load_flax(f, sd)
    _, params, rest = nnx.split(f, nnx.Param, ...)
    return params, rest
