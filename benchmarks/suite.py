"""A benchmark run: plan (workload × size × mode), measure, summarise repeatability, and render
the table and Markdown. The `parity bench` command (parity/commands/bench.py) drives it."""
from __future__ import annotations

import contextlib
import logging
import os
import warnings
from dataclasses import dataclass, field

import numpy as np
from rich import box
from rich.table import Table

from benchmarks import harness
from benchmarks.modes import ALL_MODES, MODES, REFERENCE
from parity import report

SCHEMA = "parity-bench/2"  # /2: each record names the mode its ratio is against ("vs", "vs_ratio")


def plan(ws, modes, sizes, device: str, full: bool) -> list[tuple]:
    """Every (workload, size, mode) to measure, in order."""
    return [(w, n, m) for w in ws for n in (sizes or w.sweep(device, full))
            for m in w.modes_on(device) if not modes or m in modes]


def run(items: list[tuple], device: str, dtype: str, settings: harness.Settings,
        run_index: int = 0, progress=None) -> list[dict]:
    """Measure every planned item, the modes of one workload and size interleaved round-robin
    (harness.measure_interleaved); a mode that raises is recorded with its error, never fatal.
    Each mode's time is also given as a ratio to the mode its workload names for it
    (Workload.reference: torch-eager for the suite's modes), when that mode was measured too."""
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
        for mode in modes:
            rec = {"workload": w.name, "kind": w.kind, "size_name": w.size_name, "size": n, "mode": mode,
                   "run": run_index, "flops": flops, "bytes": nbytes, "error": ""}
            t, vs = timings[mode], w.reference(mode)
            if vs in modes:
                rec["vs"] = vs
            if isinstance(t, Exception):
                rec["error"] = f"{type(t).__name__}: {str(t).splitlines()[0] if str(t) else ''}"
            else:
                rec.update(t.stats())
                rec["gflop_s"] = flops / rec["median_s"] / 1e9
                rec["gbyte_s"] = nbytes / rec["median_s"] / 1e9
                if vs in modes and isinstance(timings[vs], harness.Timing):
                    rec["vs_ratio"] = harness.paired_ratio(t, timings[vs])
            out.append(rec)
            if progress:
                progress(rec)
    return out


def repeatability(results: list[dict]) -> dict | None:
    """How far each later run's figure lies from the first run's, as a fraction: on the ratios of
    each mode to the mode it is compared with (measured interleaved, so a machine-wide slowdown
    cancels), and, for comparison, on the raw medians."""
    def pairs(value):
        first = {(r["workload"], r["size"], r["mode"]): value(r) for r in results
                 if r["run"] == 0 and not r["error"] and value(r) is not None}
        return [(v / first[k] - 1, k) for r in results if r["run"] > 0 and not r["error"]
                for k in [(r["workload"], r["size"], r["mode"])] for v in [value(r)]
                if k in first and v is not None]

    diffs = pairs(lambda r: r["vs_ratio"]["ratio"] if "vs_ratio" in r else None)
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
    for name, label in (("ratios", "mode-to-mode ratios"), ("medians", "raw medians")):
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


@dataclass
class Group:
    """Workloads whose modes are compared alike: the suite's modes against torch-eager, or a
    workload's own modes (and the modes it compares them with), in one table."""

    modes: list[str]  # the union of the modes measured, the suite's in MODES order first
    vs: dict[str, str]  # mode → the mode its ratio is against
    keys: list[tuple] = field(default_factory=list)  # (workload, size) of the first run, in order
    own: bool = False  # modes or ratios other than the suite's

    def describe(self) -> str:
        """One line: what each mode of its own runs, and every ratio not against the suite's reference."""
        parts = []
        for m in self.modes:
            vs = f"ratio against `{self.vs[m]}`" if self.vs.get(m, _default_vs(m)) != _default_vs(m) or (
                m not in MODES and m in self.vs) else ""
            if m not in MODES:
                parts.append(f"`{m}`: {ALL_MODES.get(m, '?')}" + (f" ({vs})" if vs else " (no ratio)"))
            elif vs:
                parts.append(f"`{m}`: {vs}")
        return "; ".join(parts)


def _default_vs(mode: str) -> str | None:
    return None if mode == REFERENCE else REFERENCE


def groups(results: list[dict]) -> list[Group]:
    """The first run's workloads, grouped: every workload of the suite's modes and ratios in one
    group; each distinct set of own modes (or of other ratios) in a group of its own."""
    first = _first_run(results)
    per: dict[str, tuple[list, dict]] = {}
    for (name, _), ms in first.items():
        modes, vs = per.setdefault(name, ([], {}))
        for m, r in ms.items():
            modes += [m] if m not in modes else []
            if r.get("vs"):
                vs[m] = r["vs"]
    out: dict[tuple, Group] = {}
    for name, size in first:
        modes, vs = per[name]
        key = tuple(sorted((m, vs.get(m)) for m in modes if m not in MODES or vs.get(m, _default_vs(m)) != _default_vs(m)))
        g = out.setdefault(key, Group([], {}, own=bool(key)))
        g.modes += [m for m in modes if m not in g.modes]
        g.vs.update(vs)
        g.keys.append((name, size))
    for g in out.values():
        g.modes.sort(key=lambda m: list(MODES).index(m) if m in MODES else len(MODES))  # stable: own ones in order
    return list(out.values())


def _speedups(g: Group) -> dict:
    return {k: v for k, v in harness.SPEEDUPS.items() if set(v) <= set(g.modes)}


def _compiled(g: Group) -> list[tuple[str, str]]:
    return [(h, m) for h, m in (("jit comp.", "jax-jit"), ("torch comp.", "torch-compile")) if m in g.modes]


def rows(results: list[dict], g: Group) -> list[list[str]]:
    """Table rows (first run): per workload and size, each mode's median ± spread, speedups, compile s."""
    first = _first_run(results)
    out = []
    for key in g.keys:
        ms = first[key]
        med = {m: ms[m].get("median_s") for m in ms if not ms[m]["error"]}
        cells = [key[0], str(key[1])]
        for m in g.modes:
            r = ms.get(m)
            cells.append("—" if r is None else "error" if r["error"] else
                         f"{_fmt(r['median_s'])} ±{100 * r['spread']:.0f}%")
        for slow, fast in _speedups(g).values():
            cells.append(f"{med[slow] / med[fast]:.1f}×" if slow in med and fast in med else "—")
        for _, m in _compiled(g):
            cells.append(_fmt(ms[m]["compile_s"]) if m in ms and not ms[m]["error"] else "—")
        best = min(med, key=med.get) if med else None
        cells.append(f"{ms[best]['gflop_s']:.3g}" if best else "—")
        out.append(cells)
    return out


def headers(g: Group) -> list[str]:
    return ["workload", "size", *g.modes, *_speedups(g), *(h for h, _ in _compiled(g)), "GFLOP/s"]


LEGEND = ("each mode: median time per call (per step for jax-scan and jax-trainer-scan) ± spread "
          "(interquartile range / median); jit×: jax-eager / jax-jit; compile×: torch-eager / "
          "torch-compile; jit comp. and torch comp.: compile time (first call − median), seconds; "
          "GFLOP/s of the fastest mode; — not measured (mode does not apply)")

RATIO_LEGEND = ("each mode's time relative to the mode named after the slash (median of per-round ratios, "
                "the modes timed round-robin in a shuffled order each round; [95 % bootstrap interval]; "
                "below 1 is faster)")


def table(results: list[dict], g: Group, title: str) -> Table:
    t = Table(title=title, header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False,
              caption=LEGEND + ("\n" + g.describe() if g.own else ""))
    for h in headers(g):
        t.add_column(h, justify="left" if h == "workload" else "right", no_wrap=True)
    for r in rows(results, g):
        t.add_row(*r)
    return t


def ratio_modes(g: Group) -> list[str]:
    return [m for m in g.modes if m in g.vs]


def ratio_rows(results: list[dict], g: Group) -> list[list[str]]:
    """Per workload and size (first run): each mode's time as a ratio to the mode it is compared
    with, the median of per-round ratios with its 95 % bootstrap interval."""
    first = _first_run(results)
    out = []
    for key in g.keys:
        ms = first[key]
        cells = [key[0], str(key[1])]
        for m in ratio_modes(g):
            q = ms.get(m, {}).get("vs_ratio")
            cells.append(f"{q['ratio']:.3g} [{q['ci_low']:.3g}–{q['ci_high']:.3g}]"
                         if q and ms[m].get("vs") == g.vs[m] else "—")
        out.append(cells)
    return out


def markdown(results: list[dict]) -> str:
    lines = []
    for i, g in enumerate(groups(results)):
        lines += [""] if lines else []
        if g.own:
            lines += [f"Modes of {', '.join(dict.fromkeys(k[0] for k in g.keys))}: {g.describe()}.", ""]
        hs = headers(g)
        lines += ["| " + " | ".join(hs) + " |", "|" + "---|" * len(hs)]
        lines += ["| " + " | ".join(r) + " |" for r in rows(results, g)]
        if i == 0:
            lines += ["", f"{LEGEND}."]
        rm = ratio_modes(g)
        if rm:
            lines += ["", f"Ratios: {RATIO_LEGEND}:", "",
                      "| workload | size | " + " | ".join(f"{m} / {g.vs[m]}" for m in rm) + " |",
                      "|" + "---|" * (len(rm) + 2)]
            lines += ["| " + " | ".join(r) + " |" for r in ratio_rows(results, g)]
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
