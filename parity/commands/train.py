"""`parity train`: train a model in both frameworks from the same weights and batches.

Prints per-epoch metrics, writes TensorBoard event files for both frameworks, a PNG of both loss
curves and their difference, checkpoints in each framework's own format (cross-loaded into the
other framework), and summary.json; the verdict compares the curves and the test accuracies.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
from rich.table import Table

from parity import data, precision, training
from parity.checkpoints import cross_load
from parity.commands.common import check_device
from parity.console import EXIT_FAIL, EXIT_OK, UsageError, esc, progress, write_bytes_atomic, write_json_atomic
from parity.console import writable_dir

_HELP = {
    "model": "the model", "optimizer": "the optimiser", "epochs": "passes over the training set",
    "framework": "which frameworks train", "data": "digits, mnist:PATH (IDX files), synthetic or "
    "synthetic-linear; nothing is downloaded", "batch_size": "examples per step", "lr": "learning rate",
    "momentum": "SGD momentum (SGD only)", "weight_decay": "weight decay (torch's meaning per optimiser)",
    "dtype": "float32 or float64", "device": "cpu or cuda", "seed": "weights, data split and batch order",
    "torch_threads": "torch's CPU threads while training (small steps gain nothing from more; 0 keeps "
                     "torch's own setting)",
}
_CHOICES = {"model": training.MODELS, "optimizer": training.OPTIMIZERS,
            "framework": (*training.FRAMEWORKS, "both"), "dtype": precision.DTYPES, "device": precision.DEVICES}


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a model in both frameworks from the same weights and batches")
    for f in dataclasses.fields(training.Config):  # one flag per Config field, by name
        kind = {"int": int, "float": float}.get(str(f.type).split(" |")[0], str)
        default = None if f.default is dataclasses.MISSING else f.default
        help_text = f"{_HELP[f.name]}; {training.defaults_help(f.name)}"
        p.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=kind, default=default,
                       choices=_CHOICES.get(f.name), help=help_text)
    p.add_argument("--log-dir", default="runs", help="writes <log-dir>/<name>/{jax,torch}, loss.png, summary.json")
    p.add_argument("--name", help="run name, a plain folder name (default: model-optimizer-data-dtype); "
                                  "an existing run folder gets a numbered sibling instead of a second history")
    p.set_defaults(run=run)


def run_name(cfg: training.Config) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{cfg.model}-{cfg.optimizer}-{Path(cfg.data).name}-{cfg.dtype}")


def _run_folder(log_dir: Path, name: str) -> Path:
    """A fresh folder for this run: `name`, or `name-2`, `name-3`… if earlier runs hold it (a second
    run into the same folder would append a second event file, and TensorBoard show every step twice)."""
    if not name or name in (".", "..") or Path(name).name != name or "/" in name or "\\" in name:
        raise UsageError(f"--name {name!r}: must be a plain folder name (no '/', not absolute, not '..')")
    folder, k = log_dir / name, 1
    while folder.exists():
        k += 1
        folder = log_dir / f"{name}-{k}"
    return folder


def _plot(run: training.Run, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    both = set(run.losses) == set(training.FRAMEWORKS)
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
        ax2.set(xlabel="step", ylabel="absolute difference",
                title=f"per-step loss difference ({int(np.sum(d == 0))} of {len(d)} steps equal)")
        ax2.legend()
    fig.tight_layout()
    write_bytes_atomic(path, lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)


def _write_events(run: training.Run, folder: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter  # writes plain TensorBoard event files
    for fw in run.losses:
        with SummaryWriter(log_dir=str(folder / fw)) as w:
            for i, v in enumerate(run.losses[fw], 1):
                w.add_scalar("loss/train_step", float(v), i)
            for rec in run.epochs:
                for k, v in rec[fw].items():
                    w.add_scalar(f"epoch/{k}", v, rec["epoch"])


def _validate(args):
    """The resolved config, the data and the run folder; UsageError for anything wrong, before training."""
    cfg = training.Config(**{f.name: getattr(args, f.name) for f in dataclasses.fields(training.Config)})
    try:
        cfg = cfg.resolved()
    except ValueError as e:
        raise UsageError(str(e)) from None
    check_device(cfg.device)
    log_dir = writable_dir(args.log_dir, "--log-dir")
    folder = _run_folder(log_dir, args.name if args.name is not None else run_name(cfg))
    try:
        ds = training.load_data(cfg)
        training.model_kwargs(cfg.model, ds)
        data.Shuffler(len(ds.x_train), cfg.batch_size)
    except (ValueError, FileNotFoundError) as e:  # data errors name their file
        raise UsageError(str(e)) from None
    return cfg, ds, folder


def run(args, out, err) -> int:
    cfg, ds, folder = _validate(args)
    steps = cfg.epochs * (len(ds.x_train) // cfg.batch_size) * len(cfg.frameworks)
    metric = "test_loss" if cfg.model == "linear_regression" else "test_accuracy"
    out.print(f"training {cfg.model} with {cfg.optimizer} (lr {cfg.lr:g}, batch {cfg.batch_size}, "
              f"{cfg.dtype}) on {esc(cfg.data)}: {len(ds.x_train)} train / {len(ds.x_test)} test examples, "
              f"input {ds.x_train.shape[1:]}, {cfg.epochs} epochs, framework {cfg.framework}", highlight=False)
    with progress(err) as prog:
        task = prog.add_task("training", total=steps)

        def on_epoch(rec, _):
            parts = [f"{fw} train loss {rec[fw]['train_loss']:.4f} {metric.replace('_', ' ')} {rec[fw][metric]:.4f}"
                     for fw in cfg.frameworks]
            out.print(f"epoch {rec['epoch']:3d}: " + " | ".join(parts), highlight=False)

        run_ = training.train(cfg, ds, on_step=lambda: prog.advance(task), on_epoch=on_epoch)
    _write_events(run_, folder)
    _plot(run_, folder / "loss.png")
    loaded = cross_load(run_, ds, folder)
    summary = {"config": dataclasses.asdict(cfg), "model_kwargs": run_.model_kwargs,
               "steps": len(next(iter(run_.losses.values()))), "epochs": run_.epochs,
               "train_seconds_after_first_step": run_.seconds,
               "first_step_seconds_with_compile": run_.first_step_seconds, "cross_load": loaded}
    ok = True
    table = Table(title=f"{esc(folder.name)}: final epoch", header_style="bold")
    for col in ("framework", "train loss", metric.replace("_", " "), "first step s (compile)", "other steps s"):
        table.add_column(col, justify="left" if col == "framework" else "right")
    for fw in cfg.frameworks:
        rec = run_.epochs[-1][fw]
        table.add_row(fw, f"{rec['train_loss']:.6f}", f"{rec[metric]:.4f}",
                      f"{run_.first_step_seconds[fw]:.2f}", f"{run_.seconds[fw]:.2f}")
    out.print(table)
    if cfg.model == "linear_regression":
        for fw in run_.trainers:
            w, b = training.linreg_weights(run_.trainers[fw].model)
            out.print(f"{fw}: w = {np.round(w.ravel(), 4).tolist()}, b = {np.round(b, 4).tolist()} "
                      f"(true w = [2, -3.4], b = 4.2)", highlight=False)
    if cfg.framework == "both":
        verdicts = {"loss_curve": run_.curve_verdict()}
        if metric == "test_accuracy":
            verdicts["test_accuracy"] = run_.accuracy_verdict()
        for key, v in verdicts.items():
            summary[key] = v.to_dict()
            out.print(f"{key.replace('_', ' ')}: {'[green]AGREE[/]' if v.ok else '[red]DIFFER[/]'} — {esc(v.summary())}",
                      highlight=False)
            ok &= v.ok
    for k, rec in loaded.items():
        line = f"cross-load {k}: max output difference {rec['max_abs_output_diff']:.3g}"
        if "test_accuracy_src" in rec:
            line += f", test accuracy {rec['test_accuracy_src']:.4f} -> {rec['test_accuracy_dst']:.4f}"
            ok &= rec["test_accuracy_src"] == rec["test_accuracy_dst"]
        out.print(line, highlight=False)
    write_json_atomic(summary, folder / "summary.json")
    out.print(f"wrote {esc(folder)}/{{jax,torch}} (TensorBoard events, checkpoints), {esc(folder)}/loss.png, "
              f"{esc(folder)}/summary.json", highlight=False)
    return EXIT_OK if ok else EXIT_FAIL
