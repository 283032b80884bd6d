"""Timing: the first call (compile) on its own, warm-up, then steady-state samples with statistics.

One sample times `number` back-to-back calls and synchronises once at the end (calls pipeline as
they do in a training loop); `number` is calibrated so a sample lasts at least `min_sample_s`.
Every wait for the device goes through `sync`, so tests can check that it is called.
"""
from __future__ import annotations

import contextlib
import gc
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import jax
import numpy as np
import torch

from benchmarks.modes import MODES, Settings  # noqa: F401  (Settings re-exported)

SPEEDUPS = {"jit×": ("jax-eager", "jax-jit"), "compile×": ("torch-eager", "torch-compile")}


def modes_for(kind: str, device: str) -> list[str]:
    """The modes that apply to a workload kind ("op" or "train") on a device, in MODES order."""
    skip = set() if kind == "train" else {"jax-scan", "torch-graph"}
    if device != "cuda":
        skip |= {"torch-compile-ro", "torch-graph"}
    return [m for m in MODES if m not in skip]


clock = time.perf_counter  # a test may replace it with a fake clock


@dataclass
class Runner:
    """One mode of one workload at one size, ready to time: `call()` does `steps` units of work."""

    call: Callable[[], Any]
    framework: str  # "jax" or "torch": which wait `sync` uses
    steps: int = 1
    context: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext


@dataclass
class Timing:
    """The first call's seconds (with compilation), then steady-state seconds per step."""

    first_call_s: float
    samples_s: list[float] = field(default_factory=list)
    number: int = 1
    steps: int = 1

    def stats(self) -> dict:
        s = np.asarray(self.samples_s)
        q25, med, q75 = np.percentile(s, [25, 50, 75])
        return {"first_call_s": self.first_call_s, "compile_s": max(self.first_call_s - med * self.steps, 0.0),
                "median_s": med, "min_s": s.min(), "max_s": s.max(), "q25_s": q25, "q75_s": q75,
                "iqr_s": q75 - q25, "spread": (q75 - q25) / med if med > 0 else 0.0,
                "repeats": len(s), "number": self.number, "steps": self.steps,
                "samples_s": [float(f"{x:.4g}") for x in s]}


def sync(out, framework: str, device: str) -> None:
    """Wait until `out` is computed: jax.block_until_ready, or torch.cuda.synchronize on CUDA."""
    if framework == "jax":
        jax.block_until_ready(out)
    elif device == "cuda":
        torch.cuda.synchronize()


def _timed(runner: Runner, device: str, number: int) -> float:
    t0 = clock()
    for _ in range(number):
        out = runner.call()
    sync(out, runner.framework, device)
    return clock() - t0


def measure(runner: Runner, device: str, settings: Settings = Settings()) -> Timing:
    """Time one runner alone: first call (with compilation), warm-up, calibration, samples."""
    t = _prepare(runner, device, settings)
    with runner.context(), _no_gc():
        start = clock()
        while len(t.samples_s) < settings.repeats:
            t.samples_s.append(_timed(runner, device, t.number) / (t.number * runner.steps))
            if len(t.samples_s) >= settings.min_repeats and clock() - start > settings.max_time_s:
                break
    return t


def _prepare(runner: Runner, device: str, settings: Settings) -> Timing:
    """First call (with compilation) alone, a bounded warm-up, then the calls per sample.

    The calls per sample are calibrated on the fastest warm-up call, and at least two warm-up calls
    run (when `warmup` asks for two): a second compilation (a step whose outputs differ in type or
    placement from its first inputs) must not pass for the steady state and leave one call per sample.
    """
    with runner.context():
        first = _timed(runner, device, 1)
        one, start = first, clock()
        for k in range(settings.warmup):  # a slow mode (JAX op by op) warms up for a bounded time
            one = min(one, _timed(runner, device, 1)) if k else _timed(runner, device, 1)
            if k >= 1 and clock() - start > settings.max_time_s / 4:
                break
    number = max(1, min(10_000, math.ceil(settings.min_sample_s / max(one, 1e-9))))
    return Timing(first, number=number, steps=runner.steps)


def measure_interleaved(runners: dict[str, Runner], device: str, settings: Settings = Settings()
                        ) -> dict[str, Timing | Exception]:
    """Time several modes of one workload round-robin: one sample of each mode per round, in an order
    shuffled every round (seeded), so a slow minute of a noisy machine lands on every mode alike instead
    of on whichever mode was being timed then (as torch.utils.benchmark users interleave by hand).
    Shuffled, not rotated: with a rotation each mode always follows the same neighbour, whose cache
    and thread-pool state it inherits (a fixed bias of up to 30 % was measured between three modes).

    A mode whose first call raises is returned as its exception; the others go on. Sample k of every
    mode comes from the same round, which `paired_ratio` uses.
    """
    timings: dict[str, Timing | Exception] = {}
    for mode, r in runners.items():
        try:
            timings[mode] = _prepare(r, device, settings)
        except Exception as e:  # recorded per mode, never fatal
            timings[mode] = e
    live = [m for m in runners if isinstance(timings[m], Timing)]
    budget = settings.max_time_s * max(len(live), 1)
    order = np.random.default_rng(0)
    with _no_gc():
        start = clock()
        for k in range(settings.repeats):
            for mode in [live[i] for i in order.permutation(len(live))]:
                r, t = runners[mode], timings[mode]
                try:
                    with r.context():
                        t.samples_s.append(_timed(r, device, t.number) / (t.number * r.steps))
                except Exception as e:
                    timings[mode] = e
            live = [m for m in live if isinstance(timings[m], Timing)]
            if k + 1 >= settings.min_repeats and clock() - start > budget:
                break
    return timings


def paired_ratio(a: Timing, b: Timing, resamples: int = 2000, seed: int = 0) -> dict:
    """Median of the per-round ratios a/b (samples of one round share the machine's state), with a
    95 % bootstrap confidence interval over rounds."""
    n = min(len(a.samples_s), len(b.samples_s))
    r = np.asarray(a.samples_s[:n]) / np.asarray(b.samples_s[:n])
    boot = np.median(r[np.random.default_rng(seed).integers(0, n, (resamples, n))], axis=1)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return {"ratio": float(np.median(r)), "ci_low": float(lo), "ci_high": float(hi), "rounds": n}


@contextlib.contextmanager
def _no_gc():
    """Python's garbage collector off while sampling, after one full collection, as `timeit` does:
    a collection pass over the heap that compilation leaves behind would land inside one sample."""
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# ---------------------------------------------------------------- building runners for the modes
def op_runners(jax_fn, jax_args: tuple, torch_fn, torch_args: tuple, device: str) -> dict:
    """Mode → factory of a Runner, for a pure function given in both frameworks."""
    def compiled(mode):
        torch.compiler.reset()  # a fresh cache: the first call shows the whole compilation
        f = torch.compile(torch_fn, mode=mode, dynamic=False)
        return Runner(lambda: f(*torch_args), "torch", context=torch.inference_mode)

    jitted = jax.jit(jax_fn)
    out = {
        "jax-jit": lambda: Runner(lambda: jitted(*jax_args), "jax"),
        "jax-eager": lambda: Runner(lambda: jax_fn(*jax_args), "jax", context=jax.disable_jit),
        "torch-eager": lambda: Runner(lambda: torch_fn(*torch_args), "torch", context=torch.inference_mode),
        "torch-compile": lambda: compiled(None),
    }
    if device == "cuda":
        out["torch-compile-ro"] = lambda: compiled("reduce-overhead")
    return out
