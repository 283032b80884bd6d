"""Pairing the layers and converting the weights: one pass of each model to pair them, the weights
converted by the pairing (or by the caller's callable, whose result is checked), and each
Flatten→Linear row permutation decided from the recorded Flax data (docs/traps.md, trap 4)."""
from __future__ import annotations

import jax
import numpy as np
import torch
from flax import nnx

from parity.porting import kinds, trace
from parity.porting.layouts import is_nhwc
from parity.porting.model_errors import first_line
from parity.porting.pairing import Pairing, PortingError, _cast_like, build, flatten_evidence
from parity.porting.prepare import Prepared
from parity.porting.torch_passes import restore, snapshot, torch_pass


def pair_and_convert(prepared: Prepared, mapping, fn, direction: str, notes: list) -> Pairing:
    """Pair the layers from one pass of each model (torch's recorded, Flax's traced abstractly), then
    convert the weights; returns the pairing (`notes` is where the caller's notes go; the pairing
    carries its own). Sets the runner's `out_shapes` from the Flax pass."""
    p = prepared
    snap = snapshot(p.torch_model)
    d_t, _ = torch_pass(p.torch_model, p.torch_leaves, p.inputs, p.torch_kwargs)
    restore(p.torch_model, snap)
    try:
        d_f, outs, _, _ = p.runner.run(None, abstract=True)
    except PortingError as e:
        raise PortingError(str(e) + _shape_hint(d_t, p.runner.meta, p.layout)) from e.__cause__
    p.runner.out_shapes = [tuple(o.shape) for o in outs]
    pairing = build(p.torch_model, p.flax_model, p.torch_leaves, p.flax_leaves, d_t, d_f, mapping=mapping,
                    layout=p.layout, converter=fn is not None)
    convert(p.torch_model, p.flax_model, pairing, direction, fn)
    return pairing


def _shape_hint(t_calls, f_calls, layout: str) -> str:
    """Where the Flax model's layer outputs first take another shape than torch's (layers with
    parameters, in execution order), for the message of a Flax model that failed."""
    t_seq = [c for c in t_calls if kinds.is_param_kind(c.leaf.kind)]
    f_seq = [c for c in f_calls if kinds.is_param_kind(c.leaf.kind)]
    for tc, fc in zip(t_seq, f_seq):
        want = tc.out_shape
        if want is not None and len(want) == 4 and is_nhwc(fc.out_shape, want, layout):
            want = (want[0], want[2], want[3], want[1])
        if want != fc.out_shape:
            return (f"; the first layer whose output shape differs from torch's is Flax `{fc.leaf.label}` "
                    f"({fc.leaf.cls}, called at {fc.called_at}): {fc.out_shape}, where torch `{tc.leaf.label}` "
                    f"gives {tc.out_shape}" + (" (NHWC: " + str(want) + ")" if want != tc.out_shape else ""))
    return ""


def check_flatten(prepared: Prepared, pairing: Pairing, f_calls, direction: str, fn) -> bool:
    """Decide each Flatten→Linear row permutation from the recorded Flax data (the layout's default
    where the data cannot tell) and convert again if a decision changed. True if anything changed."""
    layout = prepared.layout
    changed = False
    for p in pairing.pairs:
        if p.kind != "linear" or not p.flatten_candidate:
            continue
        c = p.flatten_candidate[0]
        seen = flatten_evidence(p, f_calls, c)
        order = seen or ("hwc" if layout == "nhwc" else "chw")
        where = f"torch `{p.torch.label}` reads a flattened map of {c} channels; the Flax model flattens it " \
                f"in {'(H, W, C)' if order == 'hwc' else '(C, H, W)'} order"
        how = "(seen in the data)" if seen else f"(taken from layout={layout!r}; the data cannot tell)"
        pairing.notes.append(f"{where} {how}: rows " + ("permuted (docs/traps.md, trap 4)" if order == "hwc"
                                                          else "kept"))
        want = p.flatten_candidate if order == "hwc" else None
        if want != p.flatten:
            p.flatten, changed = want, True
    if changed:
        convert(prepared.torch_model, prepared.flax_model, pairing, direction, fn)
    return changed


def convert(t, f, pairing: Pairing, direction: str, fn) -> None:
    """The weights converted `direction` into the other copy, by the pairing or by the callable `fn`."""
    if direction == "torch->flax":
        sd = {k: v.detach().cpu().numpy().copy() for k, v in t.state_dict().items()}
        if fn is None:
            pairing.load_flax(f, sd)
            return
        pure = _call_user(fn, sd)
        state = nnx.state(f)
        ref = nnx.to_pure_dict(state)
        _check_pure(ref, pure, ())
        nnx.replace_by_pure_dict(state, _cast_like(ref, pure))
        nnx.update(f, state)
    else:
        pure = jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(f, nnx.Not(nnx.RngState))))
        if fn is None:
            pairing.load_torch(t, pure)
            return
        sd = _call_user(fn, pure)
        ref = t.state_dict()
        with torch.no_grad():
            for k, v in sd.items():
                if k not in ref:
                    raise PortingError(f"weights callable returned `{k}`, which the torch model does not hold")
                if tuple(ref[k].shape) != tuple(np.shape(v)):
                    raise PortingError(f"weights callable: `{k}` has shape {tuple(np.shape(v))}, the torch model "
                                       f"holds {tuple(ref[k].shape)}")
                ref[k].copy_(torch.as_tensor(np.array(v)).to(ref[k].dtype))
        missing = [k for k, _ in t.named_parameters() if k not in sd]
        if missing:
            raise PortingError(f"weights callable returned no `{missing[0]}` (and {len(missing) - 1} more)")


def _call_user(fn, arg):
    try:
        return fn(arg)
    except (Exception, SystemExit) as e:  # noqa: BLE001 - the user's conversion failing is their input's problem
        raise PortingError(f"the weights callable failed: {first_line(e)}") from e


def _check_pure(ref, pure, path) -> None:
    if not isinstance(pure, dict):
        raise PortingError("the weights callable must return a nested dict (nnx.to_pure_dict's form)")
    for k, v in pure.items():
        if not isinstance(ref, dict) or k not in ref:
            raise PortingError(f"weights callable returned `{trace.flax_name(path + (k,))}`, which the Flax model "
                               f"does not hold")
        if isinstance(v, dict):
            _check_pure(ref[k], v, path + (k,))
        elif tuple(np.shape(v)) != tuple(np.shape(ref[k])):
            raise PortingError(f"weights callable: `{trace.flax_name(path + (k,))}` has shape {tuple(np.shape(v))}, "
                               f"the Flax model holds {tuple(np.shape(ref[k]))}")
