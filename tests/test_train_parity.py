"""Training parity: both frameworks train from identical weights on identical batches, and their
per-step losses agree over >= 200 steps (float64 tight, float32 looser, tolerances explained in
parity.tolerances); final accuracies are equal; d2l's linear regression recovers w and b.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import jax_impl as J
import torch_impl as T
from parity import data, training
from parity.tolerances import LINREG_RECOVERY, training_curve

TRUE_W, TRUE_B = (2.0, -3.4), 4.2  # SEEDS.md §2, d2l's synthetic data


@pytest.fixture(scope="module")
def digits():
    return data.load_digits()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_mlp_loss_curves_agree_for_200_steps(digits, optimizer, dtype):
    cfg = training.Config(model="mlp", optimizer=optimizer, dtype=dtype, momentum=0.9 if optimizer == "sgd" else 0.0)
    run = training.train(cfg, digits)
    tol = training_curve(dtype, optimizer)
    assert len(run.losses["jax"]) == len(run.losses["torch"]) >= 200
    assert run.losses["jax"].dtype == run.losses["torch"].dtype == np.dtype(dtype)
    assert run.curves_agree(tol), f"loss curves differ by {run.curve_difference()} (abs, rel); {tol.source}"
    if dtype == "float32":  # float32 does need the looser bound
        assert not run.curves_agree(training_curve("float64", optimizer))
    acc = [run.epochs[-1][fw]["accuracy"] for fw in ("jax", "torch")]
    assert acc[0] == acc[1], f"final accuracies differ: jax {acc[0]}, torch {acc[1]}"
    assert run.losses["torch"][-20:].mean() < 0.5 * run.losses["torch"][:20].mean()  # it learned
    assert run.trainers["jax"]._step._cache_size() == 1  # one compiled step for all the steps
    if (optimizer, dtype) == ("adam", "float32"):  # `parity train --model mlp --data digits`'s defaults
        assert acc[0] > 0.9  # the target: over 90% test accuracy


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_cnn_loss_curves_agree_for_200_steps(digits, dtype):
    """The small CNN (8×8 digits, padding 1) with Adam: float64 to 1e-12; float32 within the wider
    convolutional bound, whose reason (Adam's eps amplifying rounding) is in parity.tolerances."""
    run = training.train(training.Config(model="cnn", optimizer="adam", dtype=dtype), digits)
    tol = training_curve(dtype, "adam", convolutional=True)
    assert len(run.losses["jax"]) >= 200
    assert run.curves_agree(tol), f"loss curves differ by {run.curve_difference()} (abs, rel); {tol.source}"
    acc = [run.epochs[-1][fw]["accuracy"] for fw in ("jax", "torch")]
    assert acc[0] == acc[1], f"final accuracies differ: jax {acc[0]}, torch {acc[1]}"


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_linear_regression_recovers_w_and_b(optimizer):
    """d2l's minibatch SGD (batch 10, 3 epochs, shuffled indices) recovers w and b in both frameworks."""
    run = training.train(training.Config(model="linreg", optimizer=optimizer, dtype="float64"))
    assert len(run.losses["jax"]) >= 200
    assert run.curves_agree(training_curve("float64", optimizer)), run.curve_difference()
    jm, tm = run.trainers["jax"].model, run.trainers["torch"].model
    for w, b in ((np.asarray(jm.w[...]), np.asarray(jm.b[...])), (tm.w.detach().numpy(), tm.b.detach().numpy())):
        np.testing.assert_allclose(w.ravel(), TRUE_W, atol=LINREG_RECOVERY.atol, rtol=0, err_msg=LINREG_RECOVERY.source)
        np.testing.assert_allclose(b, [TRUE_B], atol=LINREG_RECOVERY.atol, rtol=0, err_msg=LINREG_RECOVERY.source)


def test_from_scratch_optimisers_train_alike():
    """The from-scratch (init, update) pairs drive both Trainers to the same curve as each other;
    the JAX step donates its state buffers."""
    ds = data.load_digits().astype("float64")
    cfg = training.Config(model="softmax", dtype="float64", epochs=1).resolved()
    kwargs = training.model_kwargs("softmax", ds)
    sd = training.init_state_dict(training.build("softmax", kwargs, "torch", "float64"), np.random.default_rng(0))
    jm, tm = (training.build("softmax", kwargs, fw, "float64", sd) for fw in ("jax", "torch"))
    jt = J.train.Trainer(jm, J.optim.adam(lr=0.01), J.losses.cross_entropy)
    tt = T.train.Trainer(tm, T.optim.adam(lr=0.01), T.losses.cross_entropy)
    xj, yj = jnp.asarray(ds.x_train.transpose(0, 2, 3, 1)), jnp.asarray(ds.y_train)
    xt, yt = torch.tensor(ds.x_train), torch.tensor(ds.y_train)
    sh = data.Shuffler(len(ds.x_train), cfg.batch_size, seed=0)
    rows = sh.epoch()
    old = jt.state
    lj = np.array([float(jt.step(xj, yj, r)) for r in rows])
    assert all(leaf.is_deleted() for leaf in jax.tree.leaves(old))  # each step donates its input state
    assert not jm.linear.kernel[...].is_deleted()  # the caller's model was copied, not donated
    lt = np.array([float(tt.step(xt, yt, torch.as_tensor(r))) for r in rows])
    tol = training_curve("float64", "adam")
    np.testing.assert_allclose(lj, lt, rtol=tol.rtol, atol=tol.atol, err_msg=tol.source)


def test_torch_trainer_uses_the_fast_path():
    tr = T.train.Trainer(T.models.SimpleNet(64), T.optim.from_library("adam"), T.losses.cross_entropy)
    assert tr.optimizer.defaults["foreach"] is True
