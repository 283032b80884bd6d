"""Ctrl-C (SIGINT) and SIGTERM sent to real `parity` processes: the exit code is 130 or 143 every
time, the partial results are kept where Ctrl-C keeps them, and nothing is left behind (no traceback,
no worker process, no staging or temporary folder, no leaked semaphore).

An interrupted `parity check` used to die of SIGSEGV in most runs: a KeyboardInterrupt raised while
XLA compiled left the compile running in XLA's thread, and the interpreter's exit destroyed XLA's
client under it (parity/cli.py, `Interrupts`). A SIGINT could also vanish inside JAX's
garbage-collector callback, and the run went on to exit 0 with a complete file.
"""
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BROKEN = ("Traceback", "Fatal Python error", "Exception ignored", "leaked semaphore", "resource_tracker")


def _start(args, tmp_path, stdout=subprocess.PIPE):
    tmp = tmp_path / "tmp"  # the run's temporary folders go here, to be looked at afterwards
    tmp.mkdir(exist_ok=True)
    env = dict(os.environ, TMPDIR=str(tmp))
    return subprocess.Popen([sys.executable, "-m", "parity.cli", *args], cwd=REPO, stdout=stdout,
                            stderr=subprocess.PIPE, env=env)


def _signal_at(p, times_and_signals, t0):
    """Send each signal at its time after t0; False if the process had ended before the first one."""
    for k, (t, sig) in enumerate(times_and_signals):
        time.sleep(max(0.0, t0 + t - time.monotonic()))
        if k == 0 and p.poll() is not None:
            return False
        p.send_signal(sig)
    return True


def _lines(err: bytes) -> list[str]:
    text = err.decode(errors="replace")
    for bad in BROKEN:
        assert bad not in text, text[-3000:]
    return [line for line in text.splitlines() if line.strip()]


def _ours_left(tmp: Path) -> list[str]:
    """What this project (or multiprocessing on its behalf) left in the temporary folder."""
    return sorted(p.name for p in tmp.iterdir() if p.name.startswith(("parity", "pymp-", "tmp", ".")))


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _children(pid: int) -> list[int]:
    kids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        kids.append(int(d))
            except (OSError, ValueError, IndexError):
                continue
    return kids


def _check_partial(path: Path, line: str) -> int:
    """The partial results file: valid JSON marked incomplete, holding the number of results the
    line names, each once, float32 before float64 (the order they ran in)."""
    doc = json.loads(path.read_text())
    n = len(doc["results"])
    assert doc["complete"] is False
    assert f"wrote the {n} finished results to {path}" in line, line
    keys = [(r["concept"], r["dtype"]) for r in doc["results"]]
    assert len(set(keys)) == n and all(c.startswith("layers.") for c, _ in keys)
    dtypes = [d for _, d in keys]
    assert dtypes == sorted(dtypes, key=["float32", "float64"].index)
    return n


# ---------------------------------------------------------------- parity check
def test_check_interrupted_at_any_moment_exits_130_and_keeps_a_valid_partial_file(tmp_path):
    """Ctrl-C at eight moments from start-up to mid-run: exit 130 every time (it was SIGSEGV in about
    two runs of three, or 0 when the signal vanished), one line on stderr, and the finished results
    in the file when one was asked for. Both dtypes and no compilation cache (`check` keeps one by
    default, and a warm one finishes a run in a few seconds), so that no run can finish before its
    signal."""
    moments = [0.5, 2.0, 4.0, 6.5, 9.0, 12.0, 15.5, 20.0]
    interrupted, kept = 0, []
    for k, t in enumerate(moments):
        path = tmp_path / f"r{k}.json"
        with_file = k not in (1, 5)  # two runs without --json: the interrupt alone
        args = ["check", "layers", "--dtype", "float32", "float64", "--no-cache"] + (["--json", str(path)] if with_file else [])
        t0 = time.monotonic()
        p = _start(args, tmp_path)
        sent = _signal_at(p, [(t, signal.SIGINT)], t0)
        out, err = p.communicate(timeout=300)
        lines = _lines(err)  # a signal Python dropped said "Exception ignored in _xla_gc_callback"
        if not sent or p.returncode == 0:  # a machine fast enough to finish first (or to be exiting)
            assert p.returncode == 0 and b" passed, 0 failed" in out, (t, p.returncode, lines[-5:])
            continue
        assert p.returncode == 130, (t, p.returncode, lines[-5:])
        interrupted += 1
        assert lines[-1].startswith("parity: interrupted"), lines[-5:]
        if with_file:
            kept.append(_check_partial(path, lines[-1]))
        else:
            assert lines[-1] == "parity: interrupted" and not path.exists()
    assert interrupted >= 6, f"only {interrupted} of {len(moments)} runs were still running at their signal"
    assert kept and max(kept) > 0, kept  # the later signals came after some concepts had finished


def test_sigterm_ends_check_as_ctrl_c_does_with_143(tmp_path):
    path = tmp_path / "r.json"
    t0 = time.monotonic()
    p = _start(["check", "layers", "--dtype", "float32", "float64", "--no-cache", "--json", str(path)], tmp_path)
    assert _signal_at(p, [(6.0, signal.SIGTERM)], t0)
    _, err = p.communicate(timeout=300)
    lines = _lines(err)
    assert p.returncode == 143, lines[-5:]
    assert lines[-1].startswith("parity: interrupted by SIGTERM; wrote the"), lines[-5:]
    _check_partial(path, lines[-1])
    assert _ours_left(tmp_path / "tmp") == []


@pytest.mark.parametrize("signals", [(signal.SIGINT, signal.SIGINT), (signal.SIGTERM, signal.SIGINT)],
                         ids=["ctrl-c-twice", "sigterm-then-ctrl-c"])
def test_a_second_signal_stops_at_once_and_a_sigterm_sets_the_code(tmp_path, signals):
    """The second signal raises wherever Python is, XLA's compilation included: the run still ends
    without a crash, with 143 if a SIGTERM came (CPython runs the handlers of signals that arrive
    during one C call in signal-number order, SIGINT first, so which came first cannot be told;
    seen once in CI: SIGTERM at 7.0 s and SIGINT at 7.2 s both during a compile), and with its
    partial file (unless the second signal came while the frameworks were still being imported:
    then the line says nothing was written, and nothing is)."""
    path = tmp_path / "r.json"
    t0 = time.monotonic()
    p = _start(["check", "layers", "--dtype", "float32", "float64", "--no-cache", "--json", str(path)], tmp_path)
    assert _signal_at(p, [(7.0, signals[0]), (7.2, signals[1])], t0)
    _, err = p.communicate(timeout=300)
    lines = _lines(err)
    assert p.returncode == (143 if signals[0] == signal.SIGTERM else 130), lines[-5:]
    assert lines[-1].startswith("parity: interrupted"), lines[-5:]
    if "wrote the" in lines[-1] or path.exists():
        _check_partial(path, lines[-1])


def test_an_abandoned_xla_compile_does_not_crash_the_exit():
    """The cause, reduced: SIGINT while XLA compiles ends JAX's wait but not the compile. `_leave`
    (how an interrupted `parity` process ends) exits 130; the interpreter's own exit, at this point,
    dies of SIGSEGV (checked by hand: 2 of 2 runs; not asserted, it is XLA's behaviour)."""
    code = """if True:
        import os, signal, sys, threading
        import jax, jax.numpy as jnp
        from parity.cli import Interrupts, _leave
        # Python's own Ctrl-C handler, also where this test runs with SIGINT ignored (a job started in
        # the background by a non-interactive shell inherits SIG_IGN, and Python then keeps it)
        signal.signal(signal.SIGINT, signal.default_int_handler)

        def f(x):
            for i in range(300):
                x = jnp.tanh(jnp.sin(x) @ x + i).T
            return x.sum()
        lowered = jax.jit(jax.grad(f)).lower(jnp.ones((8, 8)))  # tracing done: what follows is XLA's
        threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
        try:
            lowered.compile()
        except KeyboardInterrupt:
            print("interrupted the compile", flush=True)
            _leave(130, Interrupts())
        print("compiled before the signal", flush=True)
    """
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.stdout.strip() == "interrupted the compile", (r.stdout, r.stderr[-2000:])
    assert r.returncode == 130, r.stderr[-2000:]


# ---------------------------------------------------------------- parity report
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_report_ends_on_a_signal_to_its_main_process_alone(tmp_path, sig):
    """SIGINT or SIGTERM to the main process only (not the terminal's whole job), while its worker
    runs concepts: exit 130/143 (SIGINT was dropped inside JAX's gc callback and the run went on to 0),
    the worker ended, no semaphore leaked, nothing of ours left in the temporary folder."""
    p = _start(["report", "--html", str(tmp_path / "site"), "activations", "layers", "--jobs", "2", "--no-cache"],
               tmp_path)
    try:
        deadline, workers = time.monotonic() + 120, []
        while not workers and p.poll() is None and time.monotonic() < deadline:
            workers = [k for k in _children(p.pid) if "spawn_main" in _cmdline(k)]
            time.sleep(0.2)
        assert workers, "the worker did not start"
        time.sleep(6.0)  # the worker imports the frameworks and takes tasks
        p.send_signal(sig)
        _, err = p.communicate(timeout=180)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    lines = _lines(err)
    assert p.returncode == (130 if sig == signal.SIGINT else 143), lines[-5:]
    assert lines[-1].startswith("parity: interrupted"), lines[-5:]
    assert not [w for w in workers if _alive(w)]
    assert _ours_left(tmp_path / "tmp") == []


# ---------------------------------------------------------------- parity train
def _wait_for_line(p, prefix: bytes, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while p.poll() is None and time.monotonic() < deadline:
        if select.select([p.stdout], [], [], 0.5)[0]:
            line = p.stdout.readline()
            if line.startswith(prefix):
                return True
    return False


def test_sigterm_ends_train_keeping_the_finished_epochs(tmp_path):
    logs = tmp_path / "logs"
    p = _start(["train", "--model", "simple_net", "--data", "digits", "--epochs", "200", "--log-dir", str(logs),
                "--name", "t"], tmp_path)
    try:
        assert _wait_for_line(p, b"epoch   1", 180), "no epoch finished"
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    lines = _lines(err)
    assert p.returncode == 143, lines[-5:]
    doc = json.loads((logs / "t" / "summary.json").read_text())
    n = len(doc["epochs"])
    assert doc["complete"] is False and [e["epoch"] for e in doc["epochs"]] == list(range(1, n + 1)) and n < 200
    assert lines[-1].startswith(f"parity: interrupted by SIGTERM; wrote the {n} finished epoch"), lines[-5:]
    assert [q.name for q in logs.iterdir()] == ["t"] and [q.name for q in (logs / "t").iterdir()] == ["summary.json"]
    assert _ours_left(tmp_path / "tmp") == []


def test_sigterm_ends_data_parallel_train_and_every_worker(tmp_path):
    """SIGTERM to `train --data-parallel 2` once its three workers run: exit 143, no worker left, no
    staging folder beside the run folder, no parity-dp-* folder in the temporary folder."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs 2 CPU cores")
    logs = tmp_path / "logs"
    p = _start(["train", "--model", "simple_net", "--data", "digits", "--epochs", "3", "--framework", "both",
                "--data-parallel", "2", "--log-dir", str(logs), "--name", "t"], tmp_path)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 180
        while len(workers) < 3 and p.poll() is None and time.monotonic() < deadline:
            workers = [k for k in _children(p.pid) if "parity.distributed.worker" in _cmdline(k)]
            time.sleep(0.2)
        assert len(workers) == 3, "the workers did not start"
        time.sleep(2.0)
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    lines = _lines(err)
    assert p.returncode == 143, lines[-5:]
    assert lines[-1].startswith("parity: interrupted by SIGTERM"), lines[-5:]
    assert not [w for w in workers if _alive(w)]
    left = [q.name for q in logs.iterdir()] if logs.exists() else []
    assert left in ([], ["t"]) and (not left or [q.name for q in (logs / "t").iterdir()] == ["summary.json"])
    assert _ours_left(tmp_path / "tmp") == []


def test_a_sigterm_sets_the_code_whichever_handler_runs_first():
    """Both handlers of one C call's signals run in signal-number order (SIGINT's first): the code is
    143 all the same, and two Ctrl-Cs keep 130."""
    from parity.cli import Interrupts
    both = Interrupts()
    with both.deferred():
        both._handler(signal.SIGINT, None)  # deferred: only recorded
        with pytest.raises(KeyboardInterrupt):
            both._handler(signal.SIGTERM, None)  # a second signal raises at once
    assert both.exit_code == 143 and both.note() == " by SIGTERM"
    twice = Interrupts()
    with twice.deferred():
        twice._handler(signal.SIGINT, None)
        with pytest.raises(KeyboardInterrupt):
            twice._handler(signal.SIGINT, None)
    assert twice.exit_code == 130 and twice.note() == ""
