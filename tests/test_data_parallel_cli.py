"""`parity train --data-parallel N`: the done case (simple_net on digits, both frameworks, 2 ranks on
the CPU: per-step agreement printed, TensorBoard files and checkpoints per framework), bad input
(exit 2, one line, nothing started or written), a rank that dies mid-training (exit 1, one line, no
worker left, no run folder) and Ctrl-C (exit 130, one line, no worker left, no half-written file; the
finished single-device epochs are kept, marked incomplete)."""
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from parity import checkpoints, data, training
from parity.cli import main
from parity.distributed import compare, launch
from test_data_parallel import WORLD, worker_children

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(compare.cores() < WORLD, reason=f"needs {WORLD} CPU cores")


def _scalars(folder, tag):
    acc = EventAccumulator(str(folder))
    acc.Reload()
    return [e.value for e in acc.Scalars(tag)]


def _train(tmp_path, *args):
    return main(["train", "--model", "simple_net", "--data", "digits", "--epochs", "1", "--log-dir", str(tmp_path),
                 "--name", "t", *args])


def test_train_data_parallel_prints_agreement_and_writes_events_per_framework(tmp_path, capsys):
    assert _train(tmp_path, "--framework", "both", "--data-parallel", str(WORLD)) == 0
    out = capsys.readouterr().out
    for name in ("torch: ddp vs single", "jax: sharded vs single", "ddp: jax vs torch"):
        assert f"data-parallel {name}: AGREE" in out
        assert f"max |Δ| {name}" in out  # the per-epoch table of per-step differences
    run = tmp_path / "t"
    summary = json.loads((run / "summary.json").read_text())
    steps = summary["steps"]
    dp = summary["data_parallel"]
    assert dp["world"] == WORLD and all(c["ok"] for c in dp["comparisons"].values())
    for name, c in dp["comparisons"].items():
        assert len(c["free_running_abs_diff"]) == steps, name
    for sub in ("jax", "torch", f"jax-dp{WORLD}", f"torch-ddp{WORLD}"):
        assert len(_scalars(run / sub, "loss/train_step")) == steps, sub
    np.testing.assert_array_equal(_scalars(run / f"torch-ddp{WORLD}", "loss/train_step"),
                                  np.float32(dp["losses"]["torch"]))
    assert len(_scalars(run / f"jax-dp{WORLD}", "agreement/jax_sharded_vs_single")) == steps
    # the data-parallel models' checkpoints load into either framework and predict alike
    ds = data.load("digits")
    kwargs = training.model_kwargs("simple_net", ds)
    for ckpt in (run / f"torch-ddp{WORLD}" / "model.pt", run / f"jax-dp{WORLD}" / "model.msgpack"):
        jm, tm = (training.build("simple_net", kwargs, fw, "float32") for fw in ("jax", "torch"))
        checkpoints.load_checkpoint(ckpt, jm)
        checkpoints.load_checkpoint(ckpt, tm)
        assert (training.predict(jm, ds.x_test).argmax(-1) == training.predict(tm, ds.x_test).argmax(-1)).all()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t"]  # no staging folder left
    assert not list(run.rglob("*.tmp*"))
    assert not worker_children()


@pytest.mark.parametrize("args,message", [
    (["--data-parallel", str(compare.cores() + 1)], "more than the"),
    (["--data-parallel", "2", "--batch-size", "63"], "does not split into 2 equal shards"),
    (["--data-parallel", "0"], "integer >= 1"),
    (["--dp-timeout", "5"], "--dp-timeout applies with --data-parallel N only"),
    (["--data-parallel", "2", "--dp-timeout", "-1"], "--dp-timeout must be a number of seconds > 0"),
])
def test_bad_data_parallel_input_exits_2_with_one_line(tmp_path, capsys, args, message):
    assert _train(tmp_path, *args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and err.startswith("parity: error:")
    assert not list(tmp_path.iterdir()) and not worker_children()


def test_a_dead_rank_fails_the_run_with_one_line_and_leaves_nothing(tmp_path, capsys, monkeypatch):
    # torch rank 1 exits as it starts (a rank dying mid-step, mid-collective, is
    # test_data_parallel.py::test_a_dead_rank_mid_step_ends_every_worker)
    monkeypatch.setenv("PARITY_DP_FAULT", "exit:1:0")
    assert _train(tmp_path, "--framework", "torch", "--data-parallel", str(WORLD), "--dp-timeout", "60") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "data-parallel training failed: torch rank 1" in err[0] and "exited with code 3" in err[0]
    assert "stopped all 2 process(es)" in err[0]
    assert not list(tmp_path.iterdir())  # no run folder, no staging folder: no half-written file
    assert not worker_children()


def _workers_of(parent: int) -> list[int]:
    """Worker processes started by process `parent` (their environment names it), wherever they are."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/environ", "rb") as f:
                    if f"PARITY_DP_PARENT={parent}".encode() in f.read().split(b"\0"):
                        out.append(int(d))
            except OSError:
                continue
    return [p for p in out if launch.alive(p)]


@pytest.mark.parametrize("keep_an_epoch", [False, True], ids=["at-once", "after-epoch-1"])
def test_ctrl_c_ends_every_worker_and_keeps_only_the_finished_epochs(tmp_path, keep_an_epoch):
    """A real SIGINT (what the terminal sends on Ctrl-C) to a real `parity train --data-parallel 2`
    process once its workers run: exit 130 with one line, no worker left anywhere, no staging folder;
    the single-device epochs that finished are kept in summary.json, marked incomplete.
    One SIGINT only: Python drops a KeyboardInterrupt raised inside JAX's garbage-collector callback
    (measured: one Ctrl-C of three during a JAX compilation), which `parity.cli.Interrupts` raises again at the next safe point."""
    cmd = [sys.executable, "-m", "parity.cli", "train", "--model", "simple_net", "--data", "digits", "--epochs", "3",
           "--framework", "both", "--data-parallel", str(WORLD), "--log-dir", str(tmp_path), "--name", "t"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    seen: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while len(seen) < WORLD + 1 and p.poll() is None and time.monotonic() < deadline:
            seen = _workers_of(p.pid)  # two torch ranks and the JAX process
            time.sleep(0.2)
        assert len(seen) == WORLD + 1, "the workers did not start"
        if keep_an_epoch:  # wait for the single-device run's first epoch line
            while p.poll() is None and time.monotonic() < deadline:
                if select.select([p.stdout], [], [], 0.5)[0] and p.stdout.readline().startswith(b"epoch   1"):
                    break
        p.send_signal(signal.SIGINT)  # once: a Ctrl-C must not be lost (parity.cli.Interrupts)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 130, err.decode()
    lines = err.decode().strip().splitlines()
    assert lines[-1].startswith("parity: interrupted"), lines
    assert not [q for q in seen if launch.alive(q)] and not _workers_of(p.pid)
    kept = json.loads((tmp_path / "t" / "summary.json").read_text()) if (tmp_path / "t").exists() else None
    assert kept is not None or not keep_an_epoch
    if kept is None:  # interrupted before the first single-device epoch ended
        assert not list(tmp_path.iterdir()) and "nothing written" in lines[-1]
    else:
        assert [p.name for p in tmp_path.iterdir()] == ["t"] and [p.name for p in (tmp_path / "t").iterdir()] == [
            "summary.json"]  # no staging folder, no events, no checkpoints
        assert kept["complete"] is False and "data_parallel" not in kept
        assert [e["epoch"] for e in kept["epochs"]] == list(range(1, len(kept["epochs"]) + 1))
        assert f"wrote the {len(kept['epochs'])} finished epoch" in lines[-1]
