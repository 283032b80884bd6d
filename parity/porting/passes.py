"""Both models run on the converted weights: torch's recorded pass, its outputs and gradients for one
fixed random cotangent, and the Flax side's one compiled pass giving all of that for the same
cotangents; run again once if the Flax data overturn a Flatten→Linear permutation."""
from __future__ import annotations

from dataclasses import dataclass

from parity.porting.conversion import check_flatten
from parity.porting.layouts import channels_last_cotangents
from parity.porting.pairing import Pairing
from parity.porting.prepare import Prepared
from parity.porting.torch_passes import restore, snapshot, torch_gradients, torch_pass, torch_stats


@dataclass
class Passes:
    """What one round of passes recorded (NumPy unless said; torch's layout on the torch side)."""

    torch_calls: list  # trace.Call per leaf call, in execution order
    torch_stats: dict  # {torch BatchNorm name: running statistics after the pass} (training mode)
    torch_outputs: list
    torch_grads: dict  # {"input i" or parameter name: gradient for the cotangents}
    cotangents: list  # per output: N(0, 1/n), None for a non-floating output
    fits: bool  # the cotangents fit the Flax outputs' shapes (else no Flax gradients)
    flax_calls: list
    flax_outputs: list  # JAX arrays, in the Flax layout
    flax_state: object  # the Flax state after the pass (BatchNorm statistics)
    flax_grads: tuple | None  # (parameter gradients, input gradients) or None


def run_passes(p: Prepared, pairing: Pairing, direction: str, fn, seed: int, train: bool) -> Passes:
    """Both sides' passes on the converted weights (the torch copy restored after each of its own)."""
    t = p.torch_model
    snap = snapshot(t)
    for _ in range(2):  # a second round only if the data overturn a Flatten→Linear permutation
        # torch: a recorded pass (every leaf layer's input and output), then outputs and gradients
        t_calls, _ = torch_pass(t, p.torch_leaves, p.inputs, p.torch_kwargs, p.masks.torch_inject(pairing))
        t_stats = torch_stats(pairing) if train else {}
        restore(t, snap)
        np_t, t_grads, cts = torch_gradients(t, p.torch_leaves, p.inputs, p.torch_kwargs, p.masks, pairing, seed)
        restore(t, snap)
        # Flax: one compiled pass giving all of that at once, for the same cotangents
        shapes = p.runner.out_shapes  # from the pass that paired the layers: weights do not change them
        f_cts = channels_last_cotangents(cts, shapes, p.layout)
        fits = bool(t_grads) and len(shapes) == len(f_cts) and all(
            c is None or tuple(c.shape) == sh for c, sh in zip(f_cts, shapes))
        f_calls, f_outs, f_rest, grads = p.runner.run(pairing, p.masks.masks, f_cts if fits else None)
        if not check_flatten(p, pairing, f_calls, direction, fn):
            break
        snap = snapshot(t)
    return Passes(t_calls, t_stats, np_t, t_grads, cts, fits, f_calls, f_outs, f_rest, grads)
