"""Data-parallel parity on the real engines (parity/distributed): torch DDP over 2 gloo ranks and JAX
sharded over 2 host devices, against each other and against one device, by the teacher-forced curve
rule of parity/curves.py; the BatchNorm case; the data-parallel traps (docs/traps.md, traps 30-34);
and a hung rank. One set of worker processes serves the module (started once: importing torch and
JAX in three processes is most of the cost); every test checks that no worker outlives what it
started, and the module checks at the end that none is left at all.
"""
import os

import numpy as np
import pytest
import torch
from torch.utils.data.distributed import DistributedSampler

from parity import curves, data, training
from parity.distributed import compare, launch
from parity.tolerances import training_curve

WORLD = 2
pytestmark = pytest.mark.skipif(compare.cores() < WORLD, reason=f"needs {WORLD} CPU cores")


def worker_children() -> list[int]:
    """Worker processes whose parent is this process (none may be left once a session is closed)."""
    me, out = os.getpid(), []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == me and b"parity.distributed.worker" in cmd:
            out.append(int(d))
    return out


class _Sessions:
    """The module's worker processes, started on first use and again if a test ended them."""

    def __init__(self):
        self.current, self.pids = None, set()

    def get(self) -> compare.Session:
        if self.current is None or self.current.closed:
            self.current = compare.Session(WORLD).start()
            self.pids |= set(self.current.pids)
        return self.current

    def close(self):
        if self.current is not None:
            self.current.close()


@pytest.fixture(scope="module")
def sessions():
    s = _Sessions()
    yield s
    s.close()
    assert not [p for p in s.pids if launch.alive(p)], "a worker process outlived its session"
    assert not worker_children()


@pytest.fixture(scope="module")
def digits():
    """640 training digits: 10 steps of 64 per epoch (5 per rank)."""
    ds = data.load_digits()
    return data.Dataset("digits", ds.x_train[:640], ds.y_train[:640], ds.x_test, ds.y_test)


# ---------------------------------------------------------------- the three comparisons
# SGD and Adam, the MLP and the CNN, float32 and float64 (the 220-step runs of every combination
# are measured in docs/traps.md, trap 34; a test runs 10 steps)
@pytest.mark.parametrize("model,optimizer,dtype", [
    ("simple_net", "sgd", "float32"), ("small_cnn", "adam", "float32"), ("simple_net", "adam", "float64")])
def test_data_parallel_agrees_with_one_device_and_across_frameworks(sessions, digits, model, optimizer, dtype):
    cfg = training.Config(model=model, optimizer=optimizer, epochs=1, dtype=dtype)
    # segments of 4 steps: 3 segments in 10 steps, so teacher forcing restarts across segment starts
    run = compare.train_data_parallel(cfg, WORLD, ds=digits, session=sessions.get(), segment_steps=4)
    assert set(run.comparisons) == {"torch: ddp vs single", "jax: sharded vs single", "ddp: jax vs torch"}
    for name, c in run.comparisons.items():
        assert c.verdict.ok, f"{name}: {c.verdict.summary()}"
        assert c.verdict.segments == 3 and 0 <= c.verdict.margin <= 1, name
        assert c.accuracy.ok and c.accuracy.flips == 0, f"{name}: {c.accuracy.summary()}"
        assert len(c.free_diff) == len(c.forced_losses) == 10
    for fw in ("jax", "torch"):
        assert run.losses[fw].shape == (10,) and np.all(np.isfinite(run.losses[fw]))
        assert set(run.epochs[fw][0]) == {"epoch", "train_loss", "test_loss", "test_accuracy"}
    assert run.single.curve_verdict().ok


def test_a_planted_defect_in_one_data_parallel_side_is_caught(sessions, digits):
    """torch DDP's learning rate 1% high (a defect parity/curves.py measures at 244 times the bound
    with Adam on simple_net): the two comparisons that involve DDP fail, the JAX one does not."""
    cfg = training.Config(model="linear_net", optimizer="adam", epochs=1)
    run = compare.train_data_parallel(cfg, WORLD, ds=digits, session=sessions.get(), segment_steps=4,
                                      options={"torch": {"lr_scale": 1.01}})
    assert not run.comparisons["torch: ddp vs single"].verdict.ok
    assert not run.comparisons["ddp: jax vs torch"].verdict.ok
    assert run.comparisons["jax: sharded vs single"].verdict.ok
    assert run.comparisons["torch: ddp vs single"].verdict.margin > 10
    # each float32 segment beyond the bound was replayed in float64 (as many as could be excused, plus
    # one), and the replays confirm the defect instead of excusing it as rounding
    bound = curves.ulps_of(training_curve("float64"), "float64")
    for name in ("torch: ddp vs single", "ddp: jax vs torch"):
        c = run.comparisons[name]
        assert len(c.replays) == 2 and not c.verdict.excused, name
        assert all(curves.drift(r.teacher, r.forced, "float64").max() > bound for r in c.replays), name


def test_n_and_the_batch_are_checked_before_any_process_starts():
    before = set(worker_children())
    with pytest.raises(ValueError, match="more than the"):
        compare.check_world(compare.cores() + 1, "cpu")
    with pytest.raises(ValueError, match="does not split into 2 equal shards"):
        compare.check_world(2, "cpu", 63)
    with pytest.raises(ValueError, match="integer >= 1"):
        compare.check_world(0, "cpu")
    assert set(worker_children()) == before


# ---------------------------------------------------------------- trap 31: BatchNorm statistics
def test_trap31_batchnorm_statistics_per_rank_vs_global(sessions):
    """conv → BatchNorm → ...: DDP's BatchNorm normalises each rank's half batch with its own
    statistics and drifts from one device far beyond rounding; global statistics (SyncBatchNorm's
    arithmetic in torch, XLA's batch mean of a sharded batch in JAX) agree with one device within
    the curve bound; and JAX per device (shard_map, DDP's arithmetic) agrees with DDP. (Stock
    torch.nn.BatchNorm2d, `stock_bn=True`, gives the same picture: docs/traps.md, trap 31.)"""
    res = compare.batchnorm_case(world=WORLD, steps=8, dtype="float64", session=sessions.get())
    rows = {r["run"]: r for r in res["rows"]}
    bound = curves.ulps_of(training_curve("float64"), "float64")
    per_rank = rows["torch DDP, per-rank BatchNorm"]
    assert not per_rank["agree"] and per_rank["worst_ulps"] > 1e6 * bound  # far beyond rounding
    assert per_rank["running_var_max_abs_diff"] > 1e-6  # rank 0's statistics, not the global ones
    for run in ("torch on one device", "torch DDP, global BatchNorm (SyncBatchNorm arithmetic)",
                "JAX sharded, global BatchNorm", "JAX per device (shard_map), per-device BatchNorm"):
        assert rows[run]["agree"], rows[run]
        assert rows[run]["running_var_max_abs_diff"] < 1e-12, rows[run]


# ---------------------------------------------------------------- trap 30: mean over ranks vs global mean
def test_trap30_ddp_averages_over_ranks_sharded_jax_takes_the_global_mean(sessions):
    s = sessions.get()
    eps = 64 * np.finfo(np.float64).eps

    def grad(shards, n, **kw):
        r = s.call("torch", "torch_gradient", shards=shards, n=n, **kw)
        return r["ddp"], r["single"]

    # equal shards, per-example mean: DDP's average of the two half-batch means is the global mean
    g, want = grad([[0, 1, 2, 3], [4, 5, 6, 7]], 8)
    np.testing.assert_allclose(g, want, rtol=0, atol=eps)
    # unequal shards (6 + 2): the mean of the ranks' means weights each rank's 2 examples 3x too much
    g, want = grad([[0, 1, 2, 3, 4, 5], [6, 7]], 8)
    assert np.abs(g - want).max() > 0.1 * np.abs(want).max()
    # a summed loss: DDP divides the sum of the ranks' sums by N, half of one device's sum
    g, want = grad([[0, 1, 2, 3], [4, 5, 6, 7]], 8, reduction="sum")
    np.testing.assert_allclose(want, 2 * g, rtol=0, atol=eps)
    # the fix for unequal shards: each rank's loss = its sum · N / (global count)
    g, want = grad([[0, 1, 2, 3, 4, 5], [6, 7]], 8, rescale=True)
    np.testing.assert_allclose(g, want, rtol=0, atol=eps)
    # JAX: the gradient of the global mean (or sum) of a sharded batch is one device's, whatever the
    # reduction; a batch that does not split evenly cannot be sharded at all
    for reduction in ("mean", "sum"):
        r = s.call("jax", "jax_gradient", n=8, reduction=reduction)
        np.testing.assert_allclose(r["sharded"], r["single"], rtol=0, atol=eps)
    r = s.call("jax", "jax_gradient", n=7)
    assert "should evenly divide" in r["error"] or "divisible" in r["error"], r["error"]


# ---------------------------------------------------------------- trap 32: dropout masks per rank
def test_trap32_each_rank_draws_its_own_dropout_mask(sessions):
    s = sessions.get()
    shape, half = [16, 32], 8
    t = s.call("torch", "torch_dropout_masks", shape=shape, seed=0)
    same = t["same_seed"]
    # every rank seeded alike draws the same mask: rank 1's examples get rank 0's pattern
    assert (same[:half] == same[half:]).all()
    # that is one device's mask for the first half only; the second half matches only by chance
    assert (same[:half] == t["single"][:half]).all()
    assert 0.3 < (same[half:] == t["single"][half:]).mean() < 0.7
    # seeding by rank makes the ranks differ, still unlike one device's mask
    plus = t["seed_plus_rank"]
    assert 0.3 < (plus[:half] == plus[half:]).mean() < 0.7
    assert 0.3 < (plus[half:] == t["single"][half:]).mean() < 0.7
    # JAX: one key, the mask of the global shape drawn in a jitted call sharded over the devices is
    # one device's mask bit for bit (partitionable threefry); per device under shard_map the same
    # key repeats the pattern on every device, as torch's same seed does
    j = s.call("jax", "jax_dropout_masks", shape=shape, seed=0)
    assert j["threefry_partitionable"]
    assert (j["sharded"] == j["single"]).all()
    assert (j["per_device_same_key"][:half] == j["per_device_same_key"][half:]).all()
    assert 0.3 < (j["per_device_folded"][:half] == j["per_device_folded"][half:]).mean() < 0.7


# ---------------------------------------------------------------- trap 33: the last partial batch
def test_trap33_the_last_partial_batch(sessions):
    # torch's DistributedSampler pads the epoch to a multiple of N by repeating examples
    # (drop_last=False) or drops the tail (drop_last=True)
    n = 5
    padded = [list(DistributedSampler(range(n), num_replicas=WORLD, rank=r, shuffle=False)) for r in range(WORLD)]
    assert padded == [[0, 2, 4], [1, 3, 0]]  # example 0 twice
    dropped = [list(DistributedSampler(range(n), num_replicas=WORLD, rank=r, shuffle=False, drop_last=True))
               for r in range(WORLD)]
    assert dropped == [[0, 2], [1, 3]]  # example 4 never seen
    # either way the DDP step over that last batch is not one device's step over the same 5 examples
    s = sessions.get()
    for shards in (padded, dropped):
        r = s.call("torch", "torch_gradient", shards=shards, n=n)
        assert np.abs(r["ddp"] - r["single"]).max() > 1e-3 * np.abs(r["single"]).max()
    # JAX cannot shard it at all (and a new batch shape compiles the step again, trap 29)
    assert s.call("jax", "jax_gradient", n=n)["error"]
    # the fix here: every epoch is cut into full global batches (the Shuffler drops the rest) and the
    # batch must split evenly over the ranks, so every rank has B / N examples at every step
    sh = data.Shuffler(1438, 64, seed=0)
    assert sh.epoch().shape == (22, 64) and 1438 - 22 * 64 == 30
    with pytest.raises(ValueError, match="equal shards"):
        compare.check_world(WORLD, "cpu", 65)


# ---------------------------------------------------------------- trap 34: reduction order
def test_trap34_reduction_order_changes_the_rounding(sessions):
    """A data-parallel gradient sums each shard, then the shards' sums: a different order from one
    device's, so the gradients differ in their last bits (measured up to 2-5 ulps of the largest
    element in float32 and in float64), not bit for bit."""
    s = sessions.get()
    for dtype in ("float32", "float64"):
        u = np.finfo(dtype).eps / 2
        for got_key, r in (("ddp", s.call("torch", "torch_gradient_rounding", dtype=dtype)),
                           ("sharded", s.call("jax", "jax_gradient_rounding", dtype=dtype))):
            got, want = r[got_key].astype(np.float64), r["single"].astype(np.float64)
            ulps = np.abs(got - want) / (u * np.abs(want).max())
            assert ulps.max() <= 64, (dtype, got_key, ulps.max())  # rounding: within the curve rule's 64 ulps
            assert (got != want).any(), (dtype, got_key)  # but not the same bits


# ---------------------------------------------------------------- a rank that dies or hangs mid-step
def test_a_dead_rank_mid_step_ends_every_worker(sessions):
    s = sessions.get()  # the module's workers: this test ends them, as any failure does
    pids = s.pids
    with pytest.raises(launch.DistributedError) as e:
        s.call("torch", "die", rank=1)
    msg = str(e.value)
    assert "\n" not in msg and "torch rank 1" in msg and "exited with code 3" in msg and "stopped all 2" in msg
    assert s.closed and not [p for p in pids if launch.alive(p)]  # the JAX process ended too
    assert not worker_children()
    assert not s.dir.exists()  # the job folder is gone


def test_a_hung_rank_ends_every_worker_with_one_clear_message():
    s = compare.Session(WORLD, frameworks=("torch",)).start()
    pids = s.pids
    try:
        with pytest.raises(launch.DistributedError) as e:
            s.call("torch", "stall", rank=1, timeout=3)  # rank 1 stops; rank 0 waits in an all-reduce
    finally:
        s.close()
    msg = str(e.value)
    assert "\n" not in msg and "no message for 3 s" in msg and "torch rank 1" in msg and "stopped all 2" in msg
    assert not [p for p in pids if launch.alive(p)] and not set(pids) & set(worker_children())


def test_nothing_outlives_the_module(sessions):
    sessions.close()
    assert not [p for p in sessions.pids if launch.alive(p)]
    assert not worker_children()
    torch.manual_seed(0)  # (the module leaves torch's global state as it found it)
