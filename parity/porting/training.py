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

import contextlib
import copy
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
from flax import nnx

from parity import curves, precision
from parity.porting import trace
from parity.porting.conversion import check_flatten, pair_and_convert
from parity.porting.core import SEED
from parity.porting.inputs import as_numpy_inputs, check_choice, flax_inputs, weights_arg
from parity.porting.layouts import is_nhwc
from parity.porting.masks import mask_args, mask_store
from parity.porting.model_errors import first_line, framework_errors
from parity.porting.pairing import PortingError
from parity.porting.prepare import prepare
from parity.porting.rounding import ROUNDING_GRADIENT, perturbed_step, rounding_driven, zero_gradient_note
from parity.porting.slot_forcing import force_slots, state_from_torch
from parity.porting.training_report import SegmentReplay, TrainingReport
from parity.tolerances import Tolerance, training_curve

__all__ = ["LOSSES", "ROUNDING_GRADIENT", "SegmentReplay", "TrainingReport", "compare_training"]

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


def _check_arguments(batches, steps, torch_optimizer_factory, optax_tx):
    """The batches as a Sequence and the step count, after checking what compare_training was given."""
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
    return batches, steps


def _check_settings(torch_model, dtype: str, mode: str, weights) -> tuple:
    """(the weights mapping or None, the direction), after checking dtype, mode, weights and that the
    torch model has something to train."""
    for name, value, choices in (("dtype", dtype, precision.DTYPES), ("mode", mode, precision.MODES)):
        check_choice(name, value, choices)
    if callable(weights) and not isinstance(weights, dict):
        raise PortingError("compare_training takes weights='torch->flax', 'flax->torch' or a {torch_name: "
                           "flax_path} mapping")
    mapping, _, direction = weights_arg(weights, None)
    if isinstance(torch_model, torch.nn.Module) and next(torch_model.parameters(), None) is None:
        raise PortingError(f"the torch model ({type(torch_model).__name__}) has no parameters: there is nothing "
                           f"to train")
    return mapping, direction


def compare_training(torch_model, flax_model, batches, torch_optimizer_factory, optax_tx, steps: int | None = None,
                     *, loss="mse", dtype: str = "float32", device: str = "cpu", mode: str = "strict",
                     weights="torch->flax", layout: str = "nhwc", train: bool = True, seed: int = SEED,
                     torch_kwargs: dict | None = None, flax_kwargs: dict | None = None,
                     on_step=None, replay: bool = True, float64_context=None,
                     _start: dict | None = None) -> TrainingReport:
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
    agrees (module docstring); replay=False judges float32 by its bound alone. `float64_context()`, if
    given, is a context manager entered around each replay (parity/port/widen.py widens a model's own
    float32 casts there)."""
    t0 = time.perf_counter()
    batches, steps = _check_arguments(batches, steps, torch_optimizer_factory, optax_tx)
    t_loss, j_loss = _losses(loss)
    mapping, direction = _check_settings(torch_model, dtype, mode, weights)

    def batch(i):
        b = batches[i]
        if not (isinstance(b, (tuple, list)) and len(b) == 2):
            raise PortingError(f"batch {i}: expected (x, y), got {type(b).__name__}")
        return as_numpy_inputs(b[0], dtype), as_numpy_inputs(b[1], dtype)[0]
    eager = isinstance(batches, (list, tuple))
    data = [batch(i) for i in range(len(batches))] if eager else None
    first_batch = data[0] if eager else batch(0)
    notes: list[str] = []
    tol = training_curve(dtype)
    seg = curves.SEGMENT_STEPS

    with precision.policy(mode):
        p = prepare(torch_model, flax_model, first_batch[0], dtype=dtype, device=device, mode=mode, layout=layout,
                    train=train, torch_kwargs=torch_kwargs, flax_kwargs=flax_kwargs, seed=seed, notes=notes)
        t, f, masks = p.torch_model, p.flax_model, p.masks
        jdev = precision.jax_device(device)
        with p.patched():
            pairing = pair_and_convert(p, mapping, None, direction, notes)
            if any(q.flatten_candidate for q in pairing.pairs):
                f_calls, _, _, _ = p.runner.run(pairing)
                check_flatten(p, pairing, f_calls, direction, None)
            names = dict(t.named_parameters())
            opt, graphdef, params, rest, opt_state = _optimisers(p, pairing, names, torch_optimizer_factory, optax_tx,
                                                                 _start, jdev)
            step_fn = _flax_step(p, pairing, graphdef, dict(flax_kwargs or {}), optax_tx, j_loss, train)
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
                    conditioning: dict[str, np.ndarray] = {}  # per parameter, see rounding.perturbed_step
                if k and k % seg == 0:  # teacher forcing: restart the Flax side from torch's state
                    params, rest = state_from_torch(t, f, pairing)
                    opt_state = force_slots(opt_state, opt, pairing, params, names)
                    params, rest, opt_state = jax.device_put((params, rest, opt_state), jdev)
                if k % seg == 0 and can_replay and len(pending) <= allowed:
                    start = {"model": copy.deepcopy(t), "optimizer": copy.deepcopy(opt.state_dict()),
                             "masks": copy.deepcopy(masks.rng.bit_generator.state), "rng": torch.get_rng_state()}
                lv, perturbed = _torch_step(p, pairing, opt, names, t_loss, xs, y, dtype, k)
                f_in = [jax.device_put(a, jdev) for a in flax_inputs(xs, layout)[0]]
                with framework_errors("Flax", [x.shape for x in xs]):
                    params, rest, opt_state, fv = step_fn(params, rest, opt_state, f_in, jax.device_put(y, jdev),
                                                          mask_args(masks.masks))
                a, b = float(lv.detach().cpu()), float(fv)
                t_losses[k], f_losses[k] = a, b
                loss_err[k] = _over_bound(a, b, tol)
                f_params = pairing.flax_to_torch(jax.tree.map(np.asarray, nnx.to_pure_dict(params)),
                                                 params_only=True)
                noise = rounding_driven(names, dtype)
                for n, g in noise.items():
                    unjudged[n] = max(unjudged.get(n, 0.0), g)
                worst, worst_name = _worst_parameter(names, f_params, noise, perturbed, conditioning, tol)
                p_err[k] = worst
                if worst > 1 and k // seg not in first_param_of:
                    first_param_of[k // seg] = (k + 1, worst_name, zero_gradient_note(names, worst_name))
                if can_replay and ((k + 1) % seg == 0 or k + 1 == steps) and len(pending) <= allowed:
                    s0 = k - k % seg
                    exceeded = max(float(loss_err[s0:k + 1].max()), float(p_err[s0:k + 1].max()))
                    if exceeded > 1:
                        pending.append((start, s0, k + 1, exceeded))
                if on_step is not None:
                    on_step(k + 1)
    replays = _replays(pending, batches, seg, allowed, dict(
        flax_model=flax_model, torch_optimizer_factory=torch_optimizer_factory, optax_tx=optax_tx,
        loss=loss, device=device, mode=mode, weights=weights if isinstance(weights, dict) else "torch->flax",
        layout=layout, train=train, seed=seed, torch_kwargs=torch_kwargs, flax_kwargs=flax_kwargs),
        float64_context or contextlib.nullcontext)
    first_loss, first_param_step, first_param, zero_note = _first_parting(replays, loss_err, first_param_of, seg)
    notes += zero_note
    notes += _closing_notes(unjudged, steps, seg, t_losses, f_losses)
    return TrainingReport(type(torch_model).__name__, type(flax_model).__name__, dtype, device, steps, tol,
                          t_losses, f_losses, p_err, first_loss,
                          first_param_step, first_param, seg if steps > seg else None,
                          [*pairing.notes, *notes], time.perf_counter() - t0, replays)


def _optimisers(p, pairing, names: dict, torch_optimizer_factory, optax_tx, start: dict | None, jdev):
    """torch's optimiser and the Flax side's starting state: (optimiser, graphdef, params, rest, optax
    state), the state committed to `jdev`; a replay (`start`) begins from torch's optimiser state
    and the dropout masks' generator where its segment began."""
    try:
        opt = torch_optimizer_factory(p.torch_model.parameters())
    except Exception as e:  # noqa: BLE001 - the caller's factory refusing its settings is bad input
        raise PortingError(f"torch_optimizer_factory failed: {first_line(e)}") from None
    graphdef, params, rest = nnx.split(p.flax_model, nnx.Param, ...)
    opt_state = optax_tx.init(params)
    if start is not None:
        opt.load_state_dict(start["optimizer"])  # torch casts the slots to the parameters' dtype
        p.masks.rng.bit_generator.state = start["masks"]
        if start["optimizer"]["state"]:
            opt_state = force_slots(opt_state, opt, pairing, params, names)
    # all of the state committed to the device, as the step's outputs will be: otherwise the
    # second step (uncommitted → committed inputs) compiles the step again
    params, rest, opt_state = jax.device_put((params, rest, opt_state), jdev)
    return opt, graphdef, params, rest, opt_state


def _torch_step(p, pairing, opt, names: dict, t_loss, xs, y, dtype: str, k: int):
    """Step k of torch on (xs, y), the dropout masks drawn afresh: (the loss, the parameters that a
    rounding-level change of the gradients would have given, rounding.perturbed_step)."""
    p.masks.masks = {}
    dev, t = p.torch_device, p.torch_model
    t_in = [torch.as_tensor(x, device=dev) for x in xs]
    opt.zero_grad(set_to_none=True)
    with framework_errors("torch", [x.shape for x in xs]), \
            trace.torch_tracer(p.torch_leaves.values(), None, p.masks.torch_inject(pairing)):
        out = t(*t_in, **p.torch_kwargs)
        lv = t_loss(out, torch.as_tensor(y, device=dev))
        lv.backward()
        perturbed = perturbed_step(opt, names, dtype, k)
        opt.step()
    return lv, perturbed


def _flax_step(p, pairing, graphdef, f_kw: dict, optax_tx, j_loss, train: bool):
    """One jitted Flax training step: (params, rest, opt_state, inputs, targets, mask arrays) → (params,
    rest, opt_state, loss), the paired Dropouts given torch's masks."""
    layout = p.layout

    def jax_step(params, rest, opt_state, xs, y, mask_arrays):
        handler = trace.flax_recorder(None, mask_store(mask_arrays, layout).flax_inject(pairing, train))

        def lossf(m):
            with trace.bind(m, p.flax_leaves, handler):
                out = m(*xs, **f_kw)
            channels_last = 3 <= out.ndim <= 5 and is_nhwc(out.shape, y.shape, layout)
            out_t = jnp.moveaxis(out, -1, 1) if channels_last else out
            return j_loss(out_t, y)
        m = nnx.merge(graphdef, params, rest)
        # nnx's transform, so that the pass may update BatchNorm statistics; parameters only
        value, grads = nnx.value_and_grad(lossf, argnums=nnx.DiffState(0, nnx.Param))(m)
        updates, new_opt = optax_tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), nnx.split(m, nnx.Param, ...)[2], new_opt, value
    return jax.jit(jax_step)


def _worst_parameter(names: dict, f_params: dict, noise: dict, perturbed: dict, conditioning: dict,
                     tol: Tolerance) -> tuple[float, str | None]:
    """The largest parameter error after a step, in multiples of each element's bound, and whose it
    is; rounding-driven parameters (`noise`) skipped. `conditioning` accumulates, per parameter, what
    rounding-level gradient changes do to torch's own steps since the Flax side last started from
    torch's state (`perturbed`: this step's parameters from such changed gradients)."""
    worst, worst_name = 0.0, None
    for n, p in names.items():
        if n in noise or (not p.requires_grad and n not in f_params):
            continue  # frozen in torch (requires_grad=False) and held by the port as no nnx.Param
        ref = p.detach().cpu().numpy().astype(np.float64)
        got = f_params[n].astype(np.float64)
        if n in perturbed:  # 0 for a parameter without a gradient
            conditioning[n] = conditioning.get(n, 0.0) + np.abs(perturbed[n] - ref)
        # equal non-finite values agree (curves.same_nonfinite); nothing to warn about
        with np.errstate(invalid="ignore", over="ignore"):
            err = np.where(curves.same_nonfinite(got, ref), 0.0,
                           np.abs(got - ref) / (tol.atol + tol.rtol * np.abs(ref) + conditioning.get(n, 0.0)))
        e = float(np.max(err, initial=0.0)) if np.all(np.isfinite(err)) else np.inf
        if e > worst:
            worst, worst_name = e, n
    return worst, worst_name


def _first_parting(replays: list, loss_err, first_param_of: dict, seg: int):
    """Outside the segments excused as rounding: the first step whose loss exceeds the bound, and the
    first (step, parameter) whose parameters do, with its note on a rounding-level gradient; None
    where nothing parts."""
    excused = {r.segment for r in replays if r.excused}
    judged = np.array([k // seg not in excused for k in range(len(loss_err))], bool)
    bad_loss = np.flatnonzero(judged & (loss_err > 1))
    first_loss = int(bad_loss[0]) + 1 if bad_loss.size else None
    first_param_step = first_param = None
    zero_note: list[str] = []
    for segment in sorted(set(first_param_of) - excused)[:1]:
        first_param_step, first_param, zero_note = first_param_of[segment]
    return first_loss, first_param_step, first_param, zero_note


def _closing_notes(unjudged: dict, steps: int, seg: int, t_losses, f_losses) -> list[str]:
    """Notes on the run as a whole: rounding-driven parameters left out, teacher forcing, non-finite losses."""
    notes = []
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
    return notes


def _over_bound(a: float, b: float, tol: Tolerance) -> float:
    """|b − a| in multiples of the curve bound at a; 0 for the same non-finite value, inf for others."""
    if curves.same_nonfinite(a, b):
        return 0.0
    gap = abs(b - a)
    return gap / (tol.atol + tol.rtol * abs(a)) if np.isfinite(gap) else np.inf


def _replays(pending: list, batches, seg: int, allowed: int, args: dict, context) -> list[SegmentReplay]:
    """The pending float32 segments replayed in float64, in order, until one is not excused (that
    decides the run)."""
    replays: list[SegmentReplay] = []
    for start, s0, end, exceeded in pending:
        replays.append(_replay_segment(
            start, [batches[j % len(batches)] for j in range(s0, end)], s0 // seg, s0, exceeded,
            excusable=sum(r.excused for r in replays) < allowed, args=args, context=context))
        if not replays[-1].excused:
            break
    return replays


def _replay_segment(start: dict, seg_batches: list, segment: int, first: int, worst32: float, *,
                    excusable: bool, args: dict, context) -> SegmentReplay:
    """Replay one float32 segment in float64 from the state it started from (the same batches, the same
    dropout masks and torch's random state, restored afterwards)."""
    state = torch.get_rng_state()
    torch.set_rng_state(start["rng"])
    try:
        with context():
            r = compare_training(start["model"], batches=seg_batches, steps=len(seg_batches), dtype="float64",
                                 replay=False, _start=start, **args)
    finally:
        torch.set_rng_state(state)
    worst64 = max(float(np.max(r.param_errors, initial=0.0)),
                  max((_over_bound(a, b, r.tolerance) for a, b in zip(r.torch_losses, r.flax_losses)), default=0.0))
    agrees = r.passed
    return SegmentReplay(segment, first + 1, first + len(seg_batches), worst32, worst64, agrees, agrees and excusable,
                         r.summary())
