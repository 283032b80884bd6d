"""Training states (`training.TrainState`: canonical weights, optimiser slots, step count) and
arrays as flat .npz entries, to pass them between the parent and its worker processes."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from parity.training import TrainState


def pack(sts: list[TrainState], prefix: str) -> dict:
    """A list of states as flat npz entries: '<prefix>/<i>/w/<name>', '.../s/<slot>/<name>', '.../step'."""
    out = {f"{prefix}/count": np.array(len(sts))}
    for i, st in enumerate(sts):
        out.update({f"{prefix}/{i}/w/{k}": np.asarray(v) for k, v in st.weights.items()})
        for slot, arrays in st.slots.items():
            out.update({f"{prefix}/{i}/s/{slot}/{k}": np.asarray(v) for k, v in arrays.items()})
        out[f"{prefix}/{i}/step"] = np.array(st.step)
    return out


def unpack(z, prefix: str) -> list[TrainState]:
    """The states `pack` wrote (z: an NpzFile or dict)."""
    files = list(z.files if hasattr(z, "files") else z)
    n = int(z[f"{prefix}/count"]) if f"{prefix}/count" in files else 0
    out = []
    for i in range(n):
        head = f"{prefix}/{i}/"
        weights, slots = {}, {}
        for key in files:
            if not key.startswith(head):
                continue
            rest = key[len(head):]
            if rest.startswith("w/"):
                weights[rest[2:]] = z[key]
            elif rest.startswith("s/"):
                slot, name = rest[2:].split("/", 1)
                slots.setdefault(slot, {})[name] = z[key]
        out.append(TrainState(weights, slots, int(z[head + "step"])))
    return out


def save(path: str | os.PathLike, arrays: dict) -> Path:
    """An .npz written under a temporary name and renamed into place."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    return path
