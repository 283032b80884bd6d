"""`parity check`: run concepts in both frameworks, compare, print the table (and write JSON)."""
from __future__ import annotations

from parity import names
from parity.commands.common import (add_concept_names, add_device, add_precision, check_device,
                                    select_concepts)
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
    p.add_argument("--json", metavar="PATH", help="also write every result to this JSON file")
    p.set_defaults(run=run, stops_between_steps=True)  # signals wait for its next step (parity.cli)


def run(args, out, err) -> int:
    with args.interrupts.deferred():  # Ctrl-C and SIGTERM stop the run between concepts (parity.cli)
        return _run(args, out, err)


def _run(args, out, err) -> int:
    json_path = writable_file(args.json, "--json") if args.json is not None else None
    from parity import report, runner
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
        with progress(err) as prog:
            task = prog.add_task("checking", total=len(runner.runs(concepts, dtypes)))
            for r in runner.run_all(concepts, dtypes, args.device, args.precision):
                results.append(r)
                prog.update(task, advance=1, description=f"checked {r.concept} ({r.dtype})")
                args.interrupts.check()  # before the next concept starts
    except KeyboardInterrupt:  # keep what finished: a partial file marked incomplete, then exit 130
        args.interrupts.hold()  # the run is ending: a second signal must not cut the writing short
        if not json_path:
            raise
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
