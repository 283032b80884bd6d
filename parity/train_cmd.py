"""The `parity train` command: progress, TensorBoard event files for both frameworks, a PNG of both
loss curves, checkpoints in each framework's own format, and cross-loading a checkpoint into the
other framework (same predictions, same accuracy).
"""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import numpy as np
import torch

from parity import data, precision
from parity.tolerances import Tolerance, training_curve
from parity.training import (FRAMEWORKS, Config, Run, build, flax_params, flax_to_torch, load_data,
                             load_flax_weights, load_torch_weights, model_kwargs, model_name, predict,
                             torch_to_flax, train)


# ---------------------------------------------------------------- checkpoints
def _atomic_bytes(path: Path, write) -> None:
    """Call write(file) on a temporary file beside `path`, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def save_checkpoint(model, path) -> Path:
    """A torch model's state_dict via torch.save (.pt), or an NNX model's parameters as a
    msgpack-serialised pure dict (.msgpack, Flax's own serialisation)."""
    path = Path(path)
    if isinstance(model, torch.nn.Module):
        _atomic_bytes(path, lambda f: torch.save(model.state_dict(), f))
    else:
        from flax import serialization
        _atomic_bytes(path, lambda f: f.write(serialization.msgpack_serialize(flax_params(model))))
    return path


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
    and compare the two models' test outputs and accuracies."""
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
        if cfg.model != "linreg":
            rec["accuracy_src"] = float(np.mean(want.argmax(-1) == ds.y_test))
            rec["accuracy_dst"] = float(np.mean(got.argmax(-1) == ds.y_test))
        out[f"{src}->{dst}"] = rec
    return out


# ---------------------------------------------------------------- the `parity train` command
def run_name(cfg: Config) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{cfg.model}-{cfg.optimizer}-{Path(cfg.data).name}-{cfg.dtype}")


def _plot(run: Run, path: Path, tol: Tolerance) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    both = set(run.losses) == set(FRAMEWORKS)
    fig, axes = plt.subplots(1, 2 if both else 1, figsize=(11 if both else 6, 4), squeeze=False)
    ax = axes[0, 0]
    for fw, style in (("jax", "-"), ("torch", "--")):
        if fw in run.losses:
            ax.plot(np.arange(1, len(run.losses[fw]) + 1), run.losses[fw], style, label=fw)
    ax.set(xlabel="step", ylabel="training loss", title=f"{run.config.model} + {run.config.optimizer}, "
                                                        f"{run.config.dtype}")
    ax.legend()
    if both:
        a, b = run.losses["jax"].astype(np.float64), run.losses["torch"].astype(np.float64)
        d, steps = np.abs(a - b), np.arange(1, len(a) + 1)
        ax2 = axes[0, 1]
        ax2.semilogy(steps[d > 0], d[d > 0], ".", label="|jax − torch|")
        ax2.semilogy(steps, tol.atol + tol.rtol * np.abs(b), ":", label="tolerance")
        ax2.set(xlabel="step", ylabel="absolute difference",
                title=f"per-step loss difference ({int(np.sum(d == 0))} of {len(d)} steps equal)")
        ax2.legend()
    fig.tight_layout()
    _atomic_bytes(path, lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)


def _write_events(run: Run, folder: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter  # writes plain TensorBoard event files
    for fw in run.losses:
        with SummaryWriter(log_dir=str(folder / fw)) as w:
            for i, v in enumerate(run.losses[fw], 1):
                w.add_scalar("loss/train_step", float(v), i)
            for rec in run.epochs:
                for k, v in rec[fw].items():
                    w.add_scalar(f"epoch/{k}", v, rec["epoch"])


def cmd_train(args, out, err) -> int:
    """Run `parity train`: train, print per-epoch metrics, and write events, plot, checkpoints."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from parity.report import write_json_atomic

    try:  # bad options or data are usage errors (exit 2), reported without a traceback
        cfg = Config(args.model, args.optimizer, args.epochs, args.framework, args.data, args.batch_size,
                     args.lr, args.momentum, args.weight_decay, args.dtype, args.device, args.seed,
                     args.torch_threads).resolved()
        ds = load_data(cfg)
        model_kwargs(cfg.model, ds)
        data.Shuffler(len(ds.x_train), cfg.batch_size)
        if cfg.device == "cuda" and not precision.cuda_available():
            raise ValueError("--device cuda: CUDA is not available to both JAX and PyTorch here")
    except (ValueError, FileNotFoundError) as e:
        err.print(f"[red]parity: error:[/] {e}", highlight=False)
        return 2
    name = args.name or run_name(cfg)
    folder = Path(args.log_dir) / name
    tol = training_curve(cfg.dtype, cfg.optimizer, convolutional=cfg.model == "cnn")
    steps = cfg.epochs * (len(ds.x_train) // cfg.batch_size) * len(cfg.frameworks)
    metric = "test_loss" if cfg.model == "linreg" else "accuracy"
    out.print(f"training {cfg.model} with {cfg.optimizer} (lr {cfg.lr:g}, batch {cfg.batch_size}, "
              f"{cfg.dtype}) on {cfg.data}: {len(ds.x_train)} train / {len(ds.x_test)} test examples, "
              f"input {ds.x_train.shape[1:]}, {cfg.epochs} epochs, framework {cfg.framework}", highlight=False)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True) as prog:
        task = prog.add_task("training", total=steps)

        def on_epoch(rec, _):
            parts = [f"{fw} loss {rec[fw]['train_loss']:.4f} {metric} {rec[fw][metric]:.4f}"
                     for fw in cfg.frameworks]
            out.print(f"epoch {rec['epoch']:3d}: " + " | ".join(parts), highlight=False)

        run = train(cfg, ds, on_step=lambda: prog.advance(task), on_epoch=on_epoch)
    _write_events(run, folder)
    _plot(run, folder / "loss.png", tol)
    loaded = cross_load(run, ds, folder)
    summary = {"config": vars(cfg), "model_kwargs": run.model_kwargs,
               "steps": len(next(iter(run.losses.values()))), "epochs": run.epochs,
               "train_seconds": run.seconds, "cross_load": loaded,
               "tolerance": {"rtol": tol.rtol, "atol": tol.atol, "source": tol.source}}
    ok = True
    table = Table(title=f"{name}: final epoch", header_style="bold")
    for col in ("framework", "train loss", metric, "train seconds"):
        table.add_column(col, justify="left" if col == "framework" else "right")
    for fw in cfg.frameworks:
        rec = run.epochs[-1][fw]
        table.add_row(fw, f"{rec['train_loss']:.6f}", f"{rec[metric]:.4f}", f"{run.seconds[fw]:.2f}")
    out.print(table)
    if cfg.model == "linreg":
        for fw, tr in run.trainers.items():
            m = tr.model
            w, b = (np.asarray(m.w[...]), np.asarray(m.b[...])) if fw == "jax" else (
                m.w.detach().cpu().numpy(), m.b.detach().cpu().numpy())
            out.print(f"{fw}: w = {np.round(w.ravel(), 4).tolist()}, b = {np.round(b, 4).tolist()} "
                      f"(true w = [2, -3.4], b = 4.2)", highlight=False)
    if cfg.framework == "both":
        within = run.curves_agree(tol)
        max_abs, max_rel = run.curve_difference()
        summary["max_loss_diff"] = {"abs": max_abs, "rel": max_rel, "within_tolerance": within}
        out.print(f"largest per-step loss difference over {len(run.losses['jax'])} steps: {max_abs:.3g} abs, "
                  f"{max_rel:.3g} rel ({'within' if within else '[red]OUTSIDE[/]'} rtol {tol.rtol:g} / "
                  f"atol {tol.atol:g})", highlight=False)
        ok &= within
        if metric == "accuracy":
            acc = {fw: run.epochs[-1][fw]["accuracy"] for fw in FRAMEWORKS}
            same = acc["jax"] == acc["torch"]
            summary["accuracy_equal"] = same
            out.print(f"final test accuracy: jax {acc['jax']:.4f}, torch {acc['torch']:.4f} "
                      f"({'equal' if same else '[red]DIFFERENT[/]'})", highlight=False)
            ok &= same
    for k, rec in loaded.items():
        line = f"cross-load {k}: max output difference {rec['max_abs_output_diff']:.3g}"
        if "accuracy_src" in rec:
            line += f", accuracy {rec['accuracy_src']:.4f} -> {rec['accuracy_dst']:.4f}"
            ok &= rec["accuracy_src"] == rec["accuracy_dst"]
        out.print(line, highlight=False)
    write_json_atomic(summary, folder / "summary.json")
    out.print(f"wrote {folder}/{{jax,torch}} (TensorBoard events, checkpoints), {folder}/loss.png, "
              f"{folder}/summary.json", highlight=False)
    return 0 if ok else 1
