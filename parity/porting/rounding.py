"""Rounding in `compare_training`'s per-step parameter check: which parameters' gradients are at
rounding level (zero in exact arithmetic), how much torch's own optimiser amplifies a rounding-level
change of the gradients (added to each element's bound), and the note for a parameter that parted
on rounding noise (docs/traps.md, trap 20)."""
from __future__ import annotations

import copy

import numpy as np
import torch

# A parameter is rounding-driven when torch's gradient of it is at most this many unit roundoffs of the
# largest gradient: zero in exact arithmetic (a key bias before a softmax, a bias before a BatchNorm).
# Measured over 40 AdamW steps of the three examples in examples/: attention's key bias at 0.1 u in
# float32 and 0.03 u in float64; every other gradient at least 1e-2 of the largest. 64 is the curve
# bound's N (parity/tolerances.py, training_curve).
ROUNDING_GRADIENT = 64.0


def rounding_driven(names: dict, dtype: str) -> dict[str, float]:
    """{parameter: its largest |gradient| ÷ the largest of all} for those at rounding level, this step."""
    grads = {n: float(p.grad.detach().abs().max()) for n, p in names.items() if p.grad is not None and p.grad.numel()}
    top = max(grads.values(), default=0.0)
    if top == 0 or not np.isfinite(top):
        return {}
    u = float(np.finfo(np.dtype(dtype)).eps) / 2
    return {n: g / top for n, g in grads.items() if g <= ROUNDING_GRADIENT * u * top}


def perturbed_step(opt, names: dict, dtype: str, step: int) -> dict[str, np.ndarray]:
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


def zero_gradient_note(names: dict, name: str) -> list[str]:
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
