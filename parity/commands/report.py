"""`parity report --html DIR`: a static HTML site of every concept, side by side (opens from file://).

index.html holds the concept table (sortable, filterable by group and result), one page per concept
shows the JAX and PyTorch source of every function it runs with each sample's per-tensor errors,
the trap it belongs to and its worked example; --train and --bench add the training and benchmark
pages. Each concept runs once per dtype (in --jobs processes, JAX's compilation cache on).
"""
from __future__ import annotations

import time

from parity import names, parallel
from parity.commands.common import (add_cache, add_concept_names, add_device, add_jobs, add_precision, cache_dir,
                                    check_device, check_jobs, select_concepts)
from parity.console import EXIT_FAIL, EXIT_OK, UsageError, esc, progress, writable_dir


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="write a static HTML site: every concept's JAX and PyTorch code side by "
                                      "side with its errors, plus training and benchmark pages")
    p.add_argument("--html", metavar="DIR", required=True,
                   help="the site's folder: new, empty, or a site this command wrote before (index.html, "
                        "concepts/, docs/, assets/, results.json go there)")
    p.add_argument("--force", action="store_true",
                   help="write the site into an existing folder that holds other files (same-named files are "
                        "replaced)")
    add_concept_names(p)
    add_device(p)
    p.add_argument("--dtype", choices=names.CONCEPT_DTYPES, nargs="+", default=["float32"], metavar="DTYPE",
                   help="run each concept in those of these dtypes it declares (default: float32, under a minute "
                        "on 2 cores; float64 too takes about 1.6× as long and shows what float32 rounding hides; "
                        f"all: {' '.join(names.CONCEPT_DTYPES)})")
    add_precision(p)
    p.add_argument("--train", metavar="DIR", help="a `parity train` run folder (summary.json, loss.png) or the "
                                                 "--log-dir holding several: adds the training page")
    p.add_argument("--bench", metavar="DIR", help="a `parity bench --out` folder (bench-<device>.json/.md, PNGs): "
                                                 "adds the benchmarks page")
    add_jobs(p, parallel.default_jobs())
    add_cache(p)
    p.add_argument("--results", metavar="FILE", help="reuse the results in this file (`parity check --json`, or "
                                                    "a report's results.json) instead of running those concepts "
                                                    "again; the others run")
    p.set_defaults(run=run, stops_between_steps=True)  # signals wait for its next step (parity.cli)


def run(args, out, err) -> int:
    # the checks that need no framework first; then the workers start importing JAX and torch while
    # this process does the same (for the concept names and the rest of the checks)
    check_jobs(args.jobs)
    site_dir = writable_dir(args.html, "--html")
    if not args.force:
        _refuse_foreign_folder(site_dir)
    cache = cache_dir(args, err)
    with args.interrupts.deferred():  # Ctrl-C and SIGTERM stop the run between tasks (parity.cli)
        if args.results:  # how many concepts are left to run is known only after reading the file
            return _run(args, out, err, site_dir, cache, None)
        with parallel.Workers(args.jobs, cache) as workers:
            return _run(args, out, err, site_dir, cache, workers)


SITE_FILES = ("index.html", "results.json", "assets/site.css")  # what every site this command writes holds


def _refuse_foreign_folder(site_dir) -> None:
    """UsageError unless `site_dir` is new, empty, or a site written before (its files get replaced)."""
    if not site_dir.is_dir():
        return
    entries = sorted(p.name for p in site_dir.iterdir())
    if not entries or all((site_dir / f).is_file() for f in SITE_FILES):
        return
    shown = ", ".join(entries[:3]) + (f" and {len(entries) - 3} more" if len(entries) > 3 else "")
    raise UsageError(f"--html {site_dir}: the folder holds files that are not a parity site ({shown}); name a "
                     f"new or empty folder, or pass --force to write the site among them")


def _run(args, out, err, site_dir, cache, workers) -> int:
    from parity.site import build
    concepts = select_concepts(args.names)
    check_device(args.device)
    train = build.check_train(args.train) if args.train else None
    bench = build.check_bench(args.bench) if args.bench else None
    dtypes = list(dict.fromkeys(args.dtype))
    reuse = build.load_results(args.results, concepts, dtypes, args.device, args.precision) if args.results else {}
    t0 = time.perf_counter()
    with progress(err) as prog:
        task = prog.add_task("running", total=sum(dt in c.dtypes for c in concepts for dt in dtypes))
        results = parallel.run(concepts, dtypes, args.device, args.precision, jobs=args.jobs, cache_dir=cache,
                           on_result=lambda r: prog.update(task, advance=1, description=f"ran {r.concept} ({r.dtype})"),
                           reuse=reuse, workers=workers, check=args.interrupts.check)
        run_seconds = time.perf_counter() - t0
        pages = prog.add_task("writing pages", total=len(concepts))
        written = build.write_site(site_dir, concepts, results, dtypes=dtypes, device=args.device,
                                   precision=args.precision, jobs=args.jobs, run_seconds=run_seconds,
                                   train=train, bench=bench,
                                   extra_env={"jobs": args.jobs, "torch threads per worker":
                                              max(1, parallel.cores() // args.jobs) if args.jobs > 1 else "default",
                                              "JAX compilation cache": cache or "off",
                                              "results reused": (f"{len(reuse)} from {args.results}" if args.results
                                                                 else "none: every concept ran")},
                                   on_page=lambda name: prog.update(pages, advance=1, description=f"page {name}"))
    n_fail = sum(not r.passed for r in results)
    ran = f"ran {len(results) - len(reuse)} in {run_seconds:.0f} s" + (f", reused {len(reuse)}" if reuse else "")
    out.print(f"{len(results) - n_fail} passed, {n_fail} failed ({len(concepts)} concepts in {len(dtypes)} dtypes, "
              f"{ran}); wrote {len(written)} files in {time.perf_counter() - t0:.0f} s", highlight=False)
    out.print(f"open {esc((site_dir / 'index.html').resolve().as_uri())}", highlight=False, soft_wrap=True)
    return EXIT_FAIL if n_fail else EXIT_OK
