"""Starting, talking to and ending the worker processes of a data-parallel run.

A `Group` is the processes of one framework: N torch ranks (`torch.distributed` over gloo on the
CPU, NCCL on CUDA), started the way `torchrun --nproc-per-node N` starts them (the same entry point,
`python -m parity.distributed.worker`, with RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and
MASTER_PORT in the environment), or one JAX process that sees N devices (on the CPU:
`XLA_FLAGS=--xla_force_host_platform_device_count=N`, which must be set before JAX starts, hence a
fresh process; on a GPU machine the real devices).

The parent sends each process a command as one JSON line on its stdin and reads JSON lines back
from its stdout ("ready", "progress", "done", "error"); every process's stderr goes to a log file
whose last lines a failure quotes. Bulk data travels as .npz files in the group's job folder.

Ending every process, whatever happens:
- all processes of a group share one process group (not the parent's), so a signal reaches each
  rank and whatever it started, and the terminal's Ctrl-C reaches only the parent, which then ends
  them (`close`: "exit" on stdin, then SIGTERM, then SIGKILL to the process group, then reaped;
  a Ctrl-C or SIGTERM meanwhile waits until that is done);
- a rank that exits or reports an error ends the whole group at once, with its log's last line;
- a rank that sends nothing for `timeout` seconds while a command runs (hung, or waiting on a peer
  that hung) ends the whole group, naming every rank's last step;
- each worker asks the kernel to kill it when the parent dies (Linux `PR_SET_PDEATHSIG`) and checks
  its parent after every command, so not even a SIGKILLed parent leaves ranks behind.
"""
from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

# How long a worker may take to import torch and JAX and join its peers before the parent gives up.
# Measured 9-20 s on a busy 2-core machine for three processes starting at once.
STARTUP_TIMEOUT = 300.0
# Default seconds without any message from a rank while a command runs (each step sends progress).
TIMEOUT = 120.0
_GRACE = 3.0  # seconds a worker gets to leave by itself before SIGTERM, and after SIGTERM before SIGKILL

FAULT_ENV = "PARITY_DP_FAULT"  # tests only: "exit:RANK:STEP" or "hang:RANK:STEP" (docs in worker.py)
_REPO = str(Path(__file__).resolve().parents[2])


class DistributedError(RuntimeError):
    """A data-parallel run that could not finish: a rank died, hung or raised. One line; every
    process of the run has been ended when it is raised."""


def free_port() -> int:
    """A TCP port free on the loopback interface now (for torch's rendezvous store)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def xla_flags(n_devices: int, flags: str = "") -> str:
    """`flags` with the host-platform device count set to n (any earlier count replaced)."""
    kept = [f for f in flags.split() if not f.startswith("--xla_force_host_platform_device_count")]
    return " ".join(kept + [f"--xla_force_host_platform_device_count={n_devices}"])


def alive(pid: int) -> bool:
    """Whether process `pid` still exists (and is not a zombie waiting to be reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True  # no /proc: kill(0) succeeded


def _tail(path: Path, lines: int = 40) -> str:
    """The last meaningful line of a worker's log (the exception, for a traceback), or ''."""
    try:
        text = path.read_text(errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return ""
    text = [t.strip() for t in text if t.strip() and not t.startswith(("W0", "I0"))]
    return text[-1] if text else ""


@contextlib.contextmanager
def _signals_held():
    """Ctrl-C or SIGTERM received while processes are being ended waits until they are, so that a
    second signal cannot cut the clean-up short; the first one is then delivered again, to the
    handler the block found (KeyboardInterrupt by default, or `parity.cli`'s). Only the main thread
    can install handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    old = {s: signal.signal(s, lambda signum, _: held.append(signum)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
        if held:
            signal.raise_signal(held[0])


class Group:
    """The worker processes of one framework: `world` torch ranks, or one JAX process with `world`
    devices. Use as a context manager (or call `close`); `request` sends a command to every process
    and returns their replies."""

    def __init__(self, framework: str, world: int, device: str, job_dir: Path, timeout: float = TIMEOUT,
                 startup_timeout: float = STARTUP_TIMEOUT, env: dict | None = None, entry: str | None = None):
        if framework not in ("torch", "jax"):
            raise ValueError(f"framework must be 'torch' or 'jax', got {framework!r}")
        self.framework, self.world, self.device = framework, world, device
        self.job_dir, self.timeout, self.startup_timeout = Path(job_dir), float(timeout), float(startup_timeout)
        self.extra_env, self.entry = dict(env or {}), entry or "parity.distributed.worker"
        self.procs: list[subprocess.Popen] = []
        self.logs: list[Path] = []
        self.pgid: int | None = None
        self.ready, self.closed = False, False
        self.info: list[dict] = []
        self._queue: queue.Queue = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._last_step: dict[int, int] = {}
        self._ended: set[int] = set()  # processes whose output has ended (they exited)
        self._busy = False  # a command is in flight (or was, when it failed)

    # ------------------------------------------------------------ names
    @property
    def n_procs(self) -> int:
        return self.world if self.framework == "torch" else 1

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def _name(self, r: int) -> str:
        if self.framework == "torch":
            return f"torch rank {r}"
        return f"the JAX process ({self.world} devices)"

    # ------------------------------------------------------------ starting
    def _env(self, r: int, port: int) -> dict:
        env = dict(os.environ)
        env.update(self.extra_env)
        env["PYTHONPATH"] = os.pathsep.join([_REPO] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        env.update({"PARITY_DP_ROLE": self.framework, "PARITY_DP_DEVICE": self.device,
                    "PARITY_DP_PARENT": str(os.getpid()), "PARITY_DP_TIMEOUT": str(self.timeout),
                    "PYTHONUNBUFFERED": "1", "TORCHINDUCTOR_COMPILE_THREADS": "1",  # no compile-worker pool
                    "XLA_PYTHON_CLIENT_PREALLOCATE": "false"})  # docs/traps.md, trap 28
        if self.framework == "torch":
            env.update({"RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": str(self.world),
                        "LOCAL_WORLD_SIZE": str(self.world), "GROUP_RANK": "0",
                        "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
            env.setdefault("OMP_NUM_THREADS", "1")
        else:
            env["PARITY_DP_WORLD"] = str(self.world)
            if self.device == "cpu":  # before JAX starts: the reason this is a process of its own
                env["XLA_FLAGS"] = xla_flags(self.world, env.get("XLA_FLAGS", ""))
                env["JAX_PLATFORMS"] = "cpu"
        return env

    def start(self) -> "Group":
        """Start the processes (returns at once; `request` waits until they are ready)."""
        if self.procs:
            return self
        self.job_dir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        try:
            for r in range(self.n_procs):
                log = self.job_dir / f"{self.framework}-{r}.log"
                with open(log, "wb") as stderr:
                    p = subprocess.Popen(
                        [sys.executable, "-m", self.entry], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                        stderr=stderr, env=self._env(r, port), cwd=os.getcwd(),
                        process_group=0 if self.pgid is None else self.pgid)
                self.procs.append(p)
                self.logs.append(log)
                if self.pgid is None:
                    self.pgid = p.pid
                t = threading.Thread(target=self._read, args=(r, p), daemon=True,
                                     name=f"parity-dp-{self.framework}-{r}")
                t.start()
                self._threads.append(t)
        except BaseException:
            self.close()
            raise
        return self

    def _read(self, r: int, p: subprocess.Popen) -> None:
        for raw in p.stdout:
            try:
                msg = json.loads(raw)
            except ValueError:
                continue  # not a protocol line
            if isinstance(msg, dict):
                self._queue.put((r, msg))
        self._queue.put((r, None))  # end of stream: the process exited

    # ------------------------------------------------------------ talking
    def _send(self, cmd: dict) -> None:
        line = (json.dumps(cmd) + "\n").encode()
        for r, p in enumerate(self.procs):
            try:
                p.stdin.write(line)
                p.stdin.flush()
            except (BrokenPipeError, OSError):
                self._fail_dead(r, cmd.get("cmd", "?"))

    def _fail_dead(self, r: int, what: str):
        p = self.procs[r]
        try:
            code = p.wait(timeout=_GRACE)
        except subprocess.TimeoutExpired:
            code = None
        why = _tail(self.logs[r])
        self.close()
        how = "closed its output" if code is None else (
            f"was killed by signal {-code}" if code < 0 else f"exited with code {code}")
        raise DistributedError(f"{self._name(r)} (pid {p.pid}) {how} during {what!r}; stopped all "
                               f"{self.n_procs} process(es){': ' + why if why else ''}")

    def _wait(self, what: str, expect: str, timeout: float, on_progress=None) -> list[dict]:
        pending = set(range(self.n_procs))
        replies: dict[int, dict] = {}
        last = {r: time.monotonic() for r in pending}
        for r in sorted(pending & self._ended):
            self._fail_dead(r, what)
        while pending:
            left = min(last[r] for r in pending) + timeout - time.monotonic()
            if left <= 0:
                self._fail_hung(what, pending, timeout)
            try:
                r, msg = self._queue.get(timeout=min(left, 1.0))
            except queue.Empty:
                continue
            if msg is None:
                self._ended.add(r)
                if r in pending:
                    self._fail_dead(r, what)
                continue
            last[r] = time.monotonic()
            event = msg.get("event")
            if event == "progress":
                self._last_step[r] = msg.get("step", self._last_step.get(r, 0))
                if on_progress:
                    on_progress(r, msg)
            elif event == "error":
                self._fail_error(r, msg.get("message", "?"), what)
            elif event == expect:
                replies[r] = msg
                pending.discard(r)
        return [replies[r] for r in range(self.n_procs)]

    def _fail_error(self, r: int, message: str, what: str):
        """A rank reported an error. When a peer died just before (a collective then fails on every
        rank left), the dead peer is the cause and is named first."""
        deadline = time.monotonic() + 1.0
        dead = []
        while time.monotonic() < deadline and not dead:
            dead = [q for q, p in enumerate(self.procs) if q != r and p.poll() not in (None, 0)]
            time.sleep(0.05)
        if dead:
            q = dead[0]
            code, why = self.procs[q].returncode, _tail(self.logs[q])
            self.close()
            how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
            raise DistributedError(f"{self._name(q)} (pid {self.procs[q].pid}) {how} during {what!r}"
                                   f"{': ' + why if why else ''}; then {self._name(r)} failed ({message}); "
                                   f"stopped all {self.n_procs} process(es)")
        self.close()
        raise DistributedError(f"{self._name(r)} failed during {what!r}: {message}; "
                               f"stopped all {self.n_procs} process(es)")

    def _fail_hung(self, what: str, pending: set, timeout: float):
        steps = ", ".join(f"{'rank ' + str(r) if self.framework == 'torch' else 'process'} at step "
                          f"{self._last_step.get(r, 0)}" for r in sorted(pending))
        self.close()
        raise DistributedError(
            f"{self.framework}: no message for {timeout:g} s during {what!r} from "
            f"{', '.join(self._name(r) for r in sorted(pending))} (hung, or waiting on a peer that hung; "
            f"last progress: {steps}); stopped all {self.n_procs} process(es) (a slow machine may need a "
            f"longer --dp-timeout)")

    def wait_ready(self) -> list[dict]:
        """Wait until every process has started and joined its peers."""
        if self.closed:
            raise DistributedError(f"the {self.framework} group is closed")
        self.start()
        if not self.ready:
            self.info = self._wait("startup", "ready", self.startup_timeout)
            self.ready = True
        return self.info

    def request(self, cmd: dict, on_progress=None, timeout: float | None = None) -> list[dict]:
        """Send `cmd` to every process; their "done" replies, in rank order. DistributedError (with
        every process ended) when a process dies, reports an error or falls silent for `timeout`."""
        self.wait_ready()
        self._busy = True
        self._send(cmd)
        replies = self._wait(cmd.get("cmd", "?"), "done", self.timeout if timeout is None else timeout, on_progress)
        self._busy = False
        return replies

    # ------------------------------------------------------------ ending
    def close(self) -> None:
        """End every process: ask ("exit") if they are idle, then SIGTERM, then SIGKILL the process
        group; reap all. Processes still starting or inside a command cannot read the request, so
        they get SIGTERM at once."""
        if self.closed:
            return
        self.closed = True
        with _signals_held():
            self._end()

    def _end(self) -> None:
        polite = self.ready and not self._busy
        for p in self.procs:
            try:
                if polite and p.poll() is None:
                    p.stdin.write(b'{"cmd": "exit"}\n')
                    p.stdin.flush()
                p.stdin.close()
            except (BrokenPipeError, OSError, ValueError):
                pass
        deadline = time.monotonic() + (_GRACE if polite else 0.0)
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if sig is not None and self.pgid is not None:
                try:
                    os.killpg(self.pgid, sig)  # every rank and anything a rank started
                except (ProcessLookupError, PermissionError):
                    pass
                deadline = time.monotonic() + _GRACE
            for p in self.procs:
                try:
                    p.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
            if all(p.poll() is not None for p in self.procs):
                break
        if self.pgid is not None:  # anything a rank left in its process group
            try:
                os.killpg(self.pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for p in self.procs:
            try:
                p.wait(timeout=_GRACE)
            except subprocess.TimeoutExpired:
                pass
        for t in self._threads:  # their pipes end with the processes
            t.join(timeout=1.0)
        for p in self.procs:
            if p.stdout and not any(t.is_alive() for t in self._threads):
                p.stdout.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()
        return False
