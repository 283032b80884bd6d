"""The `parity` command: parses arguments and hands them to one module of `parity.commands`.

Exit codes (`parity.console`): 0 all good, 1 a comparison failed, 2 bad input (one line on stderr,
nothing written), 130 interrupted (what finished is kept).
"""
from __future__ import annotations

import argparse
import sys

from parity import console
from parity.commands import COMMANDS


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse exits 2 on usage errors already; keep its message to one line
        self.exit(console.EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="parity", description="Twin JAX/Flax and PyTorch implementations, compared.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for command in COMMANDS:
        command.add_parser(sub)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    out, err = console.consoles()
    try:
        return args.run(args, out, err)
    except console.UsageError as e:
        console.print_error(err, str(e))
        return console.EXIT_USAGE
    except KeyboardInterrupt as e:  # one line, saying what was kept (a command may raise it with a note)
        console.print_error(err, f"interrupted{'; ' + str(e) if str(e) else ''}", prefix="parity: ")
        return console.EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
