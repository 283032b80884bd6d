"""Training-mode dropout masks shared by the two sides (docs/traps.md, trap 18): drawn in NumPy on
torch's first use of a paired Dropout and given to the Flax one; carried into a jitted Flax pass as
arrays keyed "layer|call"."""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import torch

from parity.porting.layouts import is_nhwc
from parity.porting.pairing import Pairing


class Masks:
    """One keep-mask per (torch dropout layer, call), drawn in NumPy on torch's first use and given
    to the paired Flax Dropout (transposed to NHWC for 4-D activations)."""

    def __init__(self, seed: int, layout: str):
        self.rng, self.layout, self.masks = np.random.default_rng(seed), layout, {}

    def torch_inject(self, pairing: Pairing | None):
        def inject(leaf, k, x, out):
            m = leaf.module
            if leaf.kind != "dropout" or not m.training or m.p == 0 or pairing is None \
                    or pairing.of_torch(leaf.name) is None:
                return None
            key = (leaf.name, k)
            if key not in self.masks:
                self.masks[key] = self.rng.random(tuple(x.shape)) >= m.p
            if m.p == 1:
                return x * 0
            mask = torch.as_tensor(self.masks[key], device=x.device).to(x.dtype)
            return x * mask * torch.tensor(1.0 / (1.0 - m.p), dtype=x.dtype, device=x.device)
        return inject

    def flax_inject(self, pairing: Pairing | None, train: bool):
        def inject(leaf, k, module, x, kwargs):
            if leaf.kind != "dropout" or not train:
                return None
            rate = float(getattr(module, "rate", getattr(module, "p", 0.0)))
            det = kwargs.get("deterministic")
            det = getattr(module, "deterministic", False) if det is None else det
            if det or rate == 0:
                return x
            pair = pairing.of_flax(leaf.name) if pairing is not None else None
            if pairing is None:  # discovery: shapes only
                return x
            mask = self.masks.get((pair.torch.name, k)) if pair is not None else None
            if mask is None:
                return None  # no torch mask to share: the layer draws its own (reported as a note)
            if rate == 1:
                return x * 0
            if mask.ndim == 4 and is_nhwc(x.shape, mask.shape, self.layout):
                mask = mask.transpose(0, 2, 3, 1)
            return x * jnp.asarray(mask, x.dtype) * jnp.asarray(1.0 / (1.0 - rate), x.dtype)
        return inject


def mask_args(masks: dict) -> dict:
    """The masks as arguments of a jitted function: {"layer|call": array}."""
    return {f"{name}|{k}": jnp.asarray(m) for (name, k), m in masks.items()}


def mask_store(args: dict, layout: str) -> Masks:
    """The Masks that `mask_args` made its arguments from (inside the jitted function)."""
    store = Masks(0, layout)
    store.masks = {(k.rsplit("|", 1)[0], int(k.rsplit("|", 1)[1])): v for k, v in args.items()}
    return store
