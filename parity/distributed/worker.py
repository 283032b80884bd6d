"""The entry point of every data-parallel worker process: `python -m parity.distributed.worker`.

Role from the environment: PARITY_DP_ROLE=torch makes it one DDP rank (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR, MASTER_PORT: torchrun's variables, so `torchrun --nproc-per-node N -m
parity.distributed.worker --script JOB.json` runs it unchanged); PARITY_DP_ROLE=jax makes it the
JAX process over PARITY_DP_WORLD devices (the launcher sets XLA_FLAGS before this process starts).

Commands arrive as JSON lines on stdin (or, with `--script FILE`, from a JSON list in a file) and
replies leave as JSON lines on the original stdout; anything else a library prints goes to stderr
(the launcher's log). Commands: `free` (train from the initial weights, keeping the training state
at every segment start), `segments` (train given segments, each from a given state: teacher forcing
and float64 replays), `call` (run a function of `parity.distributed.experiments` on every rank),
`bench_prepare` / `bench_steps` (timing, `parity.distributed.timing`), `exit`. Bulk inputs and outputs are .npz / pickle files
named in the command; only rank 0 (torch) writes them.

PARITY_DP_FAULT (tests only) plants a failure: "exit:R:S" makes rank R exit with code 3 when it
reaches step S of a `free` command (S = 0: at start-up, before any import), "hang:R:S" makes it
sleep there for good.
"""
from __future__ import annotations

import argparse
import ctypes
import dataclasses
import datetime
import gc
import json
import os
import pickle
import signal
import sys
import threading
import time
import traceback

_PROTOCOL = None  # the file replies are written to (the process's original stdout)
_LOCK = threading.Lock()


def send(event: str, **fields) -> None:
    line = json.dumps({"event": event, **fields}, default=_jsonable) + "\n"
    with _LOCK:
        _PROTOCOL.write(line)
        _PROTOCOL.flush()


def _jsonable(v):
    import numpy as np
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    raise TypeError(f"not JSON serialisable: {type(v).__name__}")


def _guard_parent() -> None:
    """Die with the parent: PR_SET_PDEATHSIG on Linux, and a watcher thread for the rest."""
    parent = int(os.environ.get("PARITY_DP_PARENT", "0") or 0)
    if not parent:
        return  # started by hand or by torchrun: nobody to follow
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
    except OSError:
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)

    def watch():
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)
    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def _claim_stdout() -> None:
    """Keep the original stdout for protocol lines; point fd 1 at stderr for everything else."""
    global _PROTOCOL
    _PROTOCOL = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr


class Fault:
    """The failure PARITY_DP_FAULT plants (tests only)."""

    def __init__(self, spec: str, rank: int):
        self.kind = self.step = None
        if spec:
            kind, r, s = spec.split(":")
            if int(r) == rank:
                self.kind, self.step = kind, int(s)

    def at(self, step: int) -> None:
        if self.kind is None or step != self.step:
            return
        if self.kind == "exit":
            os._exit(3)
        while True:  # hang
            time.sleep(3600)


class Worker:
    """One process's state across commands: its framework, rank, the sides it has built, the bench step."""

    def __init__(self):
        # torchrun sets RANK but knows nothing of PARITY_DP_ROLE: a rank it starts is a torch rank
        self.role = os.environ.get("PARITY_DP_ROLE") or ("torch" if "RANK" in os.environ else "")
        if self.role not in ("torch", "jax"):
            raise SystemExit("parity.distributed.worker: set PARITY_DP_ROLE=torch or jax (or start it with torchrun)")
        self.device = os.environ.get("PARITY_DP_DEVICE", "cpu")
        self.timeout = float(os.environ.get("PARITY_DP_TIMEOUT", "120"))
        if self.role == "torch":
            self.rank, self.world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        else:
            self.rank, self.world = 0, int(os.environ["PARITY_DP_WORLD"])
        self.fault = Fault(os.environ.get("PARITY_DP_FAULT", ""), self.rank)
        self.sides: dict = {}
        self.benches: dict = {}  # key → function(k) running k timed steps
        self.bench_workload = None

    def start(self) -> dict:
        import torch
        from parity import precision  # noqa: F401  (x64 on: float64 runs stay float64)
        torch.set_num_threads(1)
        if self.role == "torch":
            import torch.distributed as dist
            backend = "nccl" if self.device == "cuda" else "gloo"
            if self.device == "cuda":
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", self.rank)))
            # the collectives' own timeout lies well beyond the parent's watchdog, so that the parent,
            # which sees every rank, is the one that diagnoses a hang and ends the group
            dist.init_process_group(backend, timeout=datetime.timedelta(seconds=2 * self.timeout + 30))
            return {"rank": self.rank, "world": self.world, "backend": backend, "pid": os.getpid()}
        import jax
        devices = jax.devices("gpu" if self.device == "cuda" else "cpu")
        if len(devices) < self.world:
            raise RuntimeError(f"JAX sees {len(devices)} {self.device} device(s), {self.world} needed")
        return {"rank": 0, "world": self.world, "devices": [str(d) for d in devices[:self.world]],
                "pid": os.getpid()}

    def close(self) -> None:
        if self.role == "torch":
            import torch.distributed as dist
            if dist.is_initialized():
                dist.destroy_process_group()

    # ------------------------------------------------------------ commands
    def run(self, cmd: dict) -> dict:
        from parity import precision
        with precision.policy("strict"):
            return getattr(self, "cmd_" + cmd["cmd"])(cmd)

    def side(self, spec: dict):
        """The side for a run spec (built once per spec: model, config, options, inputs)."""
        key = json.dumps({k: spec[k] for k in ("cfg", "kwargs", "inputs", "options")}, sort_keys=True)
        if key not in self.sides:
            import numpy as np
            from parity import data, training
            from parity.distributed import sides
            opts = spec.get("options", {})
            cfg = training.Config(**spec["cfg"])
            if opts.get("lr_scale"):  # a planted defect (tests): this side's learning rate scaled
                cfg = dataclasses.replace(cfg, lr=cfg.lr * opts["lr_scale"])
            z = np.load(spec["inputs"])
            ds = data.Dataset(spec.get("data_name", "data"), z["x_train"], z["y_train"], z["x_test"], z["y_test"])
            ds = ds.astype(cfg.dtype)
            sd = {k[3:]: z[k] for k in z.files if k.startswith("sd/")}
            if self.role == "torch":
                s = sides.DDPSide(cfg, spec["kwargs"], sd, ds, sync_bn=opts.get("sync_bn", False))
            else:
                s = sides.ShardedJaxSide(cfg, spec["kwargs"], sd, ds, world=self.world,
                                         per_device=opts.get("per_device", False))
            self.sides = {key: s}  # one side at a time: a new spec replaces the last one
        return self.sides[key]

    def _progress(self):
        state = {"step": 0, "sent": 0.0}

        def advance():
            state["step"] += 1
            self.fault.at(state["step"])
            now = time.monotonic()
            if now - state["sent"] > 0.25:
                send("progress", step=state["step"])
                state["sent"] = now
        return advance

    def _write(self, path: str, arrays: dict) -> None:
        """Rank 0 writes the result file (atomically: a partial file never carries the final name)."""
        if self.rank != 0:
            return
        import numpy as np
        tmp = path + ".tmp.npz"
        np.savez(tmp, **arrays)
        os.replace(tmp, path)

    def cmd_free(self, cmd: dict) -> dict:
        """Train from the initial weights over `batches`, epoch by epoch; keep the training state
        at every segment start (every `segment_steps` steps) when asked."""
        import numpy as np
        from parity.distributed import states
        s = self.side(cmd)
        batches = np.load(cmd["inputs"])["batches"]
        spe, k = cmd["steps_per_epoch"], cmd.get("segment_steps")
        advance = self._progress()
        losses, epochs, kept, step = [], [], [], 0
        for e in range(len(batches) // spe):
            rows = batches[e * spe:(e + 1) * spe]
            cuts = [i for i in range(1, len(rows)) if k and (step + i) % k == 0]
            parts = []
            for part in np.split(rows, cuts):
                if k and step % k == 0:
                    kept.append(s.state())
                parts.append(s.epoch(part, advance))
                step += len(part)
            ep = np.concatenate(parts)
            losses.append(ep)
            epochs.append({"epoch": e + 1, "train_loss": float(np.mean(ep)), **s.evaluate()})
        out = {"losses": np.concatenate(losses), "test_outputs": s.test_outputs(),
               "epochs": np.array(json.dumps(epochs))}
        out.update(states.pack(kept, "state"))
        out.update({"final/" + n: v for n, v in s.weights().items()})
        self._write(cmd["out"], out)
        return {"steps": step, "seconds": s.seconds, "first_step_seconds": s.first_step_seconds}

    def cmd_segments(self, cmd: dict) -> dict:
        """Each segment from its own state on its own rows: losses and test outputs after it."""
        import numpy as np
        from parity.distributed import states
        s = self.side(cmd)
        z = np.load(cmd["segments"])
        starts = states.unpack(z, "state")
        advance = self._progress()
        out = {}
        for i, st in enumerate(starts):
            s.load_state(st)
            out[f"losses/{i}"] = s.epoch(z[f"rows/{i}"], advance)
            out[f"outputs/{i}"] = s.test_outputs()
        self._write(cmd["out"], out)
        return {"segments": len(starts)}

    def cmd_call(self, cmd: dict) -> dict:
        """Run experiments.<fn>(worker, **kwargs) on every process; rank 0's result is pickled to `out`."""
        from parity.distributed import experiments
        fn = getattr(experiments, cmd["fn"])
        result = fn(self, **cmd.get("kwargs", {}))
        if self.rank == 0 and cmd.get("out"):
            tmp = cmd["out"] + ".tmp"
            with open(tmp, "wb") as f:
                pickle.dump(result, f)
            os.replace(tmp, cmd["out"])
        return {}

    def cmd_bench_prepare(self, cmd: dict) -> dict:
        """Build the step to time under `key`; steps of another workload are dropped first."""
        from parity.distributed import timing
        spec = cmd["spec"]
        workload = {k: v for k, v in spec.items() if k != "mode"}
        if self.bench_workload != workload:
            self.benches, self.bench_workload = {}, workload
        self.benches.pop(cmd["key"], None)
        self.benches[cmd["key"]] = timing.build_steps(self, **spec)
        gc.collect()
        gc.freeze()  # what exists now is never scanned again: no collection pass inside a timing
        return {}

    def cmd_bench_steps(self, cmd: dict) -> dict:
        """k steps with the garbage collector off, as the harness times in-process steps (measured:
        without it, a collection pass of 0.8-1 s landed in one call of every few)."""
        was = gc.isenabled()
        gc.disable()
        try:
            t0 = time.perf_counter()
            self.benches[cmd["key"]](int(cmd["steps"]))
            return {"seconds": time.perf_counter() - t0}
        finally:
            if was:
                gc.enable()


def _commands(script: str | None):
    if script:
        with open(script) as f:
            yield from json.load(f)
        return
    for line in sys.stdin:
        if line.strip():
            yield json.loads(line)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m parity.distributed.worker")
    p.add_argument("--script", help="a JSON list of commands to run instead of reading stdin (for torchrun)")
    args = p.parse_args(argv)
    _claim_stdout()
    _guard_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when a worker ends
    w = Worker()
    w.fault.at(0)  # step 0: before the worker has imported anything or joined its peers
    try:
        info = w.start()
        gc.collect()
        gc.freeze()  # the imported libraries' objects: later collections skip them
        send("ready", **info)
    except Exception as e:
        traceback.print_exc()
        send("error", message=f"startup: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        return 1
    code = 0
    try:
        for cmd in _commands(args.script):
            if cmd.get("cmd") == "exit":
                break
            try:
                t0 = time.perf_counter()
                reply = w.run(cmd) or {}
                if cmd["cmd"] != "bench_steps":  # the log says what each command cost
                    print(f"parity worker: {cmd['cmd']} took {time.perf_counter() - t0:.3f} s", file=sys.stderr)
                send("done", cmd=cmd["cmd"], **reply)
            except Exception as e:
                traceback.print_exc()
                first = str(e).splitlines()[0] if str(e) else ""
                send("error", message=f"{type(e).__name__}: {first}")
                code = 1
                break  # a rank that failed leaves: its peers cannot go on without it
    finally:
        if code == 0:
            w.close()
    return code


if __name__ == "__main__":
    sys.exit(main())
