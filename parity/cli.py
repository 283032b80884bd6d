"""The `parity` command: parses arguments and hands them to one module of `parity.commands`.

Exit codes (`parity.console`): 0 all good, 1 a comparison failed, 2 bad input (one line on stderr,
nothing written), 130 interrupted by Ctrl-C (SIGINT) and 143 (128 + 15) by SIGTERM; both signals
end a run the same way, keeping what finished (`Interrupts`).

A reader that goes away (`parity list --json | head`) ends the output, not the run: the rest of the
output is dropped, nothing is printed on stderr, and the exit code is what the run computed
(`_Stdout`).
"""
from __future__ import annotations

import argparse
import atexit
import contextlib
import gc
import os
import signal
import sys
import threading

EXIT_TERMINATED = 128 + signal.SIGTERM  # 143: the shell's code for a process that SIGTERM ended
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupts:
    """SIGINT (Ctrl-C) and SIGTERM during a run. Either one ends it as Ctrl-C always did: a
    KeyboardInterrupt through the command, whose clean-up keeps what finished (`check --json` the
    finished results, `train` the finished epochs; `report` ends its workers), then exit 130, or 143
    for SIGTERM.

    Inside `deferred()` the first signal is only recorded, and the command stops at its next
    `check()`. `check`, `report` and single-device `train` run so (their parsers set
    `stops_between_steps`; start-up is deferred for every command): they stop between concepts,
    report tasks or training steps. A KeyboardInterrupt raised by the handler itself lands wherever
    Python happens to be, and two such places broke interrupted runs:
      * an XLA compilation: JAX's wait for XLA's compile thread lets a signal handler's exception end
        the wait, and the compile goes on in that thread. The interpreter's exit then destroys XLA's
        client while the thread still compiles for it: SIGSEGV (the core dump of an interrupted
        `parity check layers` shows the compile thread in `PjRtCompiler::CompileAndLoad` calling
        through a null pointer in `SingleDeviceSharding::Create`, and the main thread in
        `Py_FinalizeEx` → gc → `~PjRtClient` → `~ThreadPool`, joining it);
      * a garbage-collector callback (JAX registers one): Python prints "Exception ignored in
        _xla_gc_callback" and drops the KeyboardInterrupt, and the run went on to exit 0.
    A second signal raises at once (the user insists), and so does the first one in commands
    without safe points; `main` then ends the process by `_leave`, which no abandoned compile can
    crash. A dropped KeyboardInterrupt is dropped silently (`_unraisable`) and raised again by the
    next `check()`, and `main` exits 130/143 whenever a signal came, even if the command finished.
    After `hold()` (the run is ending: the command's clean-up, `main`'s exit) signals are only
    recorded. Only the main thread can install handlers; elsewhere `check()` never raises.
    """

    def __init__(self):
        self.signum: int | None = None  # the first signal received
        self.terminated = False  # a SIGTERM came (it sets the exit code, whichever signal ran first)
        self._deferred = 0
        self._stopping = False
        self._count = 0
        self._old: dict = {}

    # ------------------------------------------------------------ for the commands
    @contextlib.contextmanager
    def deferred(self):
        """Signals received in the block wait for `check()` (the first one; a second one raises)."""
        self._deferred += 1
        try:
            yield self
        finally:
            self._deferred -= 1

    def check(self) -> None:
        """Raise KeyboardInterrupt if a signal came and the run is not already ending (then hold)."""
        if self.signum is not None and not self._stopping:
            self._stopping = True
            raise KeyboardInterrupt

    def note(self) -> str:
        """What to add to "interrupted": the signal, unless it was Ctrl-C."""
        return " by SIGTERM" if self.terminated else ""

    @property
    def exit_code(self) -> int:
        """143 if a SIGTERM came at all, else 130. Not "the first signal's": CPython runs the handlers of
        signals that arrived during one C call (an XLA compile) in signal-number order, SIGINT before
        SIGTERM, so which came first cannot be told."""
        from parity.console import EXIT_INTERRUPTED
        return EXIT_TERMINATED if self.terminated else EXIT_INTERRUPTED

    # ------------------------------------------------------------ for main
    def _handler(self, signum, frame) -> None:
        if self.signum is None:
            self.signum = signum
        self.terminated = self.terminated or signum == signal.SIGTERM
        self._count += 1
        if self._stopping or (self._deferred and self._count == 1):
            return
        raise KeyboardInterrupt

    def _unraisable(self, info) -> None:
        """sys.unraisablehook: the KeyboardInterrupt of a signal raised where Python cannot propagate
        it (a gc callback, a __del__) is dropped without its "Exception ignored" traceback: the
        signal is recorded, and the next `check()` raises it again."""
        if isinstance(info.exc_value, KeyboardInterrupt) and self.signum is not None:
            return
        self._old_unraisable(info)

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for s in _SIGNALS:
                self._old[s] = signal.signal(s, self._handler)
            self._old_unraisable, sys.unraisablehook = sys.unraisablehook, self._unraisable

    def uninstall(self) -> None:
        for s, old in self._old.items():
            signal.signal(s, old if old is not None else signal.SIG_DFL)
        if self._old:
            sys.unraisablehook = self._old_unraisable
        self._old = {}

    def hold(self) -> None:
        """The run is ending: from now on signals are recorded, not raised."""
        self._stopping = True


class _Stdout:
    """sys.stdout during a run: when the reader closes the pipe, the output ends quietly instead of
    raising BrokenPipeError in whatever was printing. fd 1 is pointed at os.devnull (so that no later
    write, nor the interpreter's final flush, fails again) and the run goes on to its real result."""

    def __init__(self, stream):
        self._stream, self.closed_by_reader = stream, False

    def write(self, text: str) -> int:
        if not self.closed_by_reader:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._drop()
        return len(text)

    def flush(self) -> None:
        if not self.closed_by_reader:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._drop()

    def _drop(self) -> None:
        self.closed_by_reader = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError):  # not a file descriptor (a test's capture): nothing to point
            pass

    def __getattr__(self, name):  # isatty, fileno, encoding, …: the stream's own
        return getattr(self._stream, name)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse exits 2 on usage errors already; keep its message to one line
        from parity import console
        self.exit(console.EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from parity.commands import COMMANDS
    p = _Parser(prog="parity", description="Twin JAX/Flax and PyTorch implementations, compared.")
    p.set_defaults(interrupts=Interrupts())  # replaced by main's, whose handlers are installed
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for command in COMMANDS:
        command.add_parser(sub)
    return p


def main(argv=None) -> int:
    """Run one command; its exit code. `argv=None` (the `parity` script, `python -m parity.cli`)
    means the process is this run: an interrupted one then ends here, by `_leave`."""
    interrupts = Interrupts()
    interrupts.install()  # first, before the commands' imports
    stdout = sys.stdout = _Stdout(sys.stdout)
    try:
        code = _main(argv, interrupts)
        stdout.flush()
    finally:
        sys.stdout = stdout._stream
        if argv is not None:  # called in a process that goes on: its own handlers back
            interrupts.uninstall()
    if argv is None:
        if interrupts.signum is not None:
            _leave(code, interrupts)
        for s in _SIGNALS:  # the run is over: a signal during the interpreter's exit changes nothing
            signal.signal(s, signal.SIG_IGN)  # (late in it, Python puts the default, killing, action back)
    return code


def _main(argv, interrupts: Interrupts) -> int:
    with interrupts.deferred():  # imports and parsing: a signal waits for the command's start
        from parity import console
        args = build_parser().parse_args(argv)
        args.interrupts = interrupts
        out, err = console.consoles()
    try:
        if not getattr(args, "stops_between_steps", False):
            interrupts.check()  # a signal during start-up: a command without safe points stops here
        code = args.run(args, out, err)
        interrupts.hold()  # the command is over: a signal from here on is recorded, not raised
    except console.UsageError as e:
        interrupts.hold()
        console.print_error(err, str(e))
        code = console.EXIT_USAGE
    except KeyboardInterrupt as e:  # one line, saying what was kept (a command may raise it with a note)
        interrupts.hold()
        console.print_error(err, f"interrupted{interrupts.note()}{'; ' + str(e) if str(e) else ''}",
                            prefix="parity: ")
        return interrupts.exit_code
    if interrupts.signum is not None:  # the signal's KeyboardInterrupt was dropped, or came at the end
        console.print_error(err, f"interrupted{interrupts.note()} (the command had finished)", prefix="parity: ")
        return interrupts.exit_code
    return code


def _leave(code: int, interrupts: Interrupts) -> None:
    """End an interrupted process: the exit functions that libraries and this project registered
    (multiprocessing's semaphores and pools, temporary folders, the data-parallel workers), the
    output flushed, then `os._exit`. Not the interpreter's own exit: a KeyboardInterrupt raised
    while XLA compiled (a second Ctrl-C, or a command without safe points) leaves that compile
    running, and the interpreter's exit would destroy XLA's client under it (SIGSEGV, see
    `Interrupts`; tests/test_signals.py reproduces it). The garbage collector is off so that no
    collection while the exit functions run frees the client either, and `os._exit` runs no
    destructor (measured: 2 of 2 such exits crashed through `sys.exit`, none through this)."""
    interrupts.hold()
    gc.disable()
    try:
        atexit._run_exitfuncs()  # what the interpreter's exit would run first, in the same order
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (BrokenPipeError, OSError, ValueError):
                pass
        os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
