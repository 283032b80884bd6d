"""What every `parity` command shares: exit codes, the two consoles, progress bars, one-line
errors, and result files written atomically.

Commands raise `UsageError` for bad input (exit 2, one line on stderr, nothing written) and print
every user or data string through `esc`, since rich would read "grad[x]" as markup and drop "[x]".
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """Bad input from the user (an argument, a path, a data file): exit 2 with this one line."""


def esc(text) -> str:
    """`text` made safe to print through rich (brackets are kept, not read as markup)."""
    return escape(str(text))


def consoles() -> tuple[Console, Console]:
    """stdout and stderr consoles; piped stdout gets a wide page so tables stay whole in files."""
    out = Console() if sys.stdout.isatty() else Console(width=200)
    return out, Console(stderr=True)


def progress(err: Console) -> Progress:
    """A progress bar on stderr that disappears when done (stdout keeps only results)."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=err, transient=True)


def print_error(err: Console, message: str, prefix: str = "parity: error: ") -> None:
    """One line on stderr, never wrapped (a log keeps it whole)."""
    err.print(f"[red]{esc(prefix)}[/]{esc(message)}", highlight=False, soft_wrap=True)


# ---------------------------------------------------------------- output paths and atomic writes
def writable_dir(path: str | os.PathLike, flag: str) -> Path:
    """`path` as a folder that exists or can be created and written, else UsageError naming `flag`.

    Checked before any work starts, so a long run never ends in a traceback about its output.
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UsageError(f"{flag} {p}: is a file, expected a folder")
    probe = p
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {p}: cannot write in {probe}")
    return p


def writable_file(path: str | os.PathLike, flag: str) -> Path:
    """`path` as a file that can be (over)written, else UsageError naming `flag` (checked up front)."""
    p = Path(path)
    if p.is_dir() or str(path).endswith(os.sep):
        raise UsageError(f"{flag} {p}: is a folder, expected a file path")
    if p.exists() and not os.access(p, os.W_OK):
        raise UsageError(f"{flag} {p}: the file is not writable")
    writable_dir(p.parent if str(p.parent) else ".", flag)
    return p


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: str | os.PathLike, write) -> Path:
    """Call write(binary file) on a temporary file beside `path`, then rename it into place, so a
    reader never sees a half-written file; the file gets the usual mode (0666 less the umask)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; result files are ordinary files
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


def write_text_atomic(text: str, path: str | os.PathLike) -> Path:
    return write_bytes_atomic(path, lambda f: f.write(text.encode()))


def write_json_atomic(obj, path: str | os.PathLike) -> Path:
    return write_text_atomic(json.dumps(obj, indent=2, default=float) + "\n", path)
