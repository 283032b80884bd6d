"""Training parity: both frameworks train from identical weights on identical batches and the curve
verdict of parity/curves.py (teacher forcing every 20 steps, float64 replays of rounding events)
says they train alike, over >= 200 steps; d2l's linear regression recovers w and b. Also the one
name per model, the configuration's checks and defaults, the epoch records and the timings.
"""
import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import jax_impl as J
import torch_impl as T
from parity import data, training
from parity.concepts import CONCEPTS
from parity.tolerances import LINREG_RECOVERY, training_curve

TRUE_W, TRUE_B = (2.0, -3.4), 4.2  # d2l's synthetic data


@pytest.fixture(scope="module")
def digits():
    return data.load_digits()


def _assert_alike(run):
    v, a = run.curve_verdict(), run.accuracy_verdict()
    assert v.ok and v.margin <= 1, f"{v}\n{v.rule}"
    assert a is None or a.ok, f"{a}\n{a.rule}"
    return v, a


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_simple_net_trains_alike_for_200_steps(digits, optimizer, dtype):
    cfg = training.Config(model="simple_net", optimizer=optimizer, dtype=dtype,
                          momentum=0.9 if optimizer == "sgd" else None)
    run = training.train(cfg, digits)
    assert len(run.losses["jax"]) == len(run.losses["torch"]) == len(run.forced_losses) >= 200
    assert run.losses["jax"].dtype == run.losses["torch"].dtype == np.dtype(dtype)
    v, a = _assert_alike(run)
    assert a.flips == 0
    if dtype == "float32":  # float32 does need its own bound: its drift is beyond float64's
        assert not run.curves_agree(training_curve("float64"))
    assert run.losses["torch"][-20:].mean() < 0.5 * run.losses["torch"][:20].mean()  # it learned
    tr = run.trainers["jax"]  # one compiled function for all the steps: the epoch scan or the step
    assert tr._epoch._cache_size() + tr._step._cache_size() == 1
    if (optimizer, dtype) == ("adam", "float32"):  # `parity train`'s defaults
        assert run.epochs[-1]["jax"]["test_accuracy"] > 0.9  # the target: over 90% test accuracy


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_small_cnn_trains_alike_for_200_steps(digits, dtype):
    """The small CNN (8×8 digits, padding 1) with Adam: its free-running float32 curves drift apart
    (Adam's eps amplifies rounding), the teacher-forced ones stay within the bound."""
    run = training.train(training.Config(model="small_cnn", optimizer="adam", dtype=dtype), digits)
    assert len(run.losses["jax"]) >= 200
    _assert_alike(run)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_linear_regression_recovers_w_and_b(optimizer):
    """d2l's minibatch SGD (batch 10, 3 epochs, shuffled indices) recovers w and b in both frameworks."""
    run = training.train(training.Config(model="linear_regression", optimizer=optimizer, dtype="float64"))
    assert len(run.losses["jax"]) >= 200
    _assert_alike(run)
    assert run.accuracy_verdict() is None and "test_accuracy" not in run.epochs[-1]["torch"]
    jm, tm = run.trainers["jax"].model, run.trainers["torch"].model
    for w, b in ((np.asarray(jm.w[...]), np.asarray(jm.b[...])), (tm.w.detach().numpy(), tm.b.detach().numpy())):
        np.testing.assert_allclose(w.ravel(), TRUE_W, atol=LINREG_RECOVERY.atol, rtol=0, err_msg=LINREG_RECOVERY.source)
        np.testing.assert_allclose(b, [TRUE_B], atol=LINREG_RECOVERY.atol, rtol=0, err_msg=LINREG_RECOVERY.source)


def test_from_scratch_optimisers_train_alike():
    """The from-scratch (init, update) pairs drive both Trainers to the same curve as each other;
    the JAX step donates its state buffers."""
    ds = data.load_digits().astype("float64")
    cfg = training.Config(model="linear_net", dtype="float64", epochs=1).resolved()
    kwargs = training.model_kwargs("linear_net", ds)
    sd = training.init_state_dict(training.build("linear_net", kwargs, "torch", "float64"), np.random.default_rng(0))
    jm, tm = (training.build("linear_net", kwargs, fw, "float64", sd) for fw in ("jax", "torch"))
    jt = J.train.Trainer(jm, J.optim.adam(lr=0.01), J.losses.cross_entropy)
    tt = T.train.Trainer(tm, T.optim.adam(lr=0.01), T.losses.cross_entropy)
    xj, yj = jnp.asarray(ds.x_train.transpose(0, 2, 3, 1)), jnp.asarray(ds.y_train)
    xt, yt = torch.tensor(ds.x_train), torch.tensor(ds.y_train)
    sh = data.Shuffler(len(ds.x_train), cfg.batch_size, seed=0)
    rows = sh.epoch()[:training.SEGMENT_STEPS]  # one segment: the curve bound applies as it is
    old = jt.state
    lj = np.array([float(jt.step(xj, yj, r)) for r in rows])
    assert all(leaf.is_deleted() for leaf in jax.tree.leaves(old))  # each step donates its input state
    assert not jm.linear.kernel[...].is_deleted()  # the caller's model was copied, not donated
    lt = np.array([float(tt.step(xt, yt, torch.as_tensor(r))) for r in rows])
    tol = training_curve("float64")
    np.testing.assert_allclose(lj, lt, rtol=tol.rtol, atol=tol.atol, err_msg=tol.source)


def test_torch_trainer_uses_the_fast_path():
    tr = T.train.Trainer(T.models.SimpleNet(64), T.optim.from_library("adam"), T.losses.cross_entropy)
    assert tr.optimizer.defaults["fused"] is True  # torch's fastest correct CPU path


# ---------------------------------------------------------------- one name per model
def test_one_name_per_model():
    assert training.MODELS == ("linear_regression", "linear_net", "simple_net", "small_cnn")
    names = {c.name for c in CONCEPTS}
    for model in training.MODELS:
        cls = training.class_name(model)
        assert training.snake_case(cls) == model
        for fw in training.FRAMEWORKS:  # both twins have the class, and a built one names its model
            assert training.model_name(training.build(model, _kwargs(model), fw, "float32")) == model
        assert {f"models.{model}", f"train.{model}"} <= names
    from benchmarks import workloads
    assert {w for w in workloads.WORKLOADS if w.startswith("train.")} == {
        f"train.{m}.{o}" for m in ("linear_net", "simple_net", "small_cnn") for o in ("sgd", "adam")} | {
        f"train.{m}.adam.trainer_vs_minimal" for m in ("linear_net", "simple_net", "small_cnn")}
    assert set(workloads.SMOKE) <= set(workloads.WORKLOADS)
    with pytest.raises(ValueError, match="did you mean 'simple_net'"):
        training.Config(model="simplenet").resolved()


def _kwargs(model):
    return {"in_features": 2} if model == "linear_regression" else (
        {"image_size": 8, "padding": 1, "channels": (2, 3)} if model == "small_cnn" else {"in_features": 64})


# ---------------------------------------------------------------- configuration
def test_defaults_come_from_one_table():
    for model, d in training.MODEL_DEFAULTS.items():
        for opt in training.OPTIMIZERS:
            cfg = training.Config(model=model, optimizer=opt).resolved()
            assert (cfg.epochs, cfg.batch_size, cfg.data, cfg.lr) == (d.epochs, d.batch_size, d.data, d.lr[opt])
            assert cfg.weight_decay == training.WEIGHT_DECAY_DEFAULTS[opt] and cfg.momentum == 0.0
    assert training.defaults_help("epochs") == "default 10 (linear_regression: 3)"
    assert training.defaults_help("batch_size") == "default 64 (linear_regression: 10)"
    assert training.defaults_help("data") == "default digits (linear_regression: synthetic-linear)"
    assert training.defaults_help("lr") == ("default sgd 0.05, adam 0.001, adamw 0.001 "
                                            "(linear_regression: sgd 0.03, adam 0.1, adamw 0.1)")
    assert training.defaults_help("model") == "default simple_net"
    assert [f.name for f in dataclasses.fields(training.Config)] == [
        "model", "optimizer", "epochs", "framework", "data", "batch_size", "lr", "momentum", "weight_decay",
        "dtype", "device", "seed", "torch_threads"]
    with pytest.raises(ValueError, match="no Config field"):
        training.defaults_help("learning_rate")


@pytest.mark.parametrize("change,match", [
    ({"model": "cnn"}, r"model must be one of .*; got 'cnn'"),
    ({"optimizer": "rmsprop"}, "optimizer must be one of"),
    ({"framework": "tf"}, "framework must be one of jax, torch, both"),
    ({"dtype": "float16"}, "dtype must be one of"),
    ({"device": "tpu"}, "device must be one of"),
    ({"epochs": 0}, r"epochs must be an integer >= 1; got 0"),
    ({"epochs": 2.5}, r"epochs must be an integer >= 1; got 2.5"),
    ({"batch_size": 0}, r"batch_size must be an integer >= 1; got 0"),  # no longer silently 64
    ({"lr": math.nan}, r"lr must be a finite number > 0; got nan"),
    ({"lr": math.inf}, r"lr must be a finite number > 0; got inf"),
    ({"lr": -1.0}, r"lr must be a finite number > 0; got -1.0"),
    ({"lr": 0.0}, r"lr must be a finite number > 0; got 0.0"),
    ({"optimizer": "sgd", "momentum": 1.0}, r"momentum must be a finite number in \[0, 1\); got 1.0"),
    ({"optimizer": "sgd", "momentum": -0.1}, r"momentum must be a finite number in \[0, 1\); got -0.1"),
    ({"optimizer": "adam", "momentum": 0.9}, "momentum applies to the sgd optimizer only; got momentum 0.9 "
                                             "with optimizer 'adam'"),
    ({"weight_decay": -1e-4}, r"weight_decay must be a finite number >= 0; got -0.0001"),
    ({"weight_decay": math.nan}, r"weight_decay must be a finite number >= 0; got nan"),
    ({"torch_threads": -1}, r"torch_threads must be an integer >= 0; got -1"),
    ({"seed": -1}, r"seed must be an integer >= 0; got -1"),
    ({"data": ""}, "data must be a dataset name"),
])
def test_config_refuses_bad_values(change, match):
    with pytest.raises(ValueError, match=match):
        training.Config(**change).resolved()


def test_config_accepts_edge_values():
    cfg = training.Config(optimizer="sgd", momentum=0.0, torch_threads=0, weight_decay=0.0, batch_size=1).resolved()
    assert (cfg.momentum, cfg.torch_threads, cfg.weight_decay, cfg.batch_size) == (0.0, 0, 0.0, 1)
    assert training.Config(optimizer="adam", momentum=0).resolved().momentum == 0.0  # 0 is no momentum


# ---------------------------------------------------------------- records, timings, state
def test_epoch_records_and_timings(digits):
    run = training.train(training.Config(model="linear_net", epochs=2), digits)
    rec = run.epochs[-1]
    for fw in training.FRAMEWORKS:
        assert set(rec[fw]) == {"train_loss", "test_loss", "test_accuracy"}
        n = len(run.losses[fw]) // 2
        assert rec[fw]["train_loss"] == pytest.approx(float(np.mean(run.losses[fw][n:])))
        assert rec[fw]["test_accuracy"] == np.mean(run.test_outputs[fw].argmax(-1) == digits.y_test)
        assert run.seconds[fw] > 0 and run.first_step_seconds[fw] > 0
    # JAX's first step compiles: it alone takes longer than a later step on average
    assert run.first_step_seconds["jax"] > run.seconds["jax"] / (len(run.losses["jax"]) - 1)
    one = training.train(training.Config(model="linear_net", epochs=1, framework="torch"), digits)
    assert set(one.losses) == {"torch"} and one.curve_verdict() is None and one.accuracy_verdict() is None


@pytest.mark.parametrize("optimizer,momentum", [("adam", None), ("sgd", 0.9), ("adamw", None)])
def test_the_forced_side_continues_from_torchs_state(digits, optimizer, momentum):
    """Teacher forcing copies weights, optimiser slots and step count exactly (transposes only)."""
    cfg = training.Config(model="small_cnn", optimizer=optimizer, momentum=momentum, dtype="float64").resolved()
    kwargs = training.model_kwargs(cfg.model, digits.astype("float64"))
    sd = training.init_state_dict(training.build(cfg.model, kwargs, "torch", cfg.dtype), np.random.default_rng(0))
    ds = digits.astype("float64")
    t, j = training.TorchSide(cfg, kwargs, sd, ds), training.JaxSide(cfg, kwargs, sd, ds)
    rows = data.Shuffler(len(ds.x_train), 32, seed=1).epoch()[:3]
    t.epoch(rows)
    j.load_state(t.state())
    st, sj = t.state(), j.state()
    assert st.step == sj.step == (0 if optimizer == "sgd" else 3)  # SGD keeps no step count
    assert set(st.slots) == set(sj.slots) and st.slots
    for a, b in ((st.weights, sj.weights), *((st.slots[k], sj.slots[k]) for k in st.slots)):
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    # and both continue alike from there
    tol = training_curve("float64")
    np.testing.assert_allclose(j.epoch(rows), t.epoch(rows), rtol=tol.rtol, atol=tol.atol)
    assert j.trainer._step._cache_size() == 1  # loading a state does not recompile the step
