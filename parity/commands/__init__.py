"""The `parity` subcommands: one module each, all of the same shape.

`add_parser(subparsers)` declares the command's arguments (choices built from the lists the code
already has) and `run(args, out, err) -> int` carries it out, returning an exit code of
`parity.console`; bad input raises `parity.console.UsageError` before any work starts.
"""
from parity.commands import audit, bench, check, compare, list, port, show, train, report

COMMANDS = (list, check, show, audit, train, bench, compare, port, report)
