"""Running concepts (`parity check`, `parity report`): once each per dtype, in worker processes, with
JAX's compilation cache.

The comparisons are `parity.runner.run_concept` exactly; what changes is only where and how fast:
  * `jobs` processes share the work: the calling process and `jobs - 1` workers (spawned, never
    forked: JAX is multithreaded), each with `torch.set_num_threads(cores // jobs)` so that they do
    not oversubscribe the cores. The caller imports the frameworks anyway (to write the pages), so
    it runs concepts too instead of paying for one more process's imports;
  * JAX's persistent compilation cache (`cache_dir`) keeps the compiled XLA programs between runs.
    Most of a concept's time is XLA compiling its jitted forward and gradient; a cached program is
    the same program, loaded instead of compiled (the cache key covers the program, the compile
    options and the jax/jaxlib versions), so the numbers are the same and a second report is ~3×
    faster.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path

# Longest tasks first (so that the last ones to finish are short and no process waits long alone).
# A concept compiles one XLA program holding all its samples: measured, a task takes about
# 0.15 s + 0.07 s per sample, and a whole model or training run about 1–1.6 s (15 samples' worth).
_HEAVY_SAMPLE = {"train": 15, "models": 15}


def _cost(concept, dtype: str) -> int:
    import numpy as np

    from parity.concept import np_dtype
    try:
        n = len(concept.at(dtype).samples(np.random.default_rng(0), np_dtype(dtype)))
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


@contextlib.contextmanager
def compilation_cache(cache_dir):
    """JAX's persistent compilation cache in `cache_dir` for the block (every program cached), and
    JAX's settings as they were afterwards (a process that goes on, a test suite, keeps its own);
    nothing when `cache_dir` is None."""
    if cache_dir is None:
        yield
        return
    import jax
    from jax.experimental.compilation_cache import compilation_cache as jax_cache
    names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
             "jax_persistent_cache_min_entry_size_bytes")
    old = {n: getattr(jax.config, n) for n in names}
    jax_cache.reset_cache()  # JAX reads the folder once: from here on, this one
    enable_compilation_cache(cache_dir)
    try:
        yield
    finally:
        for n, v in old.items():
            jax.config.update(n, v)
        jax_cache.reset_cache()


def _init_worker(cache_dir, threads: int) -> None:
    import gc
    import signal
    import warnings
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as `Workers` starts them; also one the pool restarts later
    warnings.filterwarnings("ignore", category=UserWarning)  # a worker has no console: warnings are noise
    enable_compilation_cache(cache_dir)
    import torch
    torch.set_num_threads(threads)
    from parity import registry, runner  # noqa: F401  (imported once per worker, before the first task)
    gc.freeze()  # the frameworks' objects live as long as the worker: no collection walks them again


def _run_task(task):
    name, dtype, device, mode = task
    from parity import registry, runner
    return runner.run_concept(registry.get(name), dtype, device, mode)


def _run_pair(task):
    return task, _run_task(task)


class Workers:
    """The `jobs - 1` worker processes beside the caller (none for jobs=1), started before the caller
    imports the frameworks itself, so that their start-up (importing JAX, torch and every concept:
    ~3 s each) overlaps the caller's. A context manager: leaving it ends the workers (terminated on an
    error, Ctrl-C or SIGTERM; the pool's semaphores released).

    The workers ignore Ctrl-C: the terminal sends it to every process of the job, and a worker that
    died of it mid-task would print a traceback and be replaced by the pool; the caller decides when
    they end (`run`'s `check`), and ends them with SIGTERM."""

    def __init__(self, jobs: int, cache_dir: str | os.PathLike | None = None):
        self.jobs, self.cache_dir, self.pool = jobs, cache_dir, None
        self.threads = max(1, cores() // jobs)
        if jobs > 1:
            ctx = multiprocessing.get_context("spawn")
            with _sigint_ignored_by_children():
                self.pool = ctx.Pool(jobs - 1, initializer=_init_worker, initargs=(cache_dir, self.threads))

    def __enter__(self) -> "Workers":
        return self

    def __exit__(self, kind, *_) -> None:
        if self.pool is not None:
            pool, self.pool = self.pool, None
            (pool.close if kind is None else pool.terminate)()
            pool.join()


@contextlib.contextmanager
def _sigint_ignored_by_children():
    """Processes started in the block ignore SIGINT from their first instruction (an ignored signal
    stays ignored across exec, and Python keeps it so), where `_init_worker` would leave a window
    while the worker starts. This process's own Ctrl-C meanwhile waits (blocked, so not lost) and
    is delivered after the block. Only the main thread can change signal handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    from multiprocessing import resource_tracker
    resource_tracker.ensure_running()  # started later, it would unblock SIGINT here (and lose it)
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def run(concepts, dtypes, device: str = "cpu", mode: str = "strict", jobs: int = 1,
        cache_dir: str | os.PathLike | None = None,
        on_result: Callable | None = None, reuse: dict | None = None, workers: Workers | None = None,
        check: Callable | None = None) -> list:
    """Every concept in each of `dtypes` it declares (`runner.runs`), as `runner.Result`s in dtype-major,
    concept order.

    `reuse` maps (concept, dtype) to a Result already at hand (read from a results file): those are
    not run again. `on_result(result)` is called as each one finishes (for a progress bar), always in
    the calling thread. `check()` is called in the calling thread before each task this process
    runs and at least every 0.2 s while it waits for the workers: it may raise KeyboardInterrupt to
    stop the run between tasks (`parity.cli.Interrupts.check`). A KeyboardInterrupt, from it or from
    Ctrl-C, ends the workers and propagates. `workers`: processes already started (their jobs and
    cache replace `jobs` and `cache_dir`); else they are started here when jobs > 1.
    """
    every = [(c.name, dt, device, mode) for dt in dict.fromkeys(dtypes) for c in concepts if dt in c.dtypes]
    reuse = reuse or {}
    if workers is None:
        left = sum(t[:2] not in reuse for t in every)
        with Workers(jobs if left > 1 else 1, cache_dir) as w:
            return run(concepts, dtypes, device, mode, on_result=on_result, reuse=reuse, workers=w, check=check)
    results = {t: reuse[t[:2]] for t in every if t[:2] in reuse}
    for r in results.values():
        if on_result:
            on_result(r)
    by_name = {c.name: c for c in concepts}
    tasks = [t for t in every if t not in results]  # alone, in the order asked; shared, longest first
    if workers.pool is not None and len(tasks) > 1:
        tasks.sort(key=lambda t: -_cost(by_name[t[0]], t[1]))
    enable_compilation_cache(workers.cache_dir)

    def record(t, r):
        results[t] = r
        if on_result:
            on_result(r)

    check = check or (lambda: None)
    if workers.pool is None or len(tasks) <= 1:
        for t in tasks:
            check()
            record(t, _run_task(t))
    else:
        _share(tasks, workers, record, check)
    return [results[t] for t in every]


def _share(tasks, workers: Workers, record: Callable, check: Callable) -> None:
    """Run `tasks` (longest first) in this process and in the workers: each takes the next task
    when it becomes free. The workers' results are recorded here, between this process's tasks."""
    import gc
    import queue
    import threading
    import warnings

    import torch
    pending, lock, finished = list(reversed(tasks)), threading.Lock(), queue.Queue()
    left = len(tasks)

    def take():
        with lock:
            return pending.pop() if pending else None

    def feed():  # a worker is free (called again from the pool's result thread as each task ends)
        t = take()
        if t is not None:
            workers.pool.apply_async(_run_pair, (t,), callback=lambda tr: (finished.put(tr), feed()),
                                     error_callback=finished.put)

    def done(t, r):
        nonlocal left
        record(t, r)
        left -= 1

    def collect(wait: float | None) -> None:  # the workers' results so far (waiting up to `wait` s for one)
        try:
            item = finished.get(timeout=wait) if wait else finished.get_nowait()
            while True:
                if isinstance(item, BaseException):
                    raise item
                done(*item)
                item = finished.get_nowait()
        except queue.Empty:
            pass

    for _ in range(workers.jobs - 1):
        feed()
    threads = torch.get_num_threads()
    torch.set_num_threads(workers.threads)
    gc.freeze()  # as in the workers: the objects imported so far are not walked by each collection
    try:
        with warnings.catch_warnings():  # the workers drop warnings too: they would break the progress bar
            warnings.simplefilter("ignore", UserWarning)
            while True:
                check()
                if (t := take()) is None:
                    break
                done(t, _run_task(t))
                collect(None)
        while left:  # the workers' last tasks (a short timeout keeps Ctrl-C responsive)
            check()
            collect(0.2)
    finally:
        gc.unfreeze()
        torch.set_num_threads(threads)
