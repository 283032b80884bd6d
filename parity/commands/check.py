"""`parity check`: run concepts in both frameworks, compare, print the table (and write JSON).

The concepts run in `--jobs` processes with JAX's compilation cache, by the same pool as `parity report`
(parity/parallel.py); the results and their order are the same for any number of jobs."""
from __future__ import annotations

from parity import names
from parity.commands.common import (add_cache, add_concept_names, add_device, add_jobs, add_precision, cache_dir,
                                    check_device, check_jobs, select_concepts)
from parity.console import (EXIT_FAIL, EXIT_OK, UsageError, esc, progress, write_json_atomic,
                            writable_file)


def add_parser(sub) -> None:
    p = sub.add_parser("check", help="run concepts in both frameworks and compare")
    add_concept_names(p)
    add_device(p)
    p.add_argument("--dtype", choices=names.CONCEPT_DTYPES, nargs="+", default=list(names.CONCEPT_DTYPES),
                   metavar="DTYPE", help="run each concept in those of these dtypes it declares (`parity list` "
                                         f"shows them; default: all of {', '.join(names.CONCEPT_DTYPES)})")
    add_precision(p)
    add_jobs(p, 1)
    add_cache(p)
    p.add_argument("--json", metavar="PATH", help="also write every result to this JSON file")
    p.set_defaults(run=run, stops_between_steps=True)  # signals wait for its next step (parity.cli)


def run(args, out, err) -> int:
    with args.interrupts.deferred():  # Ctrl-C and SIGTERM stop the run between concepts (parity.cli)
        return _run(args, out, err)


def _run(args, out, err) -> int:
    json_path = writable_file(args.json, "--json") if args.json is not None else None
    check_jobs(args.jobs)
    cache = cache_dir(args, err)
    from parity import parallel, report, runner
    dtypes = list(dict.fromkeys(args.dtype))  # in the order given, once each
    results = []
    try:  # from here on, an interrupt leaves the file (holding what finished, maybe nothing)
        concepts = select_concepts(args.names)
        check_device(args.device)
        if not runner.runs(concepts, dtypes):
            raise UsageError(f"--dtype {' '.join(dtypes)}: none of the selected concepts runs in "
                             f"{'it' if len(dtypes) == 1 else 'them'} (their dtypes: "
                             f"{', '.join(dict.fromkeys(d for c in concepts for d in c.dtypes))})")
        args.interrupts.check()
        with progress(err) as prog, parallel.compilation_cache(cache):
            task = prog.add_task("checking", total=len(runner.runs(concepts, dtypes)))

            def finished(r):
                results.append(r)
                prog.update(task, advance=1, description=f"checked {r.concept} ({r.dtype})")

            # the interrupt check runs before each next concept (and while the workers are waited for)
            ordered = parallel.run(concepts, dtypes, args.device, args.precision, jobs=args.jobs, cache_dir=cache,
                                   on_result=finished, check=args.interrupts.check)
        results = ordered  # in concept order, whichever process finished first
    except KeyboardInterrupt:  # keep what finished: a partial file marked incomplete, then exit 130
        args.interrupts.hold()  # the run is ending: a second signal must not cut the writing short
        if not json_path:
            raise
        if results:  # workers finish in any order: the file keeps the order asked for
            order = {(c.name, d): i for i, (c, d) in enumerate(runner.runs(concepts, dtypes))}
            results.sort(key=lambda r: order[(r.concept, r.dtype)])
        write_json_atomic(report.results_json(results, complete=False), json_path)
        raise KeyboardInterrupt(f"wrote the {len(results)} finished results to {json_path} "
                                f"(marked incomplete)") from None
    n_fail = sum(not r.passed for r in results)
    if json_path:  # before printing: a reader that stops early (`| head`) must not cost the file
        write_json_atomic(report.results_json(results), json_path)
    run_dtypes = list(dict.fromkeys(r.dtype for r in results))
    out.print(report.results_table(results, title=f"parity check — {', '.join(run_dtypes) or 'no dtype'} on "
                                                  f"{args.device}, precision {args.precision}"))
    for line in report.failure_lines(results):
        out.print(f"[red]FAIL[/] {esc(line)}", highlight=False)
    out.print(f"{len(results) - n_fail} passed, {n_fail} failed", highlight=False)
    if json_path:
        out.print(f"wrote {esc(json_path)}", highlight=False)
    return EXIT_FAIL if n_fail else EXIT_OK
