"""Checking what `compare` and `compare_training` are given: the models, the choices (dtype, device,
mode, layout, weights, rule), the inputs as NumPy (and the Flax side's, in its layout), the models'
call signatures and the device; each refusal a PortingError of one line."""
from __future__ import annotations

import inspect

import numpy as np
import torch
from flax import nnx

from parity import precision
from parity.porting import verdict
from parity.porting.pairing import PortingError

LAYOUTS = ("nhwc", "nchw")
DIRECTIONS = ("torch->flax", "flax->torch")


def check_models(torch_model, flax_model) -> None:
    if isinstance(torch_model, nnx.Module) and isinstance(flax_model, torch.nn.Module):
        raise PortingError("the models are swapped: pass the torch model first, then the Flax model")
    if not isinstance(torch_model, torch.nn.Module):
        raise PortingError(f"torch_model must be a torch.nn.Module, got {type(torch_model).__name__}")
    if not isinstance(flax_model, nnx.Module):
        raise PortingError(f"flax_model must be a flax.nnx.Module, got {type(flax_model).__name__}")


def check_choice(name, value, choices) -> None:
    if value not in choices:
        raise PortingError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")


def as_numpy_inputs(inputs, dtype: str) -> tuple[np.ndarray, ...]:
    """The inputs as a tuple of NumPy arrays: floating ones in `dtype` (and finite), integer ones
    int64, booleans kept."""
    items = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    if not items:
        raise PortingError("no inputs given")
    out = []
    for i, x in enumerate(items):
        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().numpy().copy()
        try:
            a = np.asarray(x)
        except Exception as e:  # noqa: BLE001 - anything NumPy cannot take
            raise PortingError(f"input {i}: cannot be read as a NumPy array ({type(e).__name__}: {e})") from None
        if a.dtype.kind == "f":
            bad_nan, bad_inf = int(np.isnan(a).sum()), int(np.isinf(a).sum())
            if bad_nan or bad_inf:
                raise PortingError(f"input {i} {a.shape} holds {bad_nan} NaN and {bad_inf} infinite values: "
                                   f"NaN would compare equal to NaN, so agreement would prove nothing; give "
                                   f"finite inputs")
            a = a.astype(dtype)
        elif a.dtype.kind in "iu":
            a = a.astype(np.int64)
        elif a.dtype.kind != "b":
            raise PortingError(f"input {i}: dtype {a.dtype} is neither floating, integer nor bool")
        if a.size == 0:
            raise PortingError(f"input {i} has shape {a.shape}: empty")
        out.append(a)
    return tuple(out)


def flax_inputs(np_inputs, layout: str) -> tuple[list, list[str]]:
    """The Flax side's inputs and the rule applied to each: with layout 'nhwc', 4-D floating inputs go
    from torch's NCHW to NHWC (docs/traps.md, trap 3); everything else (and everything with layout
    'nchw': a Flax model taking torch's layout at its boundary) passes unchanged."""
    out, rules = [], []
    for i, a in enumerate(np_inputs):
        if layout == "nhwc" and a.ndim == 4 and a.dtype.kind == "f":
            out.append(a.transpose(0, 2, 3, 1))
            rules.append(f"input {i} {a.shape}: NCHW → NHWC for Flax")
        else:
            out.append(a)
            rules.append(f"input {i} {a.shape} {a.dtype}: as given to both")
    return out, rules


def _required(fn, n_given: int, given_kwargs) -> tuple[list[str], int | None]:
    """Required parameters of `fn` the call would leave out, and the most positional inputs it takes."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return [], None
    params = list(sig.parameters.values())
    pos = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    most = None if any(p.kind == p.VAR_POSITIONAL for p in params) else len(pos)
    missing = [p.name for p in pos[n_given:] if p.default is p.empty and p.name not in given_kwargs]
    missing += [p.name for p in params if p.kind == p.KEYWORD_ONLY and p.default is p.empty
                and p.name not in given_kwargs]
    return missing, most


def check_calls(torch_model, flax_model, n, torch_kwargs, flax_kwargs) -> None:
    """Each model can be called with `n` inputs and its keyword arguments (nothing required left out)."""
    for side, fn, kw, arg in (("torch", torch_model.forward, torch_kwargs, "torch_kwargs"),
                              ("Flax", flax_model.__call__, flax_kwargs, "flax_kwargs")):
        missing, most = _required(fn, n, kw)
        if "rngs" in missing and side == "Flax":
            raise PortingError("the Flax model's __call__ needs `rngs`: pass flax_kwargs={'rngs': nnx.Rngs(0)} "
                               "(eval mode draws nothing from it; training-mode Dropout masks are injected)")
        if missing:
            raise PortingError(f"the {side} model's {'forward' if side == 'torch' else '__call__'} needs "
                               f"{', '.join(missing)} besides the {n} input(s) given: pass them in {arg}")
        if most is not None and n > most:
            raise PortingError(f"the {side} model takes {most} input(s), {n} given")


def devices(torch_model, device: str, notes: list) -> tuple:
    """(torch device, JAX device) for `device`; a note when the torch model sits elsewhere."""
    try:
        tdev, jdev = precision.torch_device(device), precision.jax_device(device)
    except (RuntimeError, ValueError) as e:
        raise PortingError(f"device {device!r}: {e}") from None
    held = {t.device for t in list(torch_model.parameters()) + list(torch_model.buffers())}
    if any(d.type == "meta" for d in held):
        raise PortingError("the torch model holds tensors on the 'meta' device (no values): load its weights first")
    other = sorted(str(d) for d in held if d.type != tdev.type)
    if other:
        notes.append(f"the torch model is on {', '.join(other)}; a copy on {device} was compared, as asked")
    return tdev, jdev


def weights_arg(weights, direction):
    """`weights=` read: (a {torch name: Flax path} mapping or None, a conversion callable or None,
    the direction the weights are converted in)."""
    mapping = fn = None
    if isinstance(weights, str):
        check_choice("weights", weights, DIRECTIONS)
        direction = weights
    elif isinstance(weights, dict):
        mapping = weights
    elif callable(weights):
        fn = weights
    else:
        raise PortingError(f"weights must be 'torch->flax', 'flax->torch', a dict or a callable; got "
                           f"{type(weights).__name__}")
    direction = direction or "torch->flax"
    check_choice("direction", direction, DIRECTIONS)
    return mapping, fn, direction


def verdict_rule(rule: str | None, dtype: str) -> str:
    """The verdict rule: "scaled" by default in float32, "fixed" otherwise (parity/porting/verdict.py)."""
    if rule is None:
        return "scaled" if dtype == "float32" else "fixed"
    check_choice("rule", rule, verdict.RULES)
    if rule == "scaled" and dtype != "float32":
        raise PortingError(f"rule 'scaled' judges float32 against a float64 run of the torch model; dtype {dtype} "
                           f"is judged by the fixed tolerance (rule='fixed')")
    return rule
