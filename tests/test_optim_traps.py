"""Parity traps of optimisers and training (docs/traps.md 19–23 and 29).

Each test shows the default mismatch first, then the setting that removes it. The fixed problem
and its runners are parity/concepts/optim.py's; 100 steps in float64.
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import jax_impl as J
import torch_impl as T
from parity import bridge, data, training
from parity.concepts import optim as P
from parity.tolerances import lookup

TOL = lookup("float64", "cpu")
STEPS = 100


@pytest.fixture(scope="module")
def prob():
    p = P.problem(np.random.default_rng(3), np.dtype("float64"))
    return bridge.to_jax(p), bridge.to_torch(p)


def _optax(tx, prob):
    return tuple(np.asarray(a) for a in jax.jit(P.run_jax, static_argnums=(0, 2))(tx, prob[0], STEPS))


def _torch(make, prob):
    return tuple(a.numpy() for a in P.run_torch_optim(make, prob[1], STEPS))


def _same(a, b):
    return all(np.allclose(x, y, rtol=TOL.rtol, atol=TOL.atol) for x, y in zip(a, b))


def test_trap19_adam_weight_decay_coupled_vs_decoupled(prob):
    """torch Adam(weight_decay) adds L2 to the gradient; optax.adamw decays the weights (decoupled)."""
    want = _torch(lambda ps: torch.optim.Adam(ps, lr=0.01, weight_decay=0.1), prob)
    assert not _same(_optax(optax.adamw(0.01, weight_decay=0.1), prob), want)  # the mismatch
    fixed = optax.chain(optax.add_decayed_weights(0.1), optax.adam(0.01))  # L2 before the moments
    assert _same(_optax(fixed, prob), want)  # what J.optim.from_library("adam", weight_decay=...) builds
    # AdamW's default weight decay: torch 1e-2, optax 1e-4
    want_w = _torch(lambda ps: torch.optim.AdamW(ps, lr=0.01), prob)
    assert not _same(_optax(optax.adamw(0.01), prob), want_w)
    assert _same(_optax(J.optim.from_library("adamw", lr=0.01), prob), want_w)  # weight_decay=1e-2


def test_trap20_adam_eps_outside_the_root(prob):
    """eps inside the square root (optax's eps_root) is a different optimiser from torch's
    m̂/(√v̂ + eps); optax's default eps_root=0 puts eps where torch does."""
    eps = 1e-3  # large enough to matter next to √v̂ for this problem
    want = _torch(lambda ps: torch.optim.Adam(ps, lr=0.01, eps=eps), prob)
    assert not _same(_optax(optax.adam(0.01, eps=0.0, eps_root=eps), prob), want)  # the mismatch
    assert _same(_optax(optax.adam(0.01, eps=eps), prob), want)  # eps_root=0 (the default)
    # the from-scratch twins put it outside too
    assert _same(_optax(J.optim.adam(lr=0.01, eps=eps), prob), want)
    assert _same(tuple(a.numpy() for a in P.run_torch(T.optim.adam(lr=0.01, eps=eps), prob[1], STEPS)), want)


def test_trap21_sgd_momentum_dampening_and_nesterov(prob):
    """torch's buffer is μ·buf + (1 − dampening)·g (buf = g at step 1); optax's trace is g + μ·trace
    with no dampening: equal only at dampening 0; the nesterov forms agree."""
    want = _torch(lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, dampening=0.5), prob)
    assert not _same(_optax(optax.sgd(0.05, momentum=0.9), prob), want)  # the mismatch
    assert _same(_optax(J.optim.sgd(lr=0.05, momentum=0.9, dampening=0.5), prob), want)  # the twin has it
    want0 = _torch(lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9), prob)  # dampening 0
    assert _same(_optax(optax.sgd(0.05, momentum=0.9), prob), want0)
    want_n = _torch(lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True), prob)
    assert _same(_optax(optax.sgd(0.05, momentum=0.9, nesterov=True), prob), want_n)


def _linreg_step(loss_j, lr_j, lr_t=0.03):
    """One SGD step of linear regression on one batch of d2l's data, JAX loss `loss_j` against
    torch's MSELoss: (JAX params, torch params)."""
    ds = data.synthetic_linear(n=20, seed=1, test_fraction=0.0).astype("float64")
    x, y = ds.x_train, ds.y_train
    sd = {"w": np.full((2, 1), 0.01), "b": np.zeros(1)}
    jm = training.build("linear_regression", {"in_features": 2}, "jax", "float64", sd)
    jt = J.train.Trainer(jm, J.optim.sgd(lr=lr_j), loss_j)
    jt.step(jnp.asarray(x), jnp.asarray(y))
    tm = training.build("linear_regression", {"in_features": 2}, "torch", "float64", sd)
    T.train.Trainer(tm, T.optim.from_library("sgd", lr=lr_t), torch.nn.MSELoss()).step(torch.tensor(x), torch.tensor(y))
    jp = jt.model
    return (np.asarray(jp.w[...]), np.asarray(jp.b[...])), (tm.w.detach().numpy(), tm.b.detach().numpy())


def test_trap22_mse_scale_in_a_training_step():
    """Training on optax.l2_loss (0.5·e², d2l's squared_loss) takes half the step of torch's MSELoss;
    the same formula (our mse_loss) gives the same step, and so does 0.5·e² at twice the lr."""
    def l2(y_hat, y):
        return jnp.mean(optax.l2_loss(y_hat, y))
    assert not _same(*_linreg_step(l2, 0.03))  # the mismatch: half the gradient
    assert _same(*_linreg_step(J.losses.mse_loss, 0.03))  # the fix: the same formula
    assert _same(*_linreg_step(l2, 0.06))  # or compensate in the learning rate


def test_trap23_cross_entropy_reduction_in_a_training_step():
    """optax's cross-entropy is per example: summing it instead of averaging makes the step batch-size
    times larger than torch's CrossEntropyLoss (reduction='mean'); .mean() removes the mismatch."""
    ds = data.synthetic_images(n=16, seed=2, test_fraction=0.0).astype("float64")
    sd = {"linear.weight": np.full((10, 64), 0.01), "linear.bias": np.zeros(10)}

    def step(loss_j):
        jm = training.build("linear_net", {"in_features": 64}, "jax", "float64", sd)
        jt = J.train.Trainer(jm, J.optim.sgd(lr=0.1), loss_j)
        jt.step(jnp.asarray(ds.x_train.transpose(0, 2, 3, 1)), jnp.asarray(ds.y_train))
        return np.asarray(jt.model.linear.kernel[...]).T

    tm = training.build("linear_net", {"in_features": 64}, "torch", "float64", sd)
    T.train.Trainer(tm, T.optim.from_library("sgd", lr=0.1), torch.nn.CrossEntropyLoss()).step(
        torch.tensor(ds.x_train), torch.tensor(ds.y_train))
    want = tm.linear.weight.detach().numpy()
    per_example = optax.softmax_cross_entropy_with_integer_labels
    assert not np.allclose(step(lambda z, y: per_example(z, y).sum()), want, rtol=TOL.rtol, atol=TOL.atol)
    np.testing.assert_allclose(step(lambda z, y: per_example(z, y).mean()), want, rtol=TOL.rtol, atol=TOL.atol)
    np.testing.assert_allclose(step(J.losses.cross_entropy), want, rtol=TOL.rtol, atol=TOL.atol)


def test_trap29_short_last_batch_recompiles():
    """jit compiles once per input shape: a short last batch compiles the training step again;
    the shared Shuffler drops it, so every epoch runs one compiled step."""
    ds = data.synthetic_images(n=50, seed=0, test_fraction=0.0)
    x, y = jnp.asarray(ds.x_train.transpose(0, 2, 3, 1)), jnp.asarray(ds.y_train)

    def trainer():
        return J.train.Trainer(training.build("linear_net", {"in_features": 64}, "jax", "float32"), J.optim.sgd(lr=0.1),
                               J.losses.cross_entropy)

    t = trainer()
    perm = np.random.default_rng(0).permutation(50)
    for start in range(0, 50, 16):  # 16, 16, 16 and a short batch of 2, like drop_last=False
        t.step(x, y, perm[start:start + 16])
    assert t._step._cache_size() == 2  # the mismatch: a second compilation
    t = trainer()
    sh = data.Shuffler(50, 16, seed=0)
    for _ in range(2):
        for row in sh.epoch():
            assert len(row) == 16
            t.step(x, y, row)
    assert t._step._cache_size() == 1  # the fix: full batches only
