"""Checkpoints in each framework's own format, loaded into a model of either framework.

torch: the state_dict via `torch.save` (.pt). Flax NNX: the parameters as a msgpack-serialised pure
dict (.msgpack, Flax's own serialisation). Loading converts layouts where the formats differ.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from parity import data, precision
from parity.console import write_bytes_atomic
from parity.training import (Run, build, flax_params, flax_to_torch, load_flax_weights, load_torch_weights,
                             model_name, predict, torch_to_flax)


def save_checkpoint(model, path) -> Path:
    """A torch model's state_dict (.pt) or an NNX model's parameters (.msgpack), written atomically."""
    path = Path(path)
    if isinstance(model, torch.nn.Module):
        return write_bytes_atomic(path, lambda f: torch.save(model.state_dict(), f))
    from flax import serialization
    return write_bytes_atomic(path, lambda f: f.write(serialization.msgpack_serialize(flax_params(model))))


def load_checkpoint(path, model) -> None:
    """Load a checkpoint of either framework into `model` of either framework, converting as needed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix == ".pt":
        sd = {k: v.cpu().numpy() for k, v in torch.load(path, map_location="cpu", weights_only=True).items()}
        src = "torch"
    elif path.suffix == ".msgpack":
        from flax import serialization
        params, src = serialization.msgpack_restore(path.read_bytes()), "jax"
    else:
        raise ValueError(f"{path}: unknown checkpoint format (expected .pt or .msgpack)")
    name = model_name(model)
    if isinstance(model, torch.nn.Module):
        load_torch_weights(model, sd if src == "torch" else flax_to_torch(name, params))
    else:
        load_flax_weights(model, torch_to_flax(name, sd) if src == "torch" else params)


def cross_load(run: Run, ds: data.Dataset, folder: Path) -> dict:
    """Save each trained model in its own format, load it into a fresh twin of the other framework,
    and compare the two models' test outputs and test accuracies."""
    cfg, out = run.config, {}
    for src, dst in (("torch", "jax"), ("jax", "torch")):
        if src not in run.trainers:
            continue
        trained = run.trainers[src].model
        path = save_checkpoint(trained, folder / src / ("model.pt" if src == "torch" else "model.msgpack"))
        fresh = build(cfg.model, run.model_kwargs, dst, cfg.dtype)
        load_checkpoint(path, fresh)
        with precision.policy("strict"):
            got, want = predict(fresh, ds.x_test), predict(trained, ds.x_test)
        rec = {"checkpoint": str(path), "max_abs_output_diff": float(np.abs(got - want).max())}
        if got.ndim == 2 and got.shape[1] > 1:  # a classifier: compare the test accuracies too
            rec["test_accuracy_src"] = float(np.mean(want.argmax(-1) == ds.y_test))
            rec["test_accuracy_dst"] = float(np.mean(got.argmax(-1) == ds.y_test))
        out[f"{src}->{dst}"] = rec
    return out
