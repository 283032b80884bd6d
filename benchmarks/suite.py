"""A benchmark run: plan (workload × size × mode), measure, summarise repeatability, and render
the table and Markdown. The `parity bench` command (parity/commands/bench.py) drives it."""
from __future__ import annotations

import contextlib
import logging
import os
import warnings

import numpy as np
from rich import box
from rich.table import Table

from benchmarks import harness
from parity import report

SCHEMA = "parity-bench/1"


def plan(ws, modes, sizes, device: str, full: bool) -> list[tuple]:
    """Every (workload, size, mode) to measure, in order."""
    return [(w, n, m) for w in ws for n in (sizes or w.sweep(device, full))
            for m in harness.modes_for(w.kind, device) if not modes or m in modes]


REFERENCE = "torch-eager"  # every workload has it: each mode's time is also given as a ratio to it


def run(items: list[tuple], device: str, dtype: str, settings: harness.Settings,
        run_index: int = 0, progress=None) -> list[dict]:
    """Measure every planned item, the modes of one workload and size interleaved round-robin
    (harness.measure_interleaved); a mode that raises is recorded with its error, never fatal."""
    groups: dict[tuple, list[str]] = {}
    for w, n, mode in items:
        groups.setdefault((w, n), []).append(mode)
    out = []
    itemsize = np.dtype(dtype).itemsize
    for (w, n), modes in groups.items():
        flops, nbytes = w.count(n, itemsize)
        built = w.build(n, device, dtype)  # one set of inputs per workload and size, shared by its modes
        runners, errors = {}, {}
        for mode in modes:
            try:
                runners[mode] = built[mode]()
            except Exception as e:  # torch.compile and friends can fail on a platform; say so and go on
                errors[mode] = e
        timings = {**harness.measure_interleaved(runners, device, settings), **errors}
        ref = timings.get(REFERENCE)
        for mode in modes:
            rec = {"workload": w.name, "kind": w.kind, "size_name": w.size_name, "size": n, "mode": mode,
                   "run": run_index, "flops": flops, "bytes": nbytes, "error": ""}
            t = timings[mode]
            if isinstance(t, Exception):
                rec["error"] = f"{type(t).__name__}: {str(t).splitlines()[0] if str(t) else ''}"
            else:
                rec.update(t.stats())
                rec["gflop_s"] = flops / rec["median_s"] / 1e9
                rec["gbyte_s"] = nbytes / rec["median_s"] / 1e9
                if isinstance(ref, harness.Timing) and mode != REFERENCE:
                    rec["vs_" + REFERENCE.replace("-", "_")] = harness.paired_ratio(t, ref)
            out.append(rec)
            if progress:
                progress(rec)
    return out


def repeatability(results: list[dict]) -> dict | None:
    """How far each later run's figure lies from the first run's, as a fraction: on the ratios to
    the reference mode (measured interleaved, so a machine-wide slowdown cancels), and, for
    comparison, on the raw medians."""
    key = "vs_" + REFERENCE.replace("-", "_")

    def pairs(value):
        first = {(r["workload"], r["size"], r["mode"]): value(r) for r in results
                 if r["run"] == 0 and not r["error"] and value(r) is not None}
        return [(v / first[k] - 1, k) for r in results if r["run"] > 0 and not r["error"]
                for k in [(r["workload"], r["size"], r["mode"])] for v in [value(r)]
                if k in first and v is not None]

    diffs = pairs(lambda r: r[key]["ratio"] if key in r else None)
    raw = pairs(lambda r: r["median_s"])
    if not raw:
        return None
    out = {}
    for name, d in (("ratios", diffs), ("medians", raw)):
        if not d:
            continue
        a = np.abs([x for x, _ in d])
        worst = max(d, key=lambda x: abs(x[0]))
        out[name] = {"pairs": len(d), "median_abs": float(np.median(a)), "p90_abs": float(np.percentile(a, 90)),
                     "max_abs": float(a.max()), "within_5pct": float(np.mean(a <= 0.05)),
                     "worst": {"workload": worst[1][0], "size": worst[1][1], "mode": worst[1][2], "diff": worst[0]}}
    return out


def repeatability_line(rep: dict, runs: int) -> str:
    parts = []
    for name, label in (("ratios", f"ratios to {REFERENCE}"), ("medians", "raw medians")):
        if name in rep:
            r, w = rep[name], rep[name]["worst"]
            parts.append(f"{label}: {100 * r['within_5pct']:.0f}% of {r['pairs']} within ±5% (median |Δ| "
                         f"{100 * r['median_abs']:.1f}%, worst {100 * r['max_abs']:.1f}% {w['workload']} {w['size']} "
                         f"{w['mode']})")
    return f"repeatability over {runs} runs — " + "; ".join(parts)


def environment(device: str) -> dict:
    import torch
    env = report.environment()
    env.update({"device": device, "cpu_count": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)),
                "torch_interop_threads": torch.get_num_interop_threads(),
                "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""),
                "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", ""),
                "loadavg_start": os.getloadavg()})
    return env


def _fmt(s: float | None) -> str:
    if s is None or not np.isfinite(s):
        return "—"
    for unit, scale in (("s", 1), ("ms", 1e-3), ("µs", 1e-6)):
        if s >= scale or unit == "µs":
            v = s / scale
            return f"{v:.3g}{unit}" if v < 1000 else f"{v:.0f}{unit}"


def _first_run(results: list[dict]) -> dict:
    """(workload, size) → {mode: record} of the first run, in measuring order."""
    by = {}
    for r in results:
        if r["run"] == 0:
            by.setdefault((r["workload"], r["size"]), {})[r["mode"]] = r
    return by


def rows(results: list[dict], modes: list[str]) -> list[list[str]]:
    """Table rows (first run): per workload and size, each mode's median ± spread, speedups, compile s."""
    out = []
    for (name, size), ms in _first_run(results).items():
        med = {m: ms[m].get("median_s") for m in ms if not ms[m]["error"]}
        cells = [name, str(size)]
        for m in modes:
            r = ms.get(m)
            cells.append("—" if r is None else "error" if r["error"] else
                         f"{_fmt(r['median_s'])} ±{100 * r['spread']:.0f}%")
        for slow, fast in harness.SPEEDUPS.values():
            cells.append(f"{med[slow] / med[fast]:.1f}×" if slow in med and fast in med else "—")
        for m in ("jax-jit", "torch-compile"):
            cells.append(_fmt(ms[m]["compile_s"]) if m in ms and not ms[m]["error"] else "—")
        best = min(med, key=med.get) if med else None
        cells.append(f"{ms[best]['gflop_s']:.3g}" if best else "—")
        out.append(cells)
    return out


def headers(modes: list[str]) -> list[str]:
    return ["workload", "size", *modes, *harness.SPEEDUPS, "jit comp.", "torch comp.", "GFLOP/s"]


LEGEND = ("each mode: median time per call (per step for jax-scan) ± spread (interquartile range / "
          "median); jit×: jax-eager / jax-jit; compile×: torch-eager / torch-compile; jit comp. and "
          "torch comp.: compile time (first call − median), seconds; GFLOP/s of the fastest mode; "
          "— not measured (mode does not apply)")


def table(results: list[dict], modes: list[str], title: str) -> Table:
    t = Table(title=title, header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False, caption=LEGEND)
    for h in headers(modes):
        t.add_column(h, justify="left" if h == "workload" else "right", no_wrap=True)
    for r in rows(results, modes):
        t.add_row(*r)
    return t


def ratio_rows(results: list[dict], modes: list[str]) -> list[list[str]]:
    """Per workload and size (first run): each mode's time as a ratio to the reference mode, the
    median of per-round ratios with its 95 % bootstrap interval."""
    key = "vs_" + REFERENCE.replace("-", "_")
    out = []
    for (name, size), ms in _first_run(results).items():
        cells = [name, str(size)]
        for m in modes:
            q = ms.get(m, {}).get(key)
            cells.append("1" if m == REFERENCE and m in ms else
                         f"{q['ratio']:.3g} [{q['ci_low']:.3g}–{q['ci_high']:.3g}]" if q else "—")
        out.append(cells)
    return out


def markdown(results: list[dict], modes: list[str]) -> str:
    hs = headers(modes)
    lines = ["| " + " | ".join(hs) + " |", "|" + "---|" * len(hs)]
    lines += ["| " + " | ".join(r) + " |" for r in rows(results, modes)]
    lines += ["", f"{LEGEND}.", "", f"Time relative to {REFERENCE} (median of per-round ratios, modes timed "
              f"round-robin; [95 % bootstrap interval]; below 1 is faster):", "",
              "| workload | size | " + " | ".join(modes) + " |", "|" + "---|" * (len(modes) + 2)]
    lines += ["| " + " | ".join(r) + " |" for r in ratio_rows(results, modes)]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def cold_compile():
    """Every torch.compile compiles from scratch, as every new jax.jit does (no inductor caches).

    Dynamo's own chatter (graph-break warnings, its note that the profile cache is off) is kept off
    stderr: the progress bar and a failing mode's one-line error are what a user needs there.
    """
    import torch
    dynamo_log = logging.getLogger("torch._dynamo")
    level = dynamo_log.level
    dynamo_log.setLevel(logging.ERROR)
    try:
        with torch.compiler.config.patch(force_disable_caches=True), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="dynamo_pgo force disabled", category=UserWarning)
            warnings.filterwarnings("ignore", message=".*[Gg]raph break.*")
            yield
    finally:
        dynamo_log.setLevel(level)
