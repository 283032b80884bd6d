"""The benchmark harness's mechanics: synchronisation, compile time kept apart, the JSON schema,
the outputs and usage errors. Tiny sizes and repeats; nothing asserts on wall time."""
import json

import jax
import numpy as np
import pytest
import torch

from benchmarks import harness, workloads
from benchmarks.harness import Runner, Settings
from benchmarks import plots, suite
from benchmarks.modes import MODES, TRAINER_VS_MINIMAL, TRAINER_VS_MINIMAL_VS
from parity.commands import bench
from parity.cli import main
from parity.tolerances import lookup

TINY = ["--repeats", "3", "--max-time", "0.2"]


class FakeClock:
    """A clock that moves only when the fake work says so."""

    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def fake_runner(clock, first=10.0, then=1.0, steps=1):
    calls = []

    def call():
        clock.t += first if not calls else then
        calls.append(1)
        return "out"
    return Runner(call, "jax", steps=steps), calls


@pytest.fixture
def clock(monkeypatch):
    c = FakeClock()
    monkeypatch.setattr(harness, "clock", c)
    return c


@pytest.fixture
def syncs(monkeypatch):
    seen = []
    monkeypatch.setattr(harness, "sync", lambda out, fw, dev: seen.append((out, fw, dev)))
    return seen


def test_first_call_is_kept_apart_from_the_steady_state(clock, syncs):
    runner, calls = fake_runner(clock)
    t = harness.measure(runner, "cpu", Settings(repeats=5, warmup=2, min_sample_s=0.5)).stats()
    assert t["first_call_s"] == 10.0 and t["compile_s"] == 9.0
    assert t["median_s"] == t["min_s"] == t["max_s"] == 1.0 and t["iqr_s"] == 0.0
    assert t["repeats"] == 5 and t["number"] == 1 and len(calls) == 1 + 2 + 5


def test_calibration_is_not_fooled_by_a_second_compilation(clock, syncs):
    """A runner whose second call compiles again (10 s) and then takes 1 ms: the calls per sample
    come from the fast warm-up call, not from the recompiling one."""
    costs = iter([10.0, 10.0] + [2.0 ** -10] * 1000)

    def call():
        clock.t += next(costs)
    t = harness.measure(Runner(call, "jax"), "cpu", Settings(repeats=3, warmup=3, min_sample_s=10 * 2.0 ** -10,
                                                              max_time_s=1.0)).stats()
    assert t["number"] == 10 and t["median_s"] == pytest.approx(2.0 ** -10)


def test_per_step_times_for_a_call_of_several_steps(clock, syncs):
    runner, _ = fake_runner(clock, first=10.0, then=4.0, steps=4)
    t = harness.measure(runner, "cpu", Settings(repeats=3, warmup=1, min_sample_s=0.1)).stats()
    assert t["median_s"] == 1.0 and t["steps"] == 4
    assert t["first_call_s"] == 10.0 and t["compile_s"] == 6.0  # first call minus one call's steps


def test_calls_per_sample_are_calibrated_and_sampling_time_is_capped(clock, syncs):
    ms = 2.0 ** -10  # exact in binary, so the calibration's division is too
    runner, _ = fake_runner(clock, first=1.0, then=ms)
    t = harness.measure(runner, "cpu", Settings(repeats=4, warmup=1, min_sample_s=10 * ms)).stats()
    assert t["number"] == 10 and t["median_s"] == pytest.approx(ms)
    slow, _ = fake_runner(clock, first=1.0, then=1.0)
    t = harness.measure(slow, "cpu", Settings(repeats=100, warmup=1, max_time_s=2.5, min_repeats=3)).stats()
    assert 3 <= t["repeats"] < 100


def test_every_timed_sample_is_synchronised(clock, syncs):
    runner, calls = fake_runner(clock, first=1.0, then=0.001)
    t = harness.measure(runner, "cuda", Settings(repeats=4, warmup=2, min_sample_s=0.01)).stats()
    assert len(syncs) == 1 + 2 + 4  # the first call, each warm-up call, each sample (of `number` calls)
    assert len(calls) == 1 + 2 + 4 * t["number"]
    assert all(s == ("out", "jax", "cuda") for s in syncs)


def test_sync_waits_the_right_way(monkeypatch):
    seen = []
    monkeypatch.setattr(jax, "block_until_ready", lambda x: seen.append("jax") or x)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: seen.append("cuda"))
    harness.sync(1, "jax", "cpu")
    harness.sync(1, "torch", "cpu")  # CPU torch ops are synchronous: nothing to wait for
    harness.sync(1, "torch", "cuda")
    assert seen == ["jax", "cuda"]


def test_real_runners_are_synchronised(syncs):
    w = workloads.WORKLOADS["activations.relu"]
    runners = w.build(2, "cpu", "float32")
    for mode in ("jax-jit", "torch-eager"):
        harness.measure(runners[mode](), "cpu", Settings(repeats=2, warmup=1, min_sample_s=0))
    assert [fw for _, fw, _ in syncs] == ["jax"] * 4 + ["torch"] * 4
    assert isinstance(syncs[0][0], jax.Array)


def test_torch_compile_mode_and_static_shapes(monkeypatch):
    seen = []
    monkeypatch.setattr(torch, "compile", lambda f, **kw: seen.append(kw) or f)
    runners = workloads.WORKLOADS["activations.relu"].build(2, "cpu", "float32")
    runner = runners["torch-compile"]()
    assert seen == [{"mode": None, "dynamic": False}]
    with runner.context():
        assert runner.call().shape == (2, 1024)


@pytest.mark.parametrize("name", [w.name for w in workloads.all_workloads() if w.kind == "op"])
def test_op_workloads_compute_the_same_in_both_frameworks(name):
    w = workloads.WORKLOADS[name]
    runners = w.build(w.sizes[0], "cpu", "float32")
    j, t = runners["jax-jit"](), runners["torch-eager"]()
    a = j.call()
    with t.context():
        b = t.call()
    # forward + backward workloads return (output, gradients): the output is compared here (the
    # gradients are the concept's, compared by the parity suite)
    a, b = (a[0], b[0]) if isinstance(a, tuple) else (a, b)
    a, b = np.asarray(a), b.detach().numpy()
    a = a.transpose(0, 3, 1, 2) if a.ndim == 4 else a  # the JAX layer ran on NHWC
    tol = lookup("float32", "cpu")
    np.testing.assert_allclose(a, b, rtol=tol.rtol, atol=tol.atol, err_msg=tol.source)


def test_bench_writes_json_table_and_plots(tmp_path, capsys):
    code = main(["bench", "activations.relu", "train.linear_net.sgd", "--sizes", "2", "4",
                 "--modes", "jax-jit", "jax-scan", "torch-eager", "--repeat-runs", "2",
                 "--out", str(tmp_path), *TINY])
    assert code == 0
    out = capsys.readouterr().out
    assert "activations.relu" in out and "jax-jit" in out and "repeatability over 2 runs" in out
    doc = json.loads((tmp_path / "bench-cpu.json").read_text())
    assert doc["schema"] == bench.SCHEMA
    assert {"cpu", "jax", "torch", "torch_threads", "device", "loadavg_start", "loadavg_end"} <= set(doc["environment"])
    assert {"repeats", "dtype", "precision", "repeat_runs"} <= set(doc["settings"])
    rs = doc["results"]
    # relu: 2 sizes × 2 modes; the training step: 2 sizes × 3 modes; twice over
    assert len(rs) == 2 * (2 * 2 + 2 * 3)
    keys = {"workload", "kind", "size", "size_name", "mode", "run", "flops", "bytes", "first_call_s",
            "compile_s", "median_s", "min_s", "max_s", "q25_s", "q75_s", "iqr_s", "spread", "repeats",
            "number", "steps", "samples_s", "gflop_s", "gbyte_s", "error"}
    for r in rs:
        assert keys <= set(r) and r["error"] == ""
        assert r["min_s"] <= r["median_s"] <= r["max_s"] and len(r["samples_s"]) == r["repeats"]
    assert {r["mode"] for r in rs if r["workload"] == "activations.relu"} == {"jax-jit", "torch-eager"}
    assert doc["repeatability"]["medians"]["pairs"] == len(rs) // 2
    # every mode but the reference carries its paired ratio to it, inside its own interval
    assert doc["repeatability"]["ratios"]["pairs"] == len([r for r in rs if r["mode"] != "torch-eager"]) // 2
    for r in rs:
        if r["mode"] != "torch-eager":
            q = r["vs_ratio"]
            assert r["vs"] == "torch-eager" and q["ci_low"] <= q["ratio"] <= q["ci_high"] and q["rounds"] == r["repeats"]
        else:
            assert "vs" not in r and "vs_ratio" not in r
    assert set(doc["modes"]) == {"jax-jit", "jax-scan", "torch-eager"}
    md = (tmp_path / "bench-cpu.md").read_text()
    assert md.startswith("parity bench — float32 on cpu") and "| workload |" in md and "repeatability" in md
    for name in ("activations.relu", "train.linear_net.sgd"):
        assert (tmp_path / f"cpu-{name}.png").read_bytes()[:4] == b"\x89PNG"


def test_a_failing_mode_is_recorded_and_exits_1(tmp_path, monkeypatch, capsys):
    def boom(*a, **kw):
        raise RuntimeError("no compiler here")
    monkeypatch.setattr(torch, "compile", boom)
    code = main(["bench", "activations.relu", "--sizes", "2", "--modes", "torch-compile",
                 "--out", str(tmp_path), *TINY])
    assert code == 1
    doc = json.loads((tmp_path / "bench-cpu.json").read_text())
    assert doc["results"][0]["error"] == "RuntimeError: no compiler here"
    assert "no compiler here" in capsys.readouterr().out


def test_repeatability_summary():
    def rec(k, size, median, ratio):
        return {"workload": "w", "size": size, "mode": "m", "run": k, "median_s": median, "error": "",
                "vs": "torch-eager", "vs_ratio": {"ratio": ratio}}
    # run 1 is 2% and 10% slower in raw medians (a busy machine), but its ratios moved 0% and 1%
    rs = [rec(0, 1, 1.0, 0.5), rec(0, 2, 2.0, 0.8), rec(1, 1, 1.02, 0.5), rec(1, 2, 2.2, 0.808)]
    rep = suite.repeatability(rs)
    assert rep["medians"]["pairs"] == 2 and rep["medians"]["max_abs"] == pytest.approx(0.1)
    assert rep["medians"]["within_5pct"] == 0.5 and rep["medians"]["worst"]["size"] == 2
    assert rep["ratios"]["max_abs"] == pytest.approx(0.01) and rep["ratios"]["within_5pct"] == 1.0
    assert suite.repeatability(rs[:2]) is None


def test_interleaved_samples_shuffle_and_pair_by_round(clock, syncs):
    """Modes are sampled round-robin; a slowdown that hits one round hits every mode in it, so the
    per-round ratio stays put while raw times move."""
    order = []

    def runner(name, cost):
        def call():
            order.append(name)
            clock.t += cost * (10 if len(order) in range(13, 17) else 1)  # rounds 5 and 6 run slow
        return Runner(call, "jax")
    ts = harness.measure_interleaved({"a": runner("a", 1.0), "b": runner("b", 2.0)}, "cpu",
                                     Settings(repeats=6, warmup=1, min_sample_s=0, max_time_s=1e9))
    rounds = [tuple(order[i:i + 2]) for i in range(4, 16, 2)]  # after first call + warm-up of each mode
    assert all(sorted(r) == ["a", "b"] for r in rounds) and len(set(rounds)) == 2  # both orders occur
    q = harness.paired_ratio(ts["a"], ts["b"])
    assert q["ratio"] == pytest.approx(0.5) and q["rounds"] == 6


def test_interleaved_order_is_shuffled_not_rotated(clock, syncs):
    """With three modes a rotation makes each mode always follow the same neighbour; a shuffle gives
    every mode more than one predecessor."""
    order = []

    def runner(name):
        def call():
            order.append(name)
            clock.t += 1.0
        return Runner(call, "jax")
    harness.measure_interleaved({m: runner(m) for m in "abc"}, "cpu",
                                Settings(repeats=30, warmup=1, min_sample_s=0, max_time_s=1e9))
    sampled = order[6:]
    rounds = [sampled[i:i + 3] for i in range(0, len(sampled), 3)]
    assert len(rounds) == 30 and all(sorted(r) == ["a", "b", "c"] for r in rounds)
    for m in "abc":
        before = {r[r.index(m) - 1] for r in rounds if r.index(m) > 0}
        assert len(before) == 2, (m, before)


def test_usage_errors(capsys):
    assert main(["bench", "activations.rleu"]) == 2
    assert "activations.relu" in capsys.readouterr().err
    assert main(["bench", "tensors.matmul", "--modes", "torch-graph"]) == 2
    assert "--device cuda" in capsys.readouterr().err
    # a mode name no selected workload offers: a usage error on one line, before anything runs
    for argv, said in ((["activations.relu", "--modes", "jax-trainer"], "offered by none of the selected"),
                       (["train.linear_net.adam.trainer_vs_minimal", "--modes", "torch-eager"], "offered by none"),
                       (["activations.relu", "--modes", "jax-jitt"], "did you mean jax-jit")):
        assert main(["bench", *argv]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert said in err and len(err.splitlines()) == 1, err
    assert main(["bench", "--list"]) == 0
    listed = capsys.readouterr().out
    assert "train.small_cnn.adam" in listed
    assert "torch-trainer (ratio against torch-minimal)" in listed and "jax-minimal (ratio against" in listed
    assert "jax-trainer-scan (ratio against jax-minimal)" in listed and "torch-minimal (reference)" in listed
    assert "jax-jit (ratio against jax-reduce-window)" in listed


def test_workloads_name_their_own_modes_and_what_each_ratio_is_against():
    """The trainer-against-minimal workloads time other implementations than the suite's modes and
    say so by name; every other workload keeps the suite's modes, compared with torch-eager."""
    for w in workloads.all_workloads():
        modes = w.modes_on("cpu")
        assert set(w.build(w.sweep("cpu", False)[0], "cpu", "float32")) == set(modes), w.name
        assert all(w.describe(m) for m in modes), w.name
        if w.name.endswith(".trainer_vs_minimal"):
            assert modes == ["torch-minimal", "torch-trainer", "jax-minimal", "jax-trainer", "jax-trainer-scan"]
            assert {m: w.reference(m) for m in modes} == {
                "torch-minimal": None, "torch-trainer": "torch-minimal", "jax-minimal": "torch-minimal",
                "jax-trainer": "jax-minimal", "jax-trainer-scan": "jax-minimal"}
        elif w.name == "layers.max_pool2d.fwd_bwd":
            assert modes[-1] == "jax-reduce-window" and w.reference("jax-jit") == "jax-reduce-window"
            assert w.reference("jax-reduce-window") == w.reference("torch-compile") == "torch-eager"
        else:
            assert set(modes) <= set(MODES) and w.reference("torch-eager") is None, w.name
            assert all(w.reference(m) == "torch-eager" for m in modes if m != "torch-eager"), w.name


def test_the_reduce_window_reference_pools_as_the_layer_does():
    runners = workloads.WORKLOADS["layers.max_pool2d.fwd_bwd"].build(8, "cpu", "float32")
    (y, (_, dx)), (y_ref, (dx_ref,)) = runners["jax-jit"]().call(), runners["jax-reduce-window"]().call()
    # random normal input: no ties, so both pick the same maximum and route the same gradient
    np.testing.assert_array_equal(np.asarray(y), np.asarray(y_ref))
    np.testing.assert_array_equal(np.asarray(dx), np.asarray(dx_ref))


def _own_modes_workload(clock):
    """A workload of its own modes, like trainer_vs_minimal, whose fake steps cost known times:
    minimal 1, trainer 1.5 (torch); minimal 2, trainer 3, scan 1 (JAX)."""
    cost = {"torch-minimal": 1.0, "torch-trainer": 1.5, "jax-minimal": 2.0, "jax-trainer": 3.0,
            "jax-trainer-scan": 1.0}

    def build(n, device, dtype):
        def make(mode):
            def call():
                clock.t += cost[mode]
                return mode
            return lambda: Runner(call, "jax")
        return {m: make(m) for m in cost}
    return workloads.Workload("train.fake.adam.trainer_vs_minimal", "train", "a fake", "batch", (1, 64), (64,),
                              build, lambda n, b: (1.0 * n, 1.0 * n), own_modes=TRAINER_VS_MINIMAL,
                              vs=TRAINER_VS_MINIMAL_VS)


def test_own_modes_are_measured_compared_and_shown_by_their_names(clock, syncs, tmp_path):
    w = _own_modes_workload(clock)
    relu = workloads.WORKLOADS["activations.relu"]
    items = suite.plan([w], None, [64], "cpu", False)
    assert [m for _, _, m in items] == list(TRAINER_VS_MINIMAL)
    assert [m for _, _, m in suite.plan([w], ["jax-trainer", "jax-minimal"], [64], "cpu", False)] == [
        "jax-minimal", "jax-trainer"]
    assert [m for _, _, m in suite.plan([relu], None, [2], "cpu", False)] == [
        "jax-jit", "jax-eager", "torch-eager", "torch-compile"]
    rs = suite.run(items, "cpu", "float32", Settings(repeats=5, warmup=1, min_sample_s=0, max_time_s=1e9))
    by = {r["mode"]: r for r in rs}
    assert "vs" not in by["torch-minimal"] and "vs_ratio" not in by["torch-minimal"]
    expect = {"torch-trainer": ("torch-minimal", 1.5), "jax-minimal": ("torch-minimal", 2.0),
              "jax-trainer": ("jax-minimal", 1.5), "jax-trainer-scan": ("jax-minimal", 0.5)}
    for mode, (vs, ratio) in expect.items():
        assert by[mode]["vs"] == vs and by[mode]["vs_ratio"]["ratio"] == pytest.approx(ratio), mode
    # the Markdown names the modes, what each runs and what each ratio is against
    md = suite.markdown(rs)
    assert "| torch-minimal | torch-trainer | jax-minimal | jax-trainer | jax-trainer-scan |" in md
    assert "torch-trainer / torch-minimal | jax-minimal / torch-minimal | jax-trainer / jax-minimal" in md
    assert "`jax-trainer`: jax_impl's Trainer.step_at" in md and "(ratio against `jax-minimal`)" in md
    assert "torch-eager" not in md.split("Ratios:")[1]  # no ratio against the suite's reference
    assert suite.headers(suite.groups(rs)[0]) == ["workload", "size", *TRAINER_VS_MINIMAL, "GFLOP/s"]  # no jit×
    # a run beside a suite workload: one table (and its ratios) each, the suite's under its own names
    relu_rs = [{**rs[0], "workload": "activations.relu", "mode": "jax-jit", "vs": "torch-eager"},
               {**rs[0], "workload": "activations.relu", "mode": "torch-eager"}]
    rs2 = rs + relu_rs
    gs = suite.groups(rs2)
    assert [g.own for g in gs] == [True, False] and gs[1].modes == ["jax-jit", "torch-eager"]
    assert "| jax-jit / torch-eager |" in suite.markdown(rs2)
    path = tmp_path / "p.png"
    plots.plot_workload(rs, path, "fake")
    assert path.read_bytes()[:4] == b"\x89PNG"
