"""`parity list`: the concepts, one per line with the dtypes each runs in (in brackets), or as JSON."""
from __future__ import annotations

import json

from parity.console import EXIT_OK


def add_parser(sub) -> None:
    p = sub.add_parser("list", help="list the concepts")
    p.add_argument("--json", action="store_true", help="print a JSON array instead of a table")
    p.set_defaults(run=run)


def run(args, out, err) -> int:
    from parity import registry
    concepts = registry.all_concepts()
    if args.json:
        print(json.dumps([{"name": c.name, "group": c.group, "summary": c.summary,
                           "differentiable": c.differentiable, "covers": list(c.covers),
                           "dtypes": list(c.dtypes), "traps": list(c.traps)}
                          for c in concepts], indent=2))
        return EXIT_OK
    for c in concepts:
        out.print(f"{c.name:30s} {c.group:12s} {c.summary} [{' '.join(c.dtypes)}]", highlight=False, markup=False)
    return EXIT_OK
