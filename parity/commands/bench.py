"""`parity bench`: time workloads in each mode and size; a table, a JSON file and PNG plots."""
from __future__ import annotations

import difflib
import math
import os
import sys
import time

from benchmarks.modes import ALL_MODES, MODES, REFERENCE, Settings
from parity import names
from parity.commands.common import add_device, add_precision, check_device
from parity.console import (EXIT_FAIL, EXIT_OK, UsageError, esc, progress, write_json_atomic,
                            write_text_atomic, writable_dir)

SCHEMA = "parity-bench/2"


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="time workloads: JAX jit vs op by op vs torch eager vs torch.compile")
    p.add_argument("names", nargs="*", metavar="NAME",
                   help="workloads or prefixes such as 'train' (default: a smoke subset; all with --full)")
    p.add_argument("--modes", nargs="+", metavar="MODE",
                   help=f"default: every mode a workload offers: the suite's ({', '.join(MODES)}), or a "
                        f"workload's own (parity bench --list shows them)")
    p.add_argument("--sizes", nargs="+", type=int, metavar="N", help="sizes instead of each workload's sweep")
    p.add_argument("--full", action="store_true", help="full size sweeps (default: a few small sizes)")
    add_device(p)
    p.add_argument("--dtype", choices=names.DTYPES, default="float32")
    add_precision(p)
    p.add_argument("--repeats", type=int, default=Settings.repeats,
                   help="steady-state samples per measurement (default: %(default)s)")
    p.add_argument("--max-time", type=float, default=Settings.max_time_s,
                   help="seconds of sampling per measurement at most (default: %(default)s)")
    p.add_argument("--repeat-runs", type=int, default=1,
                   help="run everything N times; reports how medians repeat (default: %(default)s)")
    p.add_argument("--out", metavar="DIR", default="bench-out",
                   help="writes bench-<device>.json, .md and <device>-<workload>.png here (default: %(default)s)")
    p.add_argument("--list", action="store_true", help="list the workloads and exit")
    p.set_defaults(run=run)


def _check(args, ws) -> None:
    """Every bad value refused before anything runs."""
    if args.repeats < Settings.min_repeats:
        raise UsageError(f"--repeats must be >= {Settings.min_repeats} (samples for a median and "
                         f"its spread), got {args.repeats}")
    if args.repeat_runs < 1:
        raise UsageError(f"--repeat-runs must be >= 1, got {args.repeat_runs}")
    if not (math.isfinite(args.max_time) and args.max_time > 0):
        raise UsageError(f"--max-time must be a number of seconds > 0, got {args.max_time}")
    for n in args.sizes or ():
        for w in ws:
            if not 1 <= n <= max(w.sizes):
                raise UsageError(f"--sizes: {n} is out of range for {w.name} ({w.size_name} from 1 to "
                                 f"{max(w.sizes)})")
    cuda_only = {"torch-compile-ro", "torch-graph"} & set(args.modes or ())
    if cuda_only and args.device != "cuda":
        raise UsageError(f"modes {', '.join(sorted(cuda_only))} need --device cuda")
    offered = {m for w in ws for m in w.modes_on(args.device)}
    for m in args.modes or ():
        if m in offered:
            continue
        if m not in ALL_MODES:
            close = difflib.get_close_matches(m, list(ALL_MODES), n=3, cutoff=0.6)
            raise UsageError(f"--modes: unknown mode {m!r}" + (f"; did you mean {', '.join(close)}?" if close else "")
                             + " (parity bench --list shows each workload's modes)")
        raise UsageError(f"--modes {m} is offered by none of the selected workloads (they offer "
                         f"{', '.join(sorted(offered))}); parity bench --list shows each workload's modes")


def _list(workloads, out) -> None:
    """Each workload; under those with modes of their own, each mode and what its ratio is against."""
    for w in workloads.all_workloads():
        out.print(f"{w.name:38s} {w.kind:5s} {w.size_name:5s} {','.join(map(str, w.sizes)):24s} {w.summary}",
                  markup=False, highlight=False)
        own = list(w.own_modes or {}) + list(w.extra_modes)
        for m in own + [m for m in w.vs if m not in own]:
            vs = w.reference(m)
            out.print(f"    {m}{f' (ratio against {vs})' if vs else ' (reference)'}: {w.describe(m)}",
                      markup=False, highlight=False)
    out.print(f"the suite's modes, which every workload without modes of its own offers where they apply "
              f"(ratio against {REFERENCE}):", markup=False, highlight=False)
    for m, what in MODES.items():
        out.print(f"    {m}: {what}", markup=False, highlight=False)


def run(args, out, err) -> int:
    """Exit 0, 1 (a mode failed) or 2 (usage)."""
    from benchmarks import plots, suite, workloads  # matplotlib and the workloads: only when benchmarking
    from parity import precision
    try:
        ws = workloads.select(args.names, args.full)
    except KeyError as e:
        raise UsageError(str(e)) from None
    if args.list:
        _list(workloads, out)
        return EXIT_OK
    check_device(args.device)
    _check(args, ws)
    outdir = writable_dir(args.out, "--out")
    settings = Settings(repeats=args.repeats, max_time_s=args.max_time)
    items = suite.plan(ws, args.modes, args.sizes, args.device, args.full)
    env = suite.environment(args.device)
    t0 = time.perf_counter()
    results = []
    with precision.policy(args.precision), suite.cold_compile(), progress(err) as prog:
        task = prog.add_task("benchmarking", total=len(items) * args.repeat_runs)

        def tick(rec):
            prog.update(task, advance=1, description=f"{rec['workload']} {rec['size']} {rec['mode']}")
        for k in range(args.repeat_runs):
            results += suite.run(items, args.device, args.dtype, settings, k, tick)
    env["loadavg_end"] = os.getloadavg()
    doc = {"schema": SCHEMA, "argv": sys.argv[1:],
           "environment": env, "settings": {**vars(settings), "dtype": args.dtype, "precision": args.precision,
                                           "repeat_runs": args.repeat_runs, "full": args.full,
                                           "torch_compile_caches": "off"},
           "seconds": time.perf_counter() - t0,
           "modes": {m: ALL_MODES[m] for m in dict.fromkeys(r["mode"] for r in results)},
           "results": results,
           "repeatability": suite.repeatability(results)}
    title = (f"parity bench — {args.dtype} on {args.device} "
             f"({env['cuda_device'] if args.device == 'cuda' else env['cpu']})")
    md = f"{title}; torch {env['torch']}, jax {env['jax']}, {env['torch_threads']} torch threads\n\n"
    md += suite.markdown(results)
    if doc["repeatability"]:
        md += "\n" + suite.repeatability_line(doc["repeatability"], args.repeat_runs) + "\n"
    write_json_atomic(doc, outdir / f"bench-{args.device}.json")
    write_text_atomic(md, outdir / f"bench-{args.device}.md")
    pngs = plots.plot_all(results, outdir, args.device)
    for g in suite.groups(results):
        out.print(suite.table(results, g, title))
    for r in results:
        if r["error"]:
            out.print(f"[red]error[/] {esc(r['workload'])} {r['size']} {r['mode']}: {esc(r['error'])}",
                      highlight=False)
    if doc["repeatability"]:
        out.print(suite.repeatability_line(doc["repeatability"], args.repeat_runs), highlight=False)
    out.print(f"wrote {esc(outdir / f'bench-{args.device}.json')}, .md and {len(pngs)} plots in "
              f"{doc['seconds']:.0f} s", highlight=False)
    return EXIT_FAIL if any(r["error"] for r in results) else EXIT_OK
