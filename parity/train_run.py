"""A `parity train` run from training to its files: train (single-device, or also data-parallel),
write TensorBoard events, a PNG of both loss curves, checkpoints cross-loaded into the other
framework, and summary.json; judge the curves, the test accuracies, the cross-loads and the
data-parallel comparisons. `run` returns a `TrainResult` that parity/commands/train.py prints; a
Ctrl-C keeps the finished epochs in a summary.json marked incomplete.

The training itself is parity/training.py (single-device) and parity/distributed/compare.py
(data-parallel); the verdicts' rules are parity/curves.py's.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from parity import train_config, training
from parity.checkpoints import cross_load, save_checkpoint
from parity.console import write_bytes_atomic, write_json_atomic
from parity.distributed.launch import TIMEOUT, DistributedError

__all__ = ["DistributedError", "TrainResult", "metric_of", "run"]


def metric_of(cfg: train_config.Config) -> str:
    """The test metric the run reports: the loss for linear regression, else the accuracy."""
    return "test_loss" if cfg.model == "linear_regression" else "test_accuracy"


def _dp_dir(fw: str, world: int) -> str:
    """The folder of a data-parallel run's events and checkpoint, inside the run folder."""
    return f"torch-ddp{world}" if fw == "torch" else f"jax-dp{world}"


@dataclass
class TrainResult:
    """A finished run, its verdicts and what was written. `verdicts`: {"loss_curve", "test_accuracy"}
    → curves.CurveVerdict / AccuracyVerdict (both frameworks only; the accuracy for classifiers);
    `cross_load`: {"torch->jax", "jax->torch"} → checkpoints.cross_load's record (checkpoint in its
    final place); `linreg`: {framework: (w, b)} of a linear regression; `data_parallel`: the
    distributed.compare.DPRun with `dp_differences` its per-step free-running |Δloss| and
    `dp_folders` the folders its events and checkpoints went to (in the run folder); `ok`: every
    verdict agrees, and every cross-load keeps the test accuracy."""

    run: training.Run
    metric: str
    summary: dict
    ok: bool
    verdicts: dict = field(default_factory=dict)
    cross_load: dict = field(default_factory=dict)
    linreg: dict = field(default_factory=dict)
    data_parallel: object = None
    dp_differences: dict = field(default_factory=dict)
    dp_folders: list = field(default_factory=list)


def run(cfg: train_config.Config, ds, folder: Path, shown: Path | None = None, *, world: int | None = None,
        timeout: float | None = None, on_step=None, on_epoch=None, on_progress=None,
        on_interrupt=None) -> TrainResult:
    """Train `cfg` on `ds` and write everything into `folder` (the run folder, or a staging folder
    whose final name is `shown`). `world`: also train data-parallel over that many ranks/devices
    (`timeout`: seconds a worker may stay silent). Callbacks: `on_step()` after each single-device
    step, `on_epoch(record, losses)` after each single-device epoch, `on_progress(framework, what,
    step, total)` for the data-parallel workers; each may raise KeyboardInterrupt to stop. On a
    KeyboardInterrupt, `on_interrupt()` runs first, then the finished epochs go to `shown`'s
    summary.json, marked incomplete, and KeyboardInterrupt is raised again carrying the line that
    says so. DistributedError when a data-parallel worker fails."""
    shown = folder if shown is None else shown
    finished = []  # (record, per-step losses) of every finished single-device epoch: kept on Ctrl-C

    def kept(rec, losses):
        finished.append((rec, losses))
        if on_epoch is not None:
            on_epoch(rec, losses)
    step = on_step or (lambda: None)
    dp = None
    try:
        if world is None:
            single = training.train(cfg, ds, on_step=step, on_epoch=kept)
        else:
            from parity.distributed import compare
            dp = compare.train_data_parallel(cfg, world, ds, on_single_step=step, on_single_epoch=kept,
                                             on_progress=on_progress, timeout=TIMEOUT if timeout is None else timeout)
            single = dp.single
    except KeyboardInterrupt:
        if on_interrupt is not None:
            on_interrupt()  # the run is ending: a second signal must not cut the writing short
        # data-parallel: the single-device epochs go to the final folder, nothing else
        raise KeyboardInterrupt(_write_incomplete(cfg, finished, folder if world is None else shown)) from None
    return _finish(cfg, ds, single, dp, folder, shown)


def _finish(cfg, ds, single: training.Run, dp, folder: Path, shown: Path) -> TrainResult:
    """Events, the plot, the cross-loaded checkpoints, the verdicts and summary.json of a finished run."""
    _write_events(single, folder)
    _plot(single, folder / "loss.png")
    loaded = cross_load(single, ds, folder)
    summary = {"complete": True, "config": dataclasses.asdict(cfg), "model_kwargs": single.model_kwargs,
               "steps": len(next(iter(single.losses.values()))), "epochs": single.epochs,
               "train_seconds_after_first_step": single.seconds,
               "first_step_seconds_with_compile": single.first_step_seconds, "cross_load": loaded}
    result = TrainResult(single, metric_of(cfg), summary, True, cross_load=loaded)
    if cfg.model == "linear_regression":
        result.linreg = {fw: training.linreg_weights(single.trainers[fw].model) for fw in single.trainers}
    if cfg.framework == "both":
        result.verdicts = {"loss_curve": single.curve_verdict()}
        if result.metric == "test_accuracy":
            result.verdicts["test_accuracy"] = single.accuracy_verdict()
        for key, v in result.verdicts.items():
            summary[key] = v.to_dict()
            result.ok &= v.ok
    for rec in loaded.values():
        if "test_accuracy_src" in rec:
            result.ok &= rec["test_accuracy_src"] == rec["test_accuracy_dst"]
    if dp is not None:
        result.data_parallel, result.dp_differences = dp, dp.free_differences()
        result.dp_folders = [_dp_dir(fw, dp.world) for fw in sorted(dp.losses)]
        _write_data_parallel(dp, result.dp_differences, folder)
        summary["data_parallel"] = dp.to_dict()
        result.ok &= all(c.ok for c in dp.comparisons.values())
        for rec in loaded.values():  # the checkpoints' final place
            rec["checkpoint"] = str(shown / Path(rec["checkpoint"]).relative_to(folder))
    write_json_atomic(summary, folder / "summary.json")
    return result


def _write_incomplete(cfg: train_config.Config, finished: list, folder: Path) -> str:
    """On Ctrl-C: summary.json with the finished (single-device) epochs' records and per-step losses,
    marked incomplete (no checkpoints, events or data-parallel results: the run stopped mid-way);
    the line saying so."""
    if not finished:
        return "no epoch had finished; nothing written"
    folder.mkdir(parents=True, exist_ok=True)
    summary = {"complete": False, "config": dataclasses.asdict(cfg), "epochs": [rec for rec, _ in finished],
               "step_losses": {fw: np.concatenate([losses[fw] for _, losses in finished]).tolist()
                               for fw in cfg.frameworks}}
    write_json_atomic(summary, folder / "summary.json")
    n = len(finished)
    return f"wrote the {n} finished epoch{'s' if n != 1 else ''} to {folder / 'summary.json'} (marked incomplete)"


def _plot(run_: training.Run, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    both = set(run_.losses) == set(train_config.FRAMEWORKS)
    fig, axes = plt.subplots(1, 2 if both else 1, figsize=(11 if both else 6, 4), squeeze=False)
    ax = axes[0, 0]
    for fw, style in (("jax", "-"), ("torch", "--")):
        if fw in run_.losses:
            ax.plot(np.arange(1, len(run_.losses[fw]) + 1), run_.losses[fw], style, label=fw)
    ax.set(xlabel="step", ylabel="training loss", title=f"{run_.config.model} + {run_.config.optimizer}, "
                                                        f"{run_.config.dtype}")
    ax.legend()
    if both:
        a, b = run_.losses["jax"].astype(np.float64), run_.losses["torch"].astype(np.float64)
        d, steps = np.abs(a - b), np.arange(1, len(a) + 1)
        ax2 = axes[0, 1]
        ax2.semilogy(steps[d > 0], d[d > 0], ".", label="|jax − torch|")
        ax2.set(xlabel="step", ylabel="absolute difference",
                title=f"per-step loss difference ({int(np.sum(d == 0))} of {len(d)} steps equal)")
        ax2.legend()
    fig.tight_layout()
    write_bytes_atomic(path, lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)


def _write_events(run_: training.Run, folder: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter  # writes plain TensorBoard event files
    for fw in run_.losses:
        with SummaryWriter(log_dir=str(folder / fw)) as w:
            for i, v in enumerate(run_.losses[fw], 1):
                w.add_scalar("loss/train_step", float(v), i)
            for rec in run_.epochs:
                for k, v in rec[fw].items():
                    w.add_scalar(f"epoch/{k}", v, rec["epoch"])


def _write_data_parallel(dp, diffs: dict, folder: Path) -> None:
    """The data-parallel runs' TensorBoard events (losses, agreement with the single-device run, epoch
    records) and final checkpoints, one folder per framework (`_dp_dir`)."""
    from torch.utils.tensorboard import SummaryWriter
    cfg, world = dp.config, dp.world
    for fw, losses in dp.losses.items():
        sub = folder / _dp_dir(fw, world)
        with SummaryWriter(log_dir=str(sub)) as w:
            for i, v in enumerate(losses, 1):
                w.add_scalar("loss/train_step", float(v), i)
            for name, d in diffs.items():
                if name.startswith(fw) or name.startswith("ddp"):
                    for i, v in enumerate(d, 1):
                        w.add_scalar(f"agreement/{re.sub('[^a-z]+', '_', name).strip('_')}", float(v), i)
            for rec in dp.epochs[fw]:
                for k, v in rec.items():
                    if k != "epoch":
                        w.add_scalar(f"epoch/{k}", v, rec["epoch"])
        model = training.build(cfg.model, dp.model_kwargs, fw, cfg.dtype, dp.final_weights[fw])
        save_checkpoint(model, sub / ("model.pt" if fw == "torch" else "model.msgpack"))
