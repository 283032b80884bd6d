"""Data-parallel training in both frameworks, compared three ways, with the curve rule of `parity.curves`.

`train_data_parallel(cfg, world)` trains cfg's model from the same NumPy weights on the same global
batches (the seeded `data.Shuffler`, as `training.train`): single-device in this process
(`training.train`), torch DDP over `world` ranks, and JAX sharded over `world` devices (worker
processes: `launch.Group`). It then judges, each by teacher forcing (`parity/curves.py`: every 20
steps one trainer restarts from the other's weights and optimiser state, each step within 64 ulps of
(1 + |loss|), float32 segments beyond that arbitrated by float64 replays):

1. torch DDP vs torch on one device: the single-device trainer restarted from DDP's states;
2. JAX sharded vs JAX on one device: likewise;
3. JAX sharded vs torch DDP: the sharded JAX trainer restarted from DDP's states.

Why that bound serves 1 and 2 as well: in the same framework, data parallelism changes only the
order of the sums (each device sums its shard, then the shards' sums are added; docs/traps.md,
trap 34), which is the same kind of rounding that the bound was measured for between the
frameworks (a few ulps per step, carried for at most 20 steps). The free-running curves are
reported beside the verdicts (their difference grows with the run's length, so they get no bound).

`batchnorm_case` trains `models.TorchConvBN` / `JaxConvBN` (conv → BatchNorm → ...) the same way
for one segment, single-device and data-parallel with per-rank and with global BatchNorm statistics.
"""
from __future__ import annotations

import abc
import dataclasses
import json
import os
import pickle
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from parity import curves, data, precision, training
from parity.distributed import launch, models, states
from parity.distributed.launch import DistributedError  # noqa: F401  (re-exported)
from parity.tolerances import training_curve

SEGMENT_STEPS = curves.SEGMENT_STEPS


# ---------------------------------------------------------------- what N may be
def cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def devices_available(device: str) -> int:
    """How many ranks/devices a data-parallel run may use: the CPU cores, or the CUDA devices both
    frameworks see."""
    if device != "cuda":
        return cores()
    import jax
    try:
        n_jax = len(jax.devices("gpu"))
    except RuntimeError:
        n_jax = 0
    return min(torch.cuda.device_count(), n_jax)


def check_world(world: int, device: str, batch_size: int | None = None) -> None:
    """ValueError unless `world` ranks fit the machine and split the global batch evenly."""
    if isinstance(world, bool) or not isinstance(world, int) or world < 1:
        raise ValueError(f"data-parallel N must be an integer >= 1; got {world!r}")
    have = devices_available(device)
    if world > have:
        what = "CPU cores" if device != "cuda" else "CUDA devices visible to both JAX and PyTorch"
        raise ValueError(f"data-parallel N = {world} is more than the {have} {what} here (one rank or "
                         f"device each)")
    if batch_size is not None and batch_size % world:
        raise ValueError(f"the global batch of {batch_size} does not split into {world} equal shards: DDP "
                         f"would average ranks of unequal batches, which is not the global mean "
                         f"(docs/traps.md, trap 30); use a batch size divisible by {world}")


# ---------------------------------------------------------------- the worker processes
class Session:
    """The worker processes of data-parallel runs: a torch group of `world` ranks and a JAX process
    of `world` devices, and a temporary job folder; all ended by `close` (or leaving the `with`)."""

    def __init__(self, world: int, device: str = "cpu", frameworks=training.FRAMEWORKS,
                 timeout: float = launch.TIMEOUT, env: dict | None = None):
        self.world, self.device = world, device
        self._tmp = tempfile.TemporaryDirectory(prefix="parity-dp-")
        self.dir = Path(self._tmp.name)
        self.groups = {fw: launch.Group(fw, world, device, self.dir, timeout=timeout, env=env)
                       for fw in frameworks}
        self._n = 0

    def start(self) -> "Session":
        try:
            for g in self.groups.values():
                g.start()
        except BaseException:
            self.close()
            raise
        return self

    @property
    def pids(self) -> list[int]:
        return [pid for g in self.groups.values() for pid in g.pids]

    def path(self, stem: str, suffix: str = ".npz") -> str:
        self._n += 1
        return str(self.dir / f"{stem}-{self._n}{suffix}")

    @property
    def closed(self) -> bool:
        return any(g.closed for g in self.groups.values())

    def request(self, fw: str, cmd: dict, on_progress=None, timeout: float | None = None) -> list[dict]:
        """A command to every process of one framework (see `launch.Group.request`); any failure
        (or Ctrl-C) ends every process of the session."""
        try:
            return self.groups[fw].request(cmd, on_progress, timeout)
        except BaseException:
            self.close()
            raise

    def call(self, fw: str, fn: str, timeout: float | None = None, **kwargs):
        """`experiments.<fn>(worker, **kwargs)` on every process of `fw`; rank 0's result."""
        out = self.path(f"{fw}-{fn}", ".pkl")
        self.request(fw, {"cmd": "call", "fn": fn, "kwargs": kwargs, "out": out}, timeout=timeout)
        with open(out, "rb") as f:
            return pickle.load(f)

    def close(self) -> None:
        for g in self.groups.values():
            g.close()
        self._tmp.cleanup()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()
        return False


def _inputs(session: Session, sd: dict, batches: np.ndarray, ds: data.Dataset) -> str:
    path = session.path("inputs")
    states.save(path, {"batches": batches, "x_train": ds.x_train, "y_train": ds.y_train, "x_test": ds.x_test,
                       "y_test": ds.y_test, **{f"sd/{k}": np.asarray(v) for k, v in sd.items()}})
    return path


# ---------------------------------------------------------------- trainers that run segments
class _Trainer(abc.ABC):
    """Runs segments (each from a given state, on given rows) in one dtype: losses and test outputs."""

    label: str

    @abc.abstractmethod
    def segments(self, dtype: str, items: list) -> tuple[list, list]:
        """(losses, test outputs) of each item's segment."""


class _InProcess(_Trainer):
    """A single-device side of `parity.training` (or conv_bn's) in this process, built per dtype."""

    def __init__(self, fw: str, cfg, kwargs, sd, ds, side_cls=None):
        self.fw, self.cfg, self.kwargs, self.sd, self.ds = fw, cfg, kwargs, sd, ds
        self.side_cls = side_cls or training.SIDES[fw]
        self.label, self._sides = f"{fw} on one device", {}

    def side(self, dtype: str):
        if dtype not in self._sides:
            self._sides[dtype] = self.side_cls(replace(self.cfg, dtype=dtype), self.kwargs, self.sd,
                                               self.ds.astype(dtype))
        return self._sides[dtype]

    def segments(self, dtype, items):
        with precision.policy("strict"), training.torch_threads(self.cfg.torch_threads if self.cfg.device == "cpu" else 0):
            s = self.side(dtype)
            losses, outputs = [], []
            for st, rows in items:
                s.load_state(st)
                losses.append(s.epoch(rows))
                outputs.append(s.test_outputs())
        return losses, outputs


class _Remote(_Trainer):
    """The data-parallel trainer of one framework in the session's worker processes."""

    def __init__(self, session: Session, fw: str, spec: dict, on_progress=None):
        self.session, self.fw, self.spec, self._on_progress = session, fw, spec, on_progress
        self.label = (f"torch DDP ({session.world} ranks)" if fw == "torch"
                      else f"JAX sharded ({session.world} devices)")

    def _progress(self, what: str, total: int):
        """on_progress(framework, what, step, total) for rank 0's progress messages."""
        if self._on_progress is None:
            return None
        return lambda r, msg: self._on_progress(self.fw, what, msg["step"], total) if r == 0 else None

    def _spec(self, dtype):
        return {**self.spec, "cfg": {**self.spec["cfg"], "dtype": dtype}}

    def free(self, steps_per_epoch: int, segment_steps: int | None) -> dict:
        out = self.session.path(f"{self.fw}-free")
        total = len(np.load(self.spec["inputs"])["batches"])
        reply = self.session.request(self.fw, {"cmd": "free", **self.spec, "steps_per_epoch": steps_per_epoch,
                                               "segment_steps": segment_steps, "out": out},
                                     self._progress("training", total))
        z = np.load(out)
        return {"losses": z["losses"], "test_outputs": z["test_outputs"], "epochs": json.loads(str(z["epochs"])),
                "states": states.unpack(z, "state"),
                "final": {k[6:]: z[k] for k in z.files if k.startswith("final/")},
                "seconds": reply[0]["seconds"], "first_step_seconds": reply[0]["first_step_seconds"]}

    def segments(self, dtype, items):
        seg = self.session.path(f"{self.fw}-segments-in")
        arrays = states.pack([st for st, _ in items], "state")
        arrays.update({f"rows/{i}": rows for i, (_, rows) in enumerate(items)})
        states.save(seg, arrays)
        out = self.session.path(f"{self.fw}-segments-out")
        what = "teacher forcing" if dtype == self.spec["cfg"]["dtype"] else f"{dtype} replay"
        self.session.request(self.fw, {"cmd": "segments", **self._spec(dtype), "segments": seg, "out": out},
                             self._progress(what, sum(len(rows) for _, rows in items)))
        z = np.load(out)
        return [z[f"losses/{i}"] for i in range(len(items))], [z[f"outputs/{i}"] for i in range(len(items))]


# ---------------------------------------------------------------- one comparison
@dataclass
class Comparison:
    """One of the three comparisons: `teacher` ran free with its states kept every `segment_steps`;
    `forced` restarted from them. `free_diff`: per-step |a − b| of the two free-running curves
    (informative); `verdict`, `accuracy`: `parity.curves`' rules."""

    name: str
    teacher: str
    forced: str
    verdict: curves.CurveVerdict
    accuracy: curves.AccuracyVerdict | None
    forced_losses: np.ndarray
    free_diff: np.ndarray
    replays: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.verdict.ok and (self.accuracy is None or self.accuracy.ok)

    def to_dict(self) -> dict:
        return {"name": self.name, "teacher": self.teacher, "forced": self.forced, "ok": self.ok,
                "loss_curve": self.verdict.to_dict(),
                "test_accuracy": self.accuracy.to_dict() if self.accuracy else None,
                "free_running_max_abs_diff": float(self.free_diff.max(initial=0.0)),
                "free_running_abs_diff": self.free_diff.tolist()}


def compare(name: str, teacher: _Trainer, teacher_free: dict, forced: _Trainer, batches: np.ndarray,
            dtype: str, y_test: np.ndarray | None, other_free: np.ndarray, segment_steps: int = SEGMENT_STEPS
            ) -> Comparison:
    """Teacher forcing of `forced` from `teacher`'s kept states, float64 replays of float32 segments
    beyond the bound (no more than could be excused, plus one), and the verdicts."""
    t_losses = np.asarray(teacher_free["losses"])
    slices = curves.segment_slices(len(t_losses), segment_steps)
    starts = teacher_free["states"]
    if len(starts) != len(slices):
        raise RuntimeError(f"{teacher.label} kept {len(starts)} states for {len(slices)} segments")
    f_losses, f_outputs = forced.segments(dtype, [(st, batches[sl]) for st, sl in zip(starts, slices)])
    f_all = np.concatenate(f_losses)
    replays = []
    if np.dtype(dtype) != np.float64:
        bad = [i for i, sl in enumerate(slices) if curves.needs_replay(t_losses[sl], f_all[sl], dtype)]
        bad = bad[:curves.excused_allowed(len(slices)) + 1]
        if bad:
            items = [(starts[i], batches[slices[i]]) for i in bad]
            tl, to = teacher.segments("float64", items)
            fl, fo = forced.segments("float64", items)
            replays = [curves.Replay(i, tl[j], fl[j], to[j], fo[j]) for j, i in enumerate(bad)]
    verdict = curves.curve_verdict(t_losses, f_all, segment_steps, dtype, replays)
    accuracy = None
    if y_test is not None:
        last = len(slices) - 1
        final = [r for r in replays if r.segment == last]
        if final and last in verdict.excused:
            accuracy = curves.accuracy_verdict(final[0].teacher_outputs, final[0].forced_outputs, y_test, "float64")
        else:
            accuracy = curves.accuracy_verdict(teacher_free["test_outputs"], f_outputs[-1], y_test, dtype)
    free_diff = np.abs(t_losses.astype(np.float64) - np.asarray(other_free, np.float64))
    return Comparison(name, teacher.label, forced.label, verdict, accuracy, f_all, free_diff, replays)


# ---------------------------------------------------------------- a whole data-parallel run
@dataclass
class DPRun:
    """A data-parallel run and its comparisons. `single`: the single-device `training.Run` (both
    frameworks' free-running curves and their own verdict); `losses[fw]`, `epochs[fw]`: the
    data-parallel free-running curves and per-epoch records; `comparisons`: "torch: ddp vs single",
    "jax: sharded vs single", "ddp: jax vs torch" (those whose frameworks ran)."""

    config: training.Config
    world: int
    model_kwargs: dict
    single: training.Run
    losses: dict = field(default_factory=dict)
    epochs: dict = field(default_factory=dict)
    final_weights: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    first_step_seconds: dict = field(default_factory=dict)
    comparisons: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.comparisons.values())

    def free_differences(self) -> dict[str, np.ndarray]:
        """Per-step |Δloss| of the free-running curves: each framework's data-parallel vs its
        single-device run, and data-parallel JAX vs data-parallel torch."""
        return {name: c.free_diff for name, c in self.comparisons.items()}

    def to_dict(self) -> dict:
        return {"world": self.world, "devices": self.config.device,
                "losses": {fw: v.tolist() for fw, v in self.losses.items()}, "epochs": self.epochs,
                "train_seconds_after_first_step": self.seconds,
                "first_step_seconds_with_compile": self.first_step_seconds,
                "comparisons": {k: c.to_dict() for k, c in self.comparisons.items()}}


NAMES = {"torch": "torch: ddp vs single", "jax": "jax: sharded vs single", "both": "ddp: jax vs torch"}


def train_data_parallel(cfg: training.Config, world: int, ds: data.Dataset | None = None,
                        session: Session | None = None, single: training.Run | None = None,
                        on_single_step=None, on_single_epoch=None, on_progress=None,
                        timeout: float = launch.TIMEOUT, segment_steps: int = SEGMENT_STEPS,
                        options: dict | None = None) -> DPRun:
    """Train cfg's model single-device and data-parallel over `world` ranks/devices in cfg's
    frameworks, and compare (module docstring). `session`: worker processes to reuse (else started
    here and ended on return, error or Ctrl-C); `single`: a finished single-device run of the same
    config to reuse. `on_progress(framework, what, step, total)` reports the workers' steps. ValueError for a bad N;
    DistributedError when a worker dies, hangs or fails (every worker ended). `options[fw]`: the
    data-parallel side's options ("per_device" for JAX, "sync_bn" for torch; "lr_scale", a planted
    defect for tests)."""
    cfg = cfg.resolved()
    ds = training.load_data(cfg, ds)
    kwargs = training.model_kwargs(cfg.model, ds)
    check_world(world, cfg.device, cfg.batch_size)
    if session is not None and (session.world != world or session.device != cfg.device):
        raise ValueError(f"the session runs {session.world} ranks on {session.device}, not {world} on {cfg.device}")
    sd = training.init_state_dict(training.build(cfg.model, kwargs, "torch", cfg.dtype),
                                  np.random.default_rng(cfg.seed))
    shuffler = data.Shuffler(len(ds.x_train), cfg.batch_size, seed=cfg.seed)
    batches = np.concatenate([shuffler.epoch() for _ in range(cfg.epochs)])
    own = session is None
    if own:
        session = Session(world, cfg.device, cfg.frameworks, timeout=timeout)
    try:
        session.start()  # the workers import torch and JAX while this process trains on one device
        spec = {"cfg": dataclasses.asdict(cfg), "kwargs": kwargs, "inputs": _inputs(session, sd, batches, ds),
                "options": {}, "data_name": ds.name}
        options = options or {}
        if single is None:
            single = training.train(cfg, ds, on_step=on_single_step, on_epoch=on_single_epoch)
        run = DPRun(cfg, world, kwargs, single)
        remote = {fw: _Remote(session, fw, {**spec, "options": options.get(fw, {})}, on_progress)
                  for fw in cfg.frameworks}
        free = {}
        for fw in sorted(cfg.frameworks, reverse=True):  # torch first: its states force JAX's
            free[fw] = remote[fw].free(shuffler.steps_per_epoch, segment_steps)
            run.losses[fw], run.epochs[fw] = free[fw]["losses"], free[fw]["epochs"]
            run.final_weights[fw] = free[fw]["final"]
            run.seconds[fw], run.first_step_seconds[fw] = free[fw]["seconds"], free[fw]["first_step_seconds"]
        y_test = ds.y_test if cfg.model != "linear_regression" else None
        for fw in sorted(cfg.frameworks, reverse=True):
            local = _InProcess(fw, cfg, kwargs, sd, ds)
            run.comparisons[NAMES[fw]] = compare(NAMES[fw], remote[fw], free[fw], local, batches, cfg.dtype,
                                                 y_test, single.losses[fw], segment_steps)
        if len(cfg.frameworks) == 2:
            run.comparisons[NAMES["both"]] = compare(NAMES["both"], remote["torch"], free["torch"], remote["jax"],
                                                     batches, cfg.dtype, y_test, free["jax"]["losses"],
                                                     segment_steps)
        return run
    finally:
        if own:
            session.close()


# ---------------------------------------------------------------- the BatchNorm case
def batchnorm_case(world: int = 2, steps: int = 20, dtype: str = "float64", optimizer: str = "sgd",
                   batch_size: int = 64, seed: int = 0, ds: data.Dataset | None = None,
                   session: Session | None = None, stock_bn: bool = False) -> dict:
    """conv → BatchNorm → ReLU → pool → linear (`models.TorchConvBN` / `JaxConvBN`) trained `steps`
    (<= 20: one segment, where free-running curves obey the curve bound directly) from the same
    weights on the same global batches, seven ways: on one device in each framework; torch DDP with
    BatchNorm's per-rank statistics and with global ones (`models.sync_batchnorm`); JAX sharded
    (global statistics, as XLA computes the batch mean of a sharded batch) and JAX per device
    (`shard_map`, DDP's arithmetic). Returns the per-step losses, each run's largest drift from its
    reference in ulps of (1 + |loss|) with the verdict against the curve bound, and the final
    running statistics."""
    if steps > SEGMENT_STEPS:
        raise ValueError(f"the BatchNorm case runs one segment (<= {SEGMENT_STEPS} steps), got {steps}")
    ds = (ds if ds is not None else data.load_digits(seed=seed)).astype(dtype)
    check_world(world, "cpu", batch_size)
    kwargs = models.conv_bn_kwargs(ds, stock_bn=stock_bn)
    cfg = replace(training.Config(optimizer=optimizer, data=ds.name, batch_size=batch_size, epochs=1,
                                  dtype=dtype, seed=seed).resolved(), model="conv_bn")
    sd = models.init_state_dict("conv_bn", models.build_torch("conv_bn", kwargs, dtype), np.random.default_rng(seed))
    batches = data.Shuffler(len(ds.x_train), batch_size, seed=seed).epoch()[:steps]
    from parity.distributed import sides
    single = {}
    with precision.policy("strict"), training.torch_threads(1):
        for fw, cls in (("torch", sides.SingleTorchSide), ("jax", sides.SingleJaxSide)):
            s = cls(cfg, kwargs, sd, ds)
            single[fw] = {"losses": s.epoch(batches), "weights": s.weights()}
    own = session is None
    if own:
        session = Session(world, "cpu")
    runs = {}
    try:
        session.start()
        inputs = _inputs(session, sd, batches, ds)
        for label, fw, options in (
                ("torch DDP, per-rank BatchNorm", "torch", {}),
                ("torch DDP, global BatchNorm (SyncBatchNorm arithmetic)", "torch", {"sync_bn": True}),
                ("JAX sharded, global BatchNorm", "jax", {}),
                ("JAX per device (shard_map), per-device BatchNorm", "jax", {"per_device": True})):
            out = session.path("bn")
            session.request(fw, {"cmd": "free", "cfg": dataclasses.asdict(cfg), "kwargs": kwargs, "inputs": inputs,
                                 "options": options, "steps_per_epoch": steps, "segment_steps": None, "out": out})
            z = np.load(out)
            runs[label] = {"losses": z["losses"], "weights": {k[6:]: z[k] for k in z.files if k.startswith("final/")}}
    finally:
        if own:
            session.close()
    runs = {"torch on one device": single["torch"], "JAX on one device": single["jax"], **runs}
    bound = curves.ulps_of(training_curve(dtype), dtype)
    ref = {"torch on one device": "JAX on one device",
           "torch DDP, per-rank BatchNorm": "torch on one device",
           "torch DDP, global BatchNorm (SyncBatchNorm arithmetic)": "torch on one device",
           "JAX sharded, global BatchNorm": "JAX on one device",
           "JAX per device (shard_map), per-device BatchNorm": "torch DDP, per-rank BatchNorm"}
    rows = []
    for label, other in ref.items():
        a, b = runs[label]["losses"], runs[other]["losses"]
        d = curves.drift(b, a, dtype)
        rows.append({"run": label, "against": other, "max_abs_diff": float(np.abs(np.asarray(a, np.float64) - b).max()),
                     "worst_ulps": float(d.max()), "bound_ulps": bound, "agree": bool(d.max() <= bound),
                     "running_var_max_abs_diff": float(np.abs(runs[label]["weights"]["bn.running_var"]
                                                              - runs[other]["weights"]["bn.running_var"]).max())})
    return {"dtype": dtype, "steps": steps, "world": world, "batch_size": batch_size, "optimizer": optimizer,
            "rows": rows, "losses": {k: np.asarray(v["losses"]).tolist() for k, v in runs.items()}}
