"""What every `parity` command shares: exit codes, the two consoles, progress bars, one-line
errors, and result files written atomically.

Commands raise `UsageError` for bad input (exit 2, one line on stderr, nothing written) and print
every user or data string through `esc`, since rich would read "grad[x]" as markup and drop "[x]".
"""
from __future__ import annotations

import errno
import json
import os
import stat
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
    """A progress bar on stderr that disappears when done (stdout keeps only results); none where
    stderr is no terminal (a log or a pipe would keep only the blank line a finished bar leaves)."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=err, transient=True, disable=not err.is_terminal)


def print_error(err: Console, message: str, prefix: str = "parity: error: ") -> None:
    """One line on stderr, never wrapped (a log keeps it whole)."""
    err.print(f"[red]{esc(prefix)}[/]{esc(message)}", highlight=False, soft_wrap=True)


# ---------------------------------------------------------------- output paths and atomic writes
# What a user names as an output is written *through*: a symlink's target is replaced (never the link
# itself), a device or FIFO such as /dev/null gets a plain write (it cannot be renamed over), and every
# path is tried before any work starts, so a long run never ends in a traceback about its output.
class OutputError(UsageError):
    """An output that could not be written after the work ran (a full disk, /dev/full): exit 2, one line."""


def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def _reason(e: OSError) -> str:
    return e.strerror or str(e)


def _special(path: Path) -> bool:
    """True for an existing file that is not a regular file or folder (a device, a FIFO, a socket)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def _target(path: str | os.PathLike, flag: str) -> Path:
    """The path a write to `path` changes: every symlink followed (a dangling one to the file it names)."""
    try:
        os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UsageError(f"{flag} {path}: a symlink loop ({_reason(e)})") from None
        if e.errno == errno.ENAMETOOLONG:
            longest = max(Path(path).parts, key=lambda part: len(os.fsencode(part)))
            raise UsageError(f"{flag} {path}: the name {longest[:40]}… is {len(os.fsencode(longest))} bytes, "
                             f"too long for the file system ({_reason(e)})") from None
    return Path(os.path.realpath(path))


def _try_writing_in(folder: Path, flag: str, shown) -> None:
    """Create and remove a scratch file in the existing `folder`; UsageError naming `flag` if that fails."""
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".parity-probe-")
    except OSError as e:
        raise UsageError(f"{flag} {shown}: cannot write in {folder} ({_reason(e)})") from None
    os.close(fd)
    os.unlink(tmp)


def _check_names(p: Path, existing: Path, flag: str, shown) -> None:
    """Every component of `p` below `existing` fits the file system's name limit."""
    limit = _name_max(existing)
    for part in p.relative_to(existing).parts:
        n = len(os.fsencode(part))
        if n > limit:
            raise UsageError(f"{flag} {shown}: the name {part[:40]}… is {n} bytes; this file system allows {limit}")


def _existing_ancestor(p: Path) -> Path:
    probe = p
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe


def writable_dir(path: str | os.PathLike, flag: str) -> Path:
    """`path` as a folder that exists or can be created and written, else UsageError naming `flag`.

    Tried, not just checked: a scratch file is created and removed in the folder (or in the nearest
    folder that exists), since root passes an access check under /proc and /sys and still cannot
    write there. Nothing is created for a folder that does not exist yet.
    """
    if not str(path).strip():
        raise UsageError(f"{flag}: an empty path; expected a folder (use . for the current folder)")
    real = _target(path, flag)
    if real.exists() and not real.is_dir():
        raise UsageError(f"{flag} {path}: is a file, expected a folder")
    probe = _existing_ancestor(real)
    if not probe.is_dir():
        raise UsageError(f"{flag} {path}: {probe} is a file, expected a folder")
    _check_names(real, probe, flag, path)
    _try_writing_in(probe, flag, path)
    return Path(path)


def writable_file(path: str | os.PathLike, flag: str) -> Path:
    """`path` as a file that can be (over)written, else UsageError naming `flag` (tried up front).

    A symlink is checked at its target; a device or FIFO (/dev/null) only needs write permission,
    since it gets a plain write.
    """
    if not str(path).strip():
        raise UsageError(f"{flag}: an empty path; expected a file path")
    p = Path(path)
    if str(path).endswith(os.sep):
        raise UsageError(f"{flag} {p}: is a folder, expected a file path")
    real = _target(path, flag)
    if real.is_dir():
        raise UsageError(f"{flag} {p}: is a folder, expected a file path")
    if _special(real):
        if not os.access(real, os.W_OK):
            raise UsageError(f"{flag} {p}: cannot write to {real}")
        return p
    if real.exists() and not os.access(real, os.W_OK):
        raise UsageError(f"{flag} {p}: the file is not writable")
    writable_dir(real.parent, flag)
    _check_names(real, real.parent if real.parent.exists() else _existing_ancestor(real), flag, p)
    return p


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: str | os.PathLike, write) -> Path:
    """Call write(binary file) on a temporary file beside the target of `path`, then rename it into
    place, so a reader never sees a half-written file.

    Symlinks are followed first (the link stays, its target gets the new content); a device or FIFO
    gets a plain write, since renaming over /dev/null would replace the device. A new file gets the
    usual mode (0666 less the umask), a replaced one keeps its own. Raises OutputError (exit 2, one
    line) when the write fails, and leaves no temporary file behind.
    """
    shown = path
    path = Path(os.path.realpath(path))
    try:
        if _special(path):
            with open(path, "wb") as f:
                write(f)
            return Path(shown)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except FileNotFoundError:
            mode = 0o666 & ~_umask()
        # the temporary name carries the final one when it fits the file system's limit
        prefix = f".{path.name}." if len(os.fsencode(path.name)) + 16 <= _name_max(path.parent) else ".parity-"
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=".tmp")
    except OSError as e:
        raise OutputError(f"cannot write {shown}: {_reason(e)}") from None
    try:
        os.fchmod(fd, mode)  # mkstemp makes 0600; result files are ordinary files
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException as e:
        os.unlink(tmp)
        if isinstance(e, OSError):
            raise OutputError(f"cannot write {shown}: {_reason(e)}") from None
        raise
    return Path(shown)


def write_text_atomic(text: str, path: str | os.PathLike) -> Path:
    return write_bytes_atomic(path, lambda f: f.write(text.encode()))


def write_json_atomic(obj, path: str | os.PathLike) -> Path:
    return write_text_atomic(json.dumps(obj, indent=2, default=float) + "\n", path)
