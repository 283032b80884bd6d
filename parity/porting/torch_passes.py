"""The torch side's passes: a recorded forward pass (every leaf layer's input and output), outputs and
gradients for one fixed random cotangent, BatchNorm statistics, and the float64 reference run that
the scaled rule judges both float32 sides against."""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from parity.porting import trace
from parity.porting.masks import Masks
from parity.porting.model_errors import framework_errors
from parity.porting.pairing import Pairing, PortingError


def device_of(t) -> torch.device:
    """Where the torch model's tensors are (the CPU for a model without any)."""
    p = next(iter(list(t.parameters()) + list(t.buffers())), None)
    return p.device if p is not None else torch.device("cpu")


def snapshot(t) -> dict:
    return {k: v.detach().clone() for k, v in t.state_dict().items()}


def restore(t, snap) -> None:
    with torch.no_grad():
        for k, v in t.state_dict().items():
            v.copy_(snap[k])


def _flat_torch(out) -> list:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return [t for k in sorted(out) for t in _flat_torch(out[k])]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _flat_torch(o)]
    raise PortingError(f"the torch model returned a {type(out).__name__}; expected tensors (or tuples, "
                       f"lists, dicts of them)")


def torch_pass(t, tl, np_in, t_kw, inject=None):
    """One recorded forward pass of the torch model without gradients: (calls, outputs)."""
    calls = []
    try:
        with framework_errors("torch", [x.shape for x in np_in], calls), torch.no_grad(), \
                trace.torch_tracer(tl.values(), calls, inject):
            out = t(*[torch.as_tensor(x, device=device_of(t)) for x in np_in], **t_kw)
    finally:
        _check_ranks(calls)
    return calls, out


def _check_ranks(calls) -> None:
    """torch's Conv2d and BatchNorm2d also take 3-D (unbatched) input, where the NHWC rule would not
    follow: refuse it (before any error it leads to later on)."""
    for c in calls:
        if isinstance(c.leaf.module, (torch.nn.Conv2d, torch.nn.BatchNorm2d)) and c.in_shape and len(c.in_shape) != 4:
            raise PortingError(f"torch `{c.leaf.label}` ({c.leaf.cls}) received a {len(c.in_shape)}-D input "
                               f"{c.in_shape}: give batched 4-D (N, C, H, W) inputs (the Flax side's layout rule "
                               f"transposes 4-D inputs only)")


def torch_gradients(t, tl, np_in, t_kw, masks: Masks, pairing: Pairing, seed: int, cts=None):
    """torch's outputs, its gradients wrt every floating input and every parameter for one fixed
    random cotangent, and that cotangent: N(0, 1/n) for an output of n elements (drawn in NumPy),
    the scale a mean-reduced loss gives its gradient, so a parameter's gradient (a sum over batch and
    positions) keeps the size of one output's however large the batch, and the table's atol means
    the same for every model size."""
    dev = device_of(t)
    t_in = [torch.tensor(x, device=dev, requires_grad=x.dtype.kind == "f") for x in np_in]
    params = dict(t.named_parameters())
    for p in params.values():
        p.requires_grad_(True)
    with framework_errors("torch", [x.shape for x in np_in]), trace.torch_tracer(tl.values(), None,
                                                                                 masks.torch_inject(pairing)):
        t_outs = _flat_torch(t(*t_in, **t_kw))
    np_t = [o.detach().cpu().numpy().copy() for o in t_outs]
    if cts is None:
        rng = np.random.default_rng(seed)
        cts = [(rng.standard_normal(o.shape) / np.sqrt(max(o.size, 1))).astype(o.dtype) if o.dtype.kind == "f"
               else None for o in np_t]
    float_in = [i for i, x in enumerate(np_in) if x.dtype.kind == "f"]
    wrt = [t_in[i] for i in float_in] + list(params.values())
    scalar = sum((o * torch.as_tensor(c, device=o.device)).sum() for o, c in zip(t_outs, cts)
                 if c is not None and o.requires_grad)
    t_grads = {}
    if isinstance(scalar, torch.Tensor) and scalar.requires_grad and wrt:
        gs = torch.autograd.grad(scalar, wrt, allow_unused=True)
        names = [f"input {i}" for i in float_in] + list(params)
        t_grads = {n: (torch.zeros_like(w) if g is None else g).detach().cpu().numpy().copy()
                   for n, w, g in zip(names, wrt, gs)}
    return np_t, t_grads, cts


def torch_stats(pairing: Pairing) -> dict:
    """Each paired torch BatchNorm's running statistics (NumPy copies)."""
    out = {}
    for p in pairing.pairs:
        if p.kind == "batchnorm":
            sd = p.torch.module.state_dict()
            out[p.torch.name] = {k: sd[k].detach().cpu().numpy().copy() for k in ("running_mean", "running_var")
                                 if k in sd}
    return out


def unshared_randomness(tl: dict, pairing: Pairing) -> list[str]:
    """torch Dropout layers active in training mode whose masks no paired Flax layer shares."""
    return [lf.label for lf in tl.values() if lf.kind == "dropout" and lf.module.training
            and lf.module.p > 0 and pairing.of_torch(lf.name) is None]


@dataclass
class Reference:
    """The torch model run in float64 on the same weights, inputs and cotangents: every leaf call's
    input and output, the outputs, and the gradients (NumPy, float64)."""

    calls: dict
    outputs: list
    grads: dict


def float64_reference(t, np_in, t_kw, masks: Masks, pairing: Pairing, cts) -> Reference:
    """What the scaled rule measures both float32 sides against: a float64 copy of the torch model
    (its float32 weights, inputs and cotangents cast up exactly), the same dropout masks."""
    t64 = copy.deepcopy(t).double()
    tl64 = trace.torch_leaves(t64)
    x64 = [x.astype(np.float64) if x.dtype.kind == "f" else x for x in np_in]
    kw64 = {k: (v.double() if isinstance(v, torch.Tensor) and v.is_floating_point() else v) for k, v in t_kw.items()}
    snap = snapshot(t64)
    calls, _ = torch_pass(t64, tl64, x64, kw64, masks.torch_inject(pairing))
    restore(t64, snap)
    c64 = [None if c is None else c.astype(np.float64) for c in cts]
    outs, grads, _ = torch_gradients(t64, tl64, x64, kw64, masks, pairing, 0, cts=c64)
    return Reference({(c.leaf.name, c.index): (c.inp, c.out) for c in calls}, outs, grads)
