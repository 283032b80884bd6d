"""Running the report's concepts: once each per dtype, in worker processes, with JAX's compilation cache.

The comparisons are `parity.runner.run_concept` exactly; what changes is only where and how fast:
  * `jobs` worker processes (spawned, never forked: JAX is multithreaded) share the work, each with
    `torch.set_num_threads(cores // jobs)` so that they do not oversubscribe the cores;
  * JAX's persistent compilation cache (`cache_dir`) keeps the compiled XLA programs between runs.
    Most of a concept's time is XLA compiling its jitted forward and gradient; a cached program is
    the same program, loaded instead of compiled (the cache key covers the program, the compile
    options and the jax/jaxlib versions), so the numbers are the same and a second report is ~3×
    faster.
"""
from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from pathlib import Path

# Longest tasks first (so that the last ones to finish are short and no worker waits long alone):
# a task costs about one XLA compile per sample; a sample of a whole model or training run compiles
# a larger program (measured: ~0.5 s per cross_entropy sample, 1.7 s for models.small_cnn's one).
_HEAVY_SAMPLE = {"train": 4, "models": 4}


def _cost(concept, dtype: str) -> int:
    import numpy as np
    try:
        n = len(concept.samples(np.random.default_rng(0), np.dtype(dtype)))
    except Exception:  # the run itself reports it
        n = 1
    return max(n, 1) * _HEAVY_SAMPLE.get(concept.group, 1)


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "twin-dl-parity" / "jax-compilation-cache"


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_jobs() -> int:
    return max(1, min(cores(), 4))


def enable_compilation_cache(cache_dir: str | os.PathLike | None) -> None:
    """Point JAX's persistent compilation cache at `cache_dir` and cache every program (the default
    keeps only programs that took a second to compile; most of ours take a fifth of that)."""
    if not cache_dir:
        return
    import jax  # the folder is created by JAX at the first compile (a bad command line writes nothing)
    jax.config.update("jax_compilation_cache_dir", str(cache_dir))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def _init_worker(cache_dir, threads: int) -> None:
    import warnings
    warnings.filterwarnings("ignore", category=UserWarning)  # a worker has no console: warnings are noise
    enable_compilation_cache(cache_dir)
    import torch
    torch.set_num_threads(threads)
    from parity import registry, runner  # noqa: F401  (imported once per worker, before the first task)


def _run_task(task):
    name, dtype, device, mode = task
    from parity import registry, runner
    return runner.run_concept(registry.get(name), dtype, device, mode)


def _run_pair(task):
    return task, _run_task(task)


class Workers:
    """The worker processes, started before the caller imports the frameworks itself, so that the
    workers' start-up (importing JAX, torch and every concept: ~3 s each) overlaps the caller's.
    A context manager: leaving it ends the workers (terminated on an error or Ctrl-C)."""

    def __init__(self, jobs: int, cache_dir: str | os.PathLike | None = None):
        self.jobs, self.cache_dir, self.pool = jobs, cache_dir, None
        if jobs > 1:
            ctx = multiprocessing.get_context("spawn")
            self.pool = ctx.Pool(jobs, initializer=_init_worker, initargs=(cache_dir, max(1, cores() // jobs)))

    def __enter__(self) -> "Workers":
        return self

    def __exit__(self, kind, *_) -> None:
        if self.pool is not None:
            (self.pool.close if kind is None else self.pool.terminate)()
            self.pool.join()


def run(concepts, dtypes, device: str = "cpu", mode: str = "strict", jobs: int = 1,
        cache_dir: str | os.PathLike | None = None,
        on_result: Callable | None = None, reuse: dict | None = None, workers: Workers | None = None) -> list:
    """Every concept in every dtype, as `runner.Result`s in dtype-major, concept order.

    `reuse` maps (concept, dtype) to a Result already at hand (read from a results file): those are
    not run again. `on_result(result)` is called as each one finishes (for a progress bar). Ctrl-C
    stops the workers and raises KeyboardInterrupt. `workers`: processes already started (their
    jobs and cache replace `jobs` and `cache_dir`); else they are started here when jobs > 1.
    """
    every = [(c.name, dt, device, mode) for dt in dict.fromkeys(dtypes) for c in concepts]
    reuse = reuse or {}
    if workers is None:
        left = sum(t[:2] not in reuse for t in every)
        with Workers(jobs if left > 1 else 1, cache_dir) as w:
            return run(concepts, dtypes, device, mode, on_result=on_result, reuse=reuse, workers=w)
    results = {t: reuse[t[:2]] for t in every if t[:2] in reuse}
    for r in results.values():
        if on_result:
            on_result(r)
    tasks = [t for t in every if t not in results]
    by_name = {c.name: c for c in concepts}
    if tasks and (workers.pool is None or len(tasks) <= 1):
        enable_compilation_cache(workers.cache_dir)
        for t in tasks:
            results[t] = _run_task(t)
            if on_result:
                on_result(results[t])
    elif tasks:
        ordered = sorted(tasks, key=lambda t: -_cost(by_name[t[0]], t[1]))
        for t, r in workers.pool.imap_unordered(_run_pair, ordered, chunksize=1):
            results[t] = r
            if on_result:
                on_result(r)
    return [results[t] for t in every]
