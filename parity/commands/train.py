"""`parity train`: train a model in both frameworks from the same weights and batches.

Prints per-epoch metrics, writes TensorBoard event files for both frameworks, a PNG of both loss
curves and their difference, checkpoints in each framework's own format (cross-loaded into the
other framework), and summary.json; the verdict compares the curves and the test accuracies.
This file parses the flags and prints; the run itself, its files and its verdicts are
parity/train_run.py's.
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
import shutil
from pathlib import Path

import numpy as np
from rich.table import Table

from parity import names, train_config
from parity.commands.common import check_device
from parity.console import EXIT_FAIL, EXIT_OK, UsageError, esc, print_error, progress, writable_dir

_HELP = {
    "model": "the model", "optimizer": "the optimiser", "epochs": "passes over the training set",
    "framework": "which frameworks train", "data": "digits, mnist:PATH (IDX files), synthetic or "
    "synthetic-linear; nothing is downloaded", "batch_size": "examples per step", "lr": "learning rate",
    "momentum": "SGD momentum (SGD only)", "weight_decay": "weight decay (torch's meaning per optimiser)",
    "dtype": "float32 or float64", "device": "cpu or cuda", "seed": "weights, data split and batch order",
    "torch_threads": "torch's CPU threads while training (small steps gain nothing from more; 0 keeps "
                     "torch's own setting)",
}
_CHOICES = {"model": train_config.MODELS, "optimizer": train_config.OPTIMIZERS,
            "framework": (*train_config.FRAMEWORKS, "both"), "dtype": names.DTYPES, "device": names.DEVICES}


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a model in both frameworks from the same weights and batches")
    for f in dataclasses.fields(train_config.Config):  # one flag per Config field, by name
        kind = {"int": int, "float": float}.get(str(f.type).split(" |")[0], str)
        default = None if f.default is dataclasses.MISSING else f.default
        help_text = f"{_HELP[f.name]}; {train_config.defaults_help(f.name)}"
        p.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=kind, default=default,
                       choices=_CHOICES.get(f.name), help=help_text)
    p.add_argument("--log-dir", default="runs", help="writes <log-dir>/<name>/{jax,torch}, loss.png, summary.json")
    p.add_argument("--name", help="run name, a plain folder name (default: model-optimizer-data-dtype); "
                                  "an existing run folder gets a numbered sibling instead of a second history")
    p.add_argument("--data-parallel", dest="data_parallel", type=int, metavar="N",
                   help="also train data-parallel over N ranks/devices (torch DDP, JAX sharding) and compare "
                        "with the single-device run and across frameworks; N at most the CPU cores (or CUDA "
                        "devices), dividing the batch size")
    p.add_argument("--dp-timeout", dest="dp_timeout", type=float, default=None, metavar="SECONDS",
                   help="with --data-parallel: end every worker and fail when one sends nothing for this long "
                        "(default 120)")
    p.set_defaults(run=run, stops_between_steps=True)  # signals wait for its next step (parity.cli)


def run_name(cfg: train_config.Config) -> str:
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


def _validate(args):
    """The resolved config, the data and the run folder; UsageError for anything wrong, before training."""
    from parity import data, training  # JAX and torch: once a run starts, not for --help
    cfg = training.Config(**{f.name: getattr(args, f.name) for f in dataclasses.fields(training.Config)})
    try:
        cfg = cfg.resolved()
    except ValueError as e:
        raise UsageError(str(e)) from None
    check_device(cfg.device)
    log_dir = writable_dir(args.log_dir, "--log-dir")
    folder = _run_folder(log_dir, args.name if args.name is not None else run_name(cfg))
    writable_dir(folder, "--log-dir/--name")  # the run folder's own name must fit the file system too
    try:
        ds = training.load_data(cfg)
        training.model_kwargs(cfg.model, ds)
        data.Shuffler(len(ds.x_train), cfg.batch_size)
    except (ValueError, FileNotFoundError) as e:  # data errors name their file
        raise UsageError(str(e)) from None
    _validate_data_parallel(args, cfg)
    return cfg, ds, folder


def _validate_data_parallel(args, cfg) -> None:
    n, timeout = getattr(args, "data_parallel", None), getattr(args, "dp_timeout", None)
    if n is None:
        if timeout is not None:
            raise UsageError("--dp-timeout applies with --data-parallel N only")
        return
    from parity.distributed import compare
    try:
        compare.check_world(n, cfg.device, cfg.batch_size)
    except ValueError as e:
        raise UsageError(f"--data-parallel: {e}") from None
    if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
        raise UsageError(f"--dp-timeout must be a number of seconds > 0, got {timeout}")


def run(args, out, err) -> int:
    interrupts = args.interrupts  # Ctrl-C and SIGTERM (parity.cli.Interrupts)
    if getattr(args, "data_parallel", None) is None:
        with interrupts.deferred():  # they stop the run between steps
            cfg, ds, folder = _validate(args)
            return _run(cfg, ds, folder, folder, out, err, check=interrupts.check, hold=interrupts.hold)
    # data-parallel: everything is written into a hidden sibling folder, renamed into place at the end,
    # so a run that fails or is interrupted leaves no half-written event file or checkpoint behind.
    # Signals raise at once here (this process mostly waits for its workers, which may send nothing for
    # many seconds while they start), and one that Python dropped is raised again at the next step.
    interrupts.check()  # one that came while the command started
    cfg, ds, folder = _validate(args)
    staging = folder.with_name(f".{folder.name}.partial-{os.getpid()}")
    try:
        code = _run(cfg, ds, staging, folder, out, err, args.data_parallel, args.dp_timeout, interrupts.check,
                    interrupts.hold)
        interrupts.check()
        if code is not None:
            os.rename(staging, folder)
        return EXIT_FAIL if code is None else code
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _run(cfg, ds, folder: Path, shown: Path, out, err, world: int | None = None, timeout: float | None = None,
         check=None, hold=None):
    """Train and write into `folder` (the run folder, or its staging folder, whose final name is
    `shown`) by parity/train_run.py, and print what it returns; the exit code, or None when a
    data-parallel worker failed (reported on `err`). `check()` runs at every step and after every
    epoch (it raises KeyboardInterrupt to stop); `hold()` when a KeyboardInterrupt has come (further
    signals then wait until the run has ended)."""
    check, hold = check or (lambda: None), hold or (lambda: None)
    from parity import train_run
    steps = cfg.epochs * (len(ds.x_train) // cfg.batch_size) * len(cfg.frameworks)
    metric = train_run.metric_of(cfg)
    out.print(f"training {cfg.model} with {cfg.optimizer} (lr {cfg.lr:g}, batch {cfg.batch_size}, "
              f"{cfg.dtype}) on {esc(cfg.data)}: {len(ds.x_train)} train / {len(ds.x_test)} test examples, "
              f"input {ds.x_train.shape[1:]}, {cfg.epochs} epochs, framework {cfg.framework}", highlight=False)
    with progress(err) as prog:
        task, dp_tasks = prog.add_task("training", total=steps), {}

        def on_step():
            prog.advance(task)
            check()

        def on_epoch(rec, _):
            parts = [f"{fw} train loss {rec[fw]['train_loss']:.4f} {metric.replace('_', ' ')} {rec[fw][metric]:.4f}"
                     for fw in cfg.frameworks]
            out.print(f"epoch {rec['epoch']:3d}: " + " | ".join(parts), highlight=False)
            check()

        def on_progress(fw, what, step, total):
            check()
            if fw not in dp_tasks:
                dp_tasks[fw] = prog.add_task(f"{fw} data-parallel", total=total)
            prog.update(dp_tasks[fw], completed=min(step, total), total=total,
                        description=f"{fw} data-parallel: {what}")

        def on_interrupt():
            hold()  # the run is ending: a second signal must not cut the writing short
            prog.stop()
        try:
            result = train_run.run(cfg, ds, folder, shown, world=world, timeout=timeout, on_step=on_step,
                                   on_epoch=on_epoch, on_progress=on_progress, on_interrupt=on_interrupt)
        except train_run.DistributedError as e:
            prog.stop()
            print_error(err, f"data-parallel training failed: {e}")
            return None
    _print_result(result, cfg, shown, out)
    return EXIT_OK if result.ok else EXIT_FAIL


def _print_result(result, cfg, shown: Path, out) -> None:
    """The final epoch's table, the verdicts, the cross-loads, the data-parallel comparison and what
    was written."""
    run_, metric = result.run, result.metric
    table = Table(title=f"{esc(shown.name)}: final epoch", header_style="bold")
    for col in ("framework", "train loss", metric.replace("_", " "), "first step s (compile)", "other steps s"):
        table.add_column(col, justify="left" if col == "framework" else "right")
    for fw in cfg.frameworks:
        rec = run_.epochs[-1][fw]
        table.add_row(fw, f"{rec['train_loss']:.6f}", f"{rec[metric]:.4f}",
                      f"{run_.first_step_seconds[fw]:.2f}", f"{run_.seconds[fw]:.2f}")
    out.print(table)
    for fw, (w, b) in result.linreg.items():
        out.print(f"{fw}: w = {np.round(w.ravel(), 4).tolist()}, b = {np.round(b, 4).tolist()} "
                  f"(true w = [2, -3.4], b = 4.2)", highlight=False)
    for key, v in result.verdicts.items():
        out.print(f"{key.replace('_', ' ')}: {'[green]AGREE[/]' if v.ok else '[red]DIFFER[/]'} — {esc(v.summary())}",
                  highlight=False)
    for k, rec in result.cross_load.items():
        line = f"cross-load {k}: max output difference {rec['max_abs_output_diff']:.3g}"
        if "test_accuracy_src" in rec:
            line += f", test accuracy {rec['test_accuracy_src']:.4f} -> {rec['test_accuracy_dst']:.4f}"
        out.print(line, highlight=False)
    dp_dirs = ""
    if result.data_parallel is not None:
        _print_data_parallel(result.data_parallel, result.dp_differences, out)
        dp_dirs = f", {esc(shown)}/{{{','.join(result.dp_folders)}}} (data-parallel events, checkpoints)"
    out.print(f"wrote {esc(shown)}/{{jax,torch}} (TensorBoard events, checkpoints){dp_dirs}, {esc(shown)}/loss.png, "
              f"{esc(shown)}/summary.json", highlight=False)


# ---------------------------------------------------------------- --data-parallel N
def _print_data_parallel(dp, diffs: dict, out) -> None:
    """Per-epoch agreement of the per-step losses and the three verdicts."""
    cfg, world = dp.config, dp.world
    spe = len(dp.single.losses[cfg.frameworks[0]]) // cfg.epochs
    table = Table(title=f"data-parallel ({world} ranks/devices) vs single device: per-step training losses, "
                        f"free running", header_style="bold")
    table.add_column("epoch", justify="right")
    for fw in sorted(dp.losses, reverse=True):
        table.add_column(f"{'torch ddp' if fw == 'torch' else 'jax sharded'} train loss", justify="right")
    for name in diffs:
        table.add_column(f"max |Δ| {name}", justify="right")
    for e in range(cfg.epochs):
        sl = slice(e * spe, (e + 1) * spe)
        table.add_row(str(e + 1), *[f"{dp.epochs[fw][e]['train_loss']:.6f}" for fw in sorted(dp.losses, reverse=True)],
                      *[f"{d[sl].max(initial=0.0):.3g}" for d in diffs.values()])
    table.add_row("all", *["" for _ in dp.losses], *[f"{d.max(initial=0.0):.3g}" for d in diffs.values()])
    out.print(table)
    for name, c in dp.comparisons.items():
        line = f"data-parallel {name}: {'[green]AGREE[/]' if c.ok else '[red]DIFFER[/]'} — {esc(c.verdict.summary())}"
        if c.accuracy is not None:
            line += f"; {c.accuracy.flips} of {c.accuracy.examples} test predictions differ"
        out.print(line, highlight=False)
