"""Timing data-parallel training steps for `parity bench dp.<model>.<optimizer>` (benchmarks/workloads.py).

The bench harness times a `Runner` whose `call()` does `steps` steps in this process. A
data-parallel step runs in N other processes, so here `call()` sends "run k steps" to every worker
of a cached group (torch: N DDP ranks; JAX: one process over N devices) and returns when all have
finished them: the harness's clock brackets the whole data-parallel step, the slowest rank
included, plus one pipe round trip per call (~0.1 ms on the CPU; k steps per call make it
negligible). Each worker runs its steps synchronously (torch: every step ends with DDP's
all-reduce; JAX: `block_until_ready` after the k steps), so no work is left in flight.

Weak scaling: every rank/device gets the same per-device batch (64 MNIST-sized images), so N
devices do N times the work of one; `scaling(results)` reads a bench JSON and gives, per
workload and mode, the time per step at each N, the throughput (examples/s) and the scaling
efficiency t(1) / t(N) (1 = perfect: N devices take as long for N batches as one device for one).

Worker groups are started on first use (their start-up is outside every timing) and kept for the
rest of the bench run: they end at interpreter exit, on the first error or Ctrl-C inside a timed
sample (`guard`), or on `close_all()`. Each worker keeps the steps of one workload (one per mode,
since the harness interleaves the modes of a workload round-robin) and runs them with Python's
garbage collector off, as the harness times in-process steps.
"""
from __future__ import annotations

import atexit
import contextlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

PER_DEVICE_BATCH = 64
STEPS_PER_CALL = 10
_GROUPS: dict = {}
_DIR: list[str] = []


def _job_dir() -> Path:
    if not _DIR:
        _DIR.append(tempfile.mkdtemp(prefix="parity-dp-bench-"))
    return Path(_DIR[0])


def group(fw: str, world: int, device: str):
    """The started worker group of `fw` over `world` ranks/devices (cached for the run)."""
    from parity.distributed import compare, launch
    compare.check_world(world, device)
    key = (fw, world, device)
    g = _GROUPS.get(key)
    if g is None or g.closed:
        if not _GROUPS:
            atexit.register(close_all)
        # every torch.compile compiles from scratch, as `parity bench` has it in-process (suite.cold_compile)
        g = _GROUPS[key] = launch.Group(fw, world, device, _job_dir() / f"{fw}-{world}",
                                        env={"TORCHINDUCTOR_FORCE_DISABLE_CACHES": "1"}).start()
    return g


def close_all() -> None:
    """End every cached worker group and remove their folder."""
    for g in list(_GROUPS.values()):
        g.close()
    _GROUPS.clear()
    for d in _DIR:
        shutil.rmtree(d, ignore_errors=True)
    _DIR.clear()


def prepare(fw: str, world: int, device: str, spec: dict) -> tuple:
    """Start (or reuse) the group and build the step of `spec` in every worker, under a key of its
    own (the harness interleaves a workload's modes, so a worker holds one step per mode); what
    `steps` takes. Nothing here is timed; the harness's first call includes the compilation."""
    g = group(fw, world, device)
    key = f"{fw}-{spec.get('mode')}"
    g.request({"cmd": "bench_prepare", "key": key, "spec": spec})
    return g, key


@contextlib.contextmanager
def guard():
    """The context of every timed sample: if anything fails or is interrupted inside, every worker
    group ends now (not at interpreter exit)."""
    try:
        yield
    except BaseException:
        close_all()
        raise


def steps(g, key: str, k: int) -> float:
    """Run k steps of the step under `key` in every worker of `g`; the slowest worker's own seconds."""
    return max(r["seconds"] for r in g.request({"cmd": "bench_steps", "key": key, "steps": k}))


# ---------------------------------------------------------------- inside a worker
def build_steps(worker, model: str, kwargs: dict, optimizer: str, hyper: dict, dtype: str, mode: str,
            image: list, classes: int, per_device_batch: int = PER_DEVICE_BATCH, seed: int = 0):
    """The step to time in this worker: a function(k) running k data-parallel steps on a fixed batch."""
    from parity import training
    rng = np.random.default_rng(seed)
    sd = training.init_state_dict(training.build(model, kwargs, "torch", dtype), rng)
    if worker.role == "torch":
        return _torch_steps(worker, model, kwargs, sd, optimizer, hyper, dtype, mode, image, classes,
                            per_device_batch, seed)
    return _jax_steps(worker, model, kwargs, sd, optimizer, hyper, dtype, mode, image, classes,
                      per_device_batch, seed)


def _torch_steps(worker, model, kwargs, sd, optimizer, hyper, dtype, mode, image, classes, b, seed):
    import torch
    import torch.nn.functional as F

    import torch_impl as T
    from parity import precision, training
    from parity.distributed.sides import DDPTrainer
    dev = precision.torch_device(worker.device)
    rng = np.random.default_rng(seed + 1 + worker.rank)  # each rank its own shard
    x = torch.as_tensor(rng.random((b, *image)).astype(dtype), device=dev)
    y = torch.as_tensor(rng.integers(0, classes, b), device=dev)
    m = training.build(model, kwargs, "torch", dtype, sd).to(dev)
    tr = DDPTrainer(m, T.optim.from_library(optimizer, **hyper), F.cross_entropy,
                    device_ids=[dev.index or 0] if dev.type == "cuda" else None)
    if mode in ("compile", "compile-ro"):  # torch's advice for DDP: compile the wrapped model
        torch.compiler.reset()  # a fresh cache: the first call shows the whole compilation (lazy: no
        # other mode's compiled step is lost, since every mode is built before any is first called)
        tr.ddp = torch.compile(tr.ddp, mode="reduce-overhead" if mode == "compile-ro" else None)
    elif mode != "eager":
        raise ValueError(f"torch data-parallel mode must be eager, compile or compile-ro, got {mode!r}")

    def run(k):
        for _ in range(k):
            loss = tr.step(x, y)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return loss
    return run


def _jax_steps(worker, model, kwargs, sd, optimizer, hyper, dtype, mode, image, classes, b, seed):
    import jax
    from jax.sharding import NamedSharding, PartitionSpec as P

    import jax_impl as J
    from parity import convert, training
    from parity.distributed.sides import AXIS, mesh_of
    mesh = mesh_of(worker.world, worker.device)
    rep, sh = NamedSharding(mesh, P()), NamedSharding(mesh, P(AXIS))
    xs, ys = [], []
    for r in range(worker.world):  # device r gets what rank r gets in torch
        rng = np.random.default_rng(seed + 1 + r)
        xs.append(rng.random((b, *image)).astype(dtype))
        ys.append(rng.integers(0, classes, b))
    x = jax.device_put(convert.nchw_to_nhwc(np.concatenate(xs)), sh)
    y = jax.device_put(np.concatenate(ys), sh)
    tr = J.train.Trainer(training.build(model, kwargs, "jax", dtype, sd), J.optim.from_library(optimizer, **hyper),
                         J.losses.cross_entropy)
    box = {"state": jax.device_put(tr.state, rep)}
    step_fn = tr.step_fn
    if mode == "jit":
        f = jax.jit(lambda st, x, y: step_fn(st, x, y, None), in_shardings=(rep, sh, sh),
                    out_shardings=(rep, rep), donate_argnums=0)
        context = contextlib.nullcontext
    elif mode == "eager":
        def f(st, x, y):
            return step_fn(st, x, y, None)
        context = jax.disable_jit
    else:
        raise ValueError(f"JAX data-parallel mode must be jit or eager, got {mode!r}")

    def run(k):
        with context():
            for _ in range(k):
                box["state"], loss = f(box["state"], x, y)
        jax.block_until_ready(loss)
        return loss
    return run


# ---------------------------------------------------------------- scaling from a bench JSON
def scaling(results: list[dict]) -> list[dict]:
    """Per data-parallel workload and mode: time per step, examples/s and efficiency t(1)/t(N) for
    each N measured (first run; N = 1 must be among them for the efficiency)."""
    by: dict = {}
    for r in results:
        if r.get("run", 0) == 0 and not r.get("error") and r.get("size_name") == "ranks":
            by.setdefault((r["workload"], r["mode"]), {})[r["size"]] = r["median_s"]
    out = []
    for (w, mode), t in sorted(by.items()):
        for n in sorted(t):
            out.append({"workload": w, "mode": mode, "n": n, "seconds_per_step": t[n],
                        "examples_per_s": n * PER_DEVICE_BATCH / t[n],
                        "efficiency": t[1] / t[n] if 1 in t else float("nan")})
    return out


def main(argv=None) -> int:
    """`python -m parity.distributed.timing bench-out/bench-cpu.json`: the scaling table."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m parity.distributed.timing BENCH_JSON", file=sys.stderr)
        return 2
    try:
        doc = json.loads(Path(argv[0]).read_text())
    except (OSError, ValueError) as e:
        print(f"parity.distributed.timing: error: {argv[0]}: {e}", file=sys.stderr)
        return 2
    rows = scaling(doc.get("results", []))
    if not rows:
        print("no data-parallel results (workloads dp.*) in this file")
        return 1
    print(f"{'workload':24s} {'mode':14s} {'N':>3s} {'ms/step':>9s} {'examples/s':>11s} {'efficiency':>10s}")
    for r in rows:
        print(f"{r['workload']:24s} {r['mode']:14s} {r['n']:3d} {1e3 * r['seconds_per_step']:9.3f} "
              f"{r['examples_per_s']:11.0f} {r['efficiency']:10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
