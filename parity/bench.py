"""`parity bench`: time workloads in each mode and size; a table, a JSON file and PNG plots."""
from __future__ import annotations

import contextlib
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from rich import box
from rich.table import Table

from benchmarks import harness, plots, workloads
from parity import precision, report

SCHEMA = "parity-bench/1"


def plan(ws, modes, sizes, device: str, full: bool) -> list[tuple]:
    """Every (workload, size, mode) to measure, in order."""
    return [(w, n, m) for w in ws for n in (sizes or w.sweep(device, full))
            for m in harness.modes_for(w.kind, device) if not modes or m in modes]


def run(items: list[tuple], device: str, dtype: str, settings: harness.Settings,
        run_index: int = 0, progress=None) -> list[dict]:
    """Measure every planned item; a mode that raises is recorded with its error, never fatal."""
    out, built = [], {}
    itemsize = np.dtype(dtype).itemsize
    for w, n, mode in items:
        if (w.name, n) not in built:  # one set of inputs per workload and size, shared by its modes
            built = {(w.name, n): w.build(n, device, dtype)}
        flops, nbytes = w.count(n, itemsize)
        rec = {"workload": w.name, "kind": w.kind, "size_name": w.size_name, "size": n, "mode": mode,
               "run": run_index, "flops": flops, "bytes": nbytes, "error": ""}
        try:
            rec.update(harness.measure(built[(w.name, n)][mode](), device, settings).stats())
            rec["gflop_s"] = flops / rec["median_s"] / 1e9
            rec["gbyte_s"] = nbytes / rec["median_s"] / 1e9
        except Exception as e:  # torch.compile and friends can fail on a platform; say so and go on
            rec["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        out.append(rec)
        if progress:
            progress(rec)
    return out


def repeatability(results: list[dict]) -> dict | None:
    """How far each median of a later run lies from the first run's, as a fraction."""
    first = {(r["workload"], r["size"], r["mode"]): r["median_s"] for r in results
             if r["run"] == 0 and not r["error"]}
    diffs = [(r["median_s"] / first[k] - 1, k) for r in results if r["run"] > 0 and not r["error"]
             for k in [(r["workload"], r["size"], r["mode"])] if k in first]
    if not diffs:
        return None
    a = np.abs([d for d, _ in diffs])
    worst = max(diffs, key=lambda d: abs(d[0]))
    return {"pairs": len(diffs), "median_abs": float(np.median(a)), "p90_abs": float(np.percentile(a, 90)),
            "max_abs": float(a.max()), "within_5pct": float(np.mean(a <= 0.05)),
            "worst": {"workload": worst[1][0], "size": worst[1][1], "mode": worst[1][2], "diff": worst[0]}}


def repeatability_line(rep: dict, runs: int) -> str:
    w = rep["worst"]
    return (f"repeatability over {runs} runs: median |Δ| {100 * rep['median_abs']:.1f}%, 90th percentile "
            f"{100 * rep['p90_abs']:.1f}%, max {100 * rep['max_abs']:.1f}% ({w['workload']} {w['size']} "
            f"{w['mode']}); {100 * rep['within_5pct']:.0f}% of {rep['pairs']} medians within ±5%")


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


def rows(results: list[dict], modes: list[str]) -> list[list[str]]:
    """Table rows (first run): per workload and size, each mode's median ± spread, speedups, compile s."""
    by = {}
    for r in results:
        if r["run"] == 0:
            by.setdefault((r["workload"], r["size"]), {})[r["mode"]] = r
    out = []
    for (name, size), ms in by.items():
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


def table(results: list[dict], modes: list[str], title: str) -> Table:
    t = Table(title=title, header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False,
              caption="median ± IQR/median per call; ×: eager / compiled; comp.: first call − median; "
                      "GFLOP/s of the fastest mode")
    for h in headers(modes):
        t.add_column(h, justify="left" if h == "workload" else "right", no_wrap=True)
    for r in rows(results, modes):
        t.add_row(*r)
    return t


def markdown(results: list[dict], modes: list[str]) -> str:
    hs = headers(modes)
    lines = ["| " + " | ".join(hs) + " |", "|" + "---|" * len(hs)]
    lines += ["| " + " | ".join(r) + " |" for r in rows(results, modes)]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def _cold_compile():
    """Every torch.compile compiles from scratch, as every new jax.jit does (no inductor caches)."""
    import torch
    with torch.compiler.config.patch(force_disable_caches=True), warnings.catch_warnings():
        # the switch itself makes dynamo warn once per compile that its profile cache is off
        warnings.filterwarnings("ignore", message="dynamo_pgo force disabled", category=UserWarning)
        yield


def main(args, out, err) -> int:
    """Run `parity bench` for parsed arguments; exit 0, 1 (a mode failed) or 2 (usage)."""
    from parity.cli import EXIT_FAIL, EXIT_OK, _progress, _usage_error
    try:
        ws = workloads.select(args.names, args.full)
    except KeyError as e:
        return _usage_error(err, str(e))
    if args.list:
        for w in workloads.all_workloads():
            out.print(f"{w.name:26s} {w.kind:5s} {w.size_name:5s} {','.join(map(str, w.sizes)):28s} {w.summary}",
                      markup=False, highlight=False)
        return EXIT_OK
    if args.device == "cuda" and not precision.cuda_available():
        return _usage_error(err, "--device cuda: CUDA is not available to both JAX and PyTorch here")
    cuda_only = {"torch-compile-ro", "torch-graph"} & set(args.modes or ())
    if cuda_only and args.device != "cuda":
        return _usage_error(err, f"modes {', '.join(sorted(cuda_only))} need --device cuda")
    settings = harness.Settings(repeats=args.repeats, max_time_s=args.max_time)
    items = plan(ws, args.modes, args.sizes, args.device, args.full)
    modes = [m for m in harness.MODES if any(m == i[2] for i in items)]
    env = environment(args.device)
    t0 = time.perf_counter()
    results = []
    with precision.policy(args.precision), _cold_compile(), _progress(err) as prog:
        task = prog.add_task("benchmarking", total=len(items) * args.repeat_runs)

        def tick(rec):
            prog.update(task, advance=1, description=f"{rec['workload']} {rec['size']} {rec['mode']}")
        for k in range(args.repeat_runs):
            results += run(items, args.device, args.dtype, settings, k, tick)
    env["loadavg_end"] = os.getloadavg()
    doc = {"schema": SCHEMA, "argv": sys.argv[1:],
           "environment": env, "settings": {**vars(settings), "dtype": args.dtype, "precision": args.precision,
                                           "repeat_runs": args.repeat_runs, "full": args.full,
                                           "torch_compile_caches": "off"},
           "seconds": time.perf_counter() - t0, "results": results, "repeatability": repeatability(results)}
    outdir = Path(args.out)
    title = (f"parity bench — {args.dtype} on {args.device} "
             f"({env['cuda_device'] if args.device == 'cuda' else env['cpu']})")
    md = f"{title}; torch {env['torch']}, jax {env['jax']}, {env['torch_threads']} torch threads\n\n"
    md += markdown(results, modes)
    if doc["repeatability"]:
        md += "\n" + repeatability_line(doc["repeatability"], args.repeat_runs) + "\n"
    report.write_json_atomic(doc, outdir / f"bench-{args.device}.json")
    report.write_text_atomic(md, outdir / f"bench-{args.device}.md")
    pngs = plots.plot_all(results, outdir, args.device)
    out.print(table(results, modes, title))
    for r in results:
        if r["error"]:
            out.print(f"[red]error[/] {r['workload']} {r['size']} {r['mode']}: {r['error']}", highlight=False)
    if doc["repeatability"]:
        out.print(repeatability_line(doc["repeatability"], args.repeat_runs), highlight=False)
    out.print(f"wrote {outdir / f'bench-{args.device}.json'}, .md and {len(pngs)} plots in "
              f"{doc['seconds']:.0f} s", highlight=False)
    return EXIT_FAIL if any(r["error"] for r in results) else EXIT_OK
