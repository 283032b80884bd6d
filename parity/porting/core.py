"""`compare`: does a Flax NNX port compute what the torch model computes, and if not, where does it
first part? (The module docstring of parity/porting/__init__.py explains the rules.)

The steps live beside this file, each module named for what it holds: parity/porting/inputs.py
(checking what was given), prepare.py (the two copies ready to run: `Prepared`), conversion.py
(pairing and weight conversion), passes.py (both models' passes), torch_passes.py and
flax_runner.py (each side's), layouts.py (reading Flax activations in torch's layout), masks.py
(shared dropout masks), rows.py (the measured rows and arrays), divergence.py (the first
divergence). This module runs them in order and assembles the Report."""
from __future__ import annotations

import time

from parity import precision
from parity.porting import differences, kinds
from parity.porting.conversion import pair_and_convert as _pair_and_convert
from parity.porting.divergence import first_divergence
from parity.porting.flax_runner import FlaxRunner
from parity.porting.inputs import (DIRECTIONS, LAYOUTS, as_numpy_inputs, check_choice, flax_inputs, verdict_rule,
                                   weights_arg)
from parity.porting.layouts import is_nhwc, to_torch_layout
from parity.porting.masks import Masks
from parity.porting.pairing import Pair, Pairing, PortingError
from parity.porting.passes import Passes, run_passes
from parity.porting.prepare import Prepared, flax_copy, prepare, torch_copy
from parity.porting.report import Report
from parity.porting.rows import attach_gradients, build_rows, compare_outputs, state_stats
from parity.porting.torch_passes import float64_reference, torch_pass, unshared_randomness
from parity.tolerances import lookup

SEED = 20261123
EVAL_NOTE = ("eval mode (the default): torch .eval() and nnx .eval(), so Dropout is the identity and "
             "BatchNorm normalises with its running statistics: a deterministic function of the weights; "
             "pass train=True to compare training-mode passes")
TRAIN_NOTE = ("training mode: BatchNorm normalises with batch statistics and its running statistics are "
              "compared after the pass; each paired Dropout gets the same mask on both sides (drawn in "
              "NumPy; survivors scaled by each side's own 1/(1−p)), since the frameworks' own masks "
              "cannot agree (docs/traps.md, trap 18)")

__all__ = [
    "DIRECTIONS",
    "EVAL_NOTE",
    "LAYOUTS",
    "SEED",
    "TRAIN_NOTE",
    "FlaxRunner",
    "Masks",
    "Passes",
    "Prepared",
    "as_numpy_inputs",
    "compare",
    "flax_copy",
    "flax_inputs",
    "is_nhwc",
    "pair_and_convert",
    "prepare",
    "to_torch_layout",
    "torch_copy",
    "torch_pass",
]


def compare(torch_model, flax_model, inputs, *, dtype: str = "float32", device: str = "cpu",
            mode: str = "strict", weights="torch->flax", direction: str | None = None, layout: str = "nhwc",
            train: bool = False, seed: int = SEED, torch_kwargs: dict | None = None,
            flax_kwargs: dict | None = None, rule: str | None = None, accept=()) -> Report:
    """Compare a torch model with its Flax NNX port on `inputs` (NumPy, torch's layout); the rules
    are in parity.porting's docstring. `rule`: "scaled" (the float32 default: no worse than torch's
    own float32 against a float64 run of the torch model, parity/porting/verdict.py) or "fixed"
    (the rtol/atol of parity/tolerances.py; the float64 default). `accept`: names of known
    differences (parity/porting/differences.py) measured and listed but not failed. Returns a Report; raises
    PortingError (one line) when the models or inputs cannot be compared as given. The caller's
    models are not changed."""
    t0 = time.perf_counter()
    notes: list[str] = []
    mapping, fn, direction = weights_arg(weights, direction)
    check_choice("mode", mode, precision.MODES)
    rule = verdict_rule(rule, dtype)
    try:
        accepted_kinds = differences.check(accept)
    except ValueError as e:
        raise PortingError(str(e)) from None
    accepted: list[dict] = []
    with precision.policy(mode):
        p = prepare(torch_model, flax_model, inputs, dtype=dtype, device=device, mode=mode, layout=layout,
                    train=train, torch_kwargs=torch_kwargs, flax_kwargs=flax_kwargs, seed=seed, notes=notes)
        tol = lookup(dtype, device, mode)
        with p.patched():
            pairing = _pair_and_convert(p, mapping, fn, direction, notes)
            passes = run_passes(p, pairing, direction, fn, seed, train)
            stats = state_stats(passes.torch_stats, passes.flax_state, pairing, tol, accepted_kinds,
                                accepted) if train else {}
            random = unshared_randomness(p.torch_leaves, pairing) if rule == "scaled" and train else []
            if random:  # torch's float64 run would draw masks of its own: no reference for the scaled rule
                rule = "fixed"
                notes.append(f"judged by the fixed tolerance, not the scaled rule: torch {', '.join(random)} draws "
                             f"masks no Flax layer shares, so a float64 run of torch would compute something else")
            ref = float64_reference(p.torch_model, p.inputs, p.torch_kwargs, p.masks, pairing,
                                    passes.cotangents) if rule == "scaled" else None
            outputs, input_grads, param_grads, grad_notes = compare_outputs(passes, p, pairing, tol, ref)

    def notes_of(pair: Pair):
        fc = next((c for c in passes.flax_calls if c.leaf is pair.flax), None)
        return kinds.notes(pair.kind, pair.torch.module, pair.flax.module, train=train, dtype=dtype,
                           flax_in_shape=fc.in_shape if fc else None, layout=layout)

    rows = build_rows(passes.torch_calls, passes.flax_calls, pairing, tol, layout, notes_of,
                      ref.calls if ref else None)
    attach_gradients(rows, pairing, param_grads, stats)
    unpaired_dropout = [lf.label for lf in p.torch_leaves.values() if lf.kind == "dropout" and train
                        and pairing.of_torch(lf.name) is None]
    if unpaired_dropout:
        notes.append(f"torch Dropout {', '.join(unpaired_dropout)} has no Flax Dropout module to pair with: "
                     f"its training-mode masks cannot be shared (docs/traps.md, trap 18)")
    first = first_divergence(rows, outputs, input_grads, param_grads, [n for n, _ in pairing.loose])
    converted = f"layers paired {pairing.strategy}; weights converted {direction}" + (" by the given callable"
                                                                                     if fn else "")
    head = [TRAIN_NOTE if train else EVAL_NOTE, *p.input_rules, converted, *pairing.notes, *grad_notes, *notes]
    all_notes = list(dict.fromkeys(head + _measured_notes(rows, outputs, accepted, accepted_kinds)))
    return Report(type(torch_model).__name__, type(flax_model).__name__, dtype, device, mode, train, layout,
                  direction, tol, rows, outputs, input_grads, param_grads, first, pairing.to_dict(), all_notes,
                  time.perf_counter() - t0, rule, accepted)


def _measured_notes(rows, outputs, accepted: list[dict], accepted_kinds) -> list[str]:
    """The notes the measurements add: each paired layer's settings, what agreed with a remark, and
    the accepted known differences (measured, or covering nothing that was compared)."""
    out = []
    for r in rows:
        if r.call == 0 and r.notes:
            out.append(f"torch `{r.torch.name}` ⇄ Flax `{r.flax.name}`: " + "; ".join(r.notes))
        if r.out is not None and r.out.ok and r.out.problem:
            out.append(f"torch `{r.torch.name}` ⇄ Flax `{r.flax.name}` output: {r.out.problem}")
    out += [f"output {i}: {s.problem}" for i, s in enumerate(outputs) if s.ok and s.problem]
    for a in accepted:
        out.append(f"accepted {a['difference']} at torch `{a['torch']}` ⇄ Flax `{a['flax']}`: {a['array']} "
                   f"max abs {a['max_abs']:.3g}, max rel {a['max_rel']:.3g} ({a['doc']})")
    for d in accepted_kinds:
        if not any(a["difference"] == d.name for a in accepted):
            out.append(f"accepted {d.name}, but nothing it covers was compared ({d.what}; compared only in "
                       f"training mode)")
    return out


def pair_and_convert(t, f, tl, fl, np_in, t_kw, runner, mapping, fn, direction, layout, notes) -> Pairing:
    """Pair the layers from one pass of each model and convert the weights, in the positional form
    callers outside the package used; parity/porting/conversion.py's `pair_and_convert` takes a
    `Prepared` instead."""
    return _pair_and_convert(Prepared(t, f, tl, fl, np_in, t_kw, runner, layout), mapping, fn, direction, notes)
