"""Deliberately broken optimisers must fail the parity comparisons that guard them.

A changed Adam eps or a missing bias correction, in one framework only, is planted with
monkeypatch; the registry's optimiser concepts and the training-curve comparison must then fail.
"""
import jax
import jax.numpy as jnp
import optax
import pytest
import torch

import jax_impl as J
import torch_impl as T
from parity import data, registry, runner, training
from parity.tolerances import training_curve


def _torch_adam_without_bias_correction(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
    b1, b2 = betas

    def init(params):
        return {"mu": {k: torch.zeros_like(v) for k, v in params.items()},
                "nu": {k: torch.zeros_like(v) for k, v in params.items()}}

    def update(grads, state, params):
        grads = {k: g + weight_decay * params[k] for k, g in grads.items()}
        mu = {k: b1 * state["mu"][k] + (1 - b1) * g for k, g in grads.items()}
        nu = {k: b2 * state["nu"][k] + (1 - b2) * g * g for k, g in grads.items()}
        return {k: -lr * mu[k] / (torch.sqrt(nu[k]) + eps) for k in grads}, {"mu": mu, "nu": nu}

    return T.optim.Transformation(init, update)


def _jax_adam_without_bias_correction(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
    b1, b2 = betas

    def init(params):
        return (jax.tree.map(jnp.zeros_like, params), jax.tree.map(jnp.zeros_like, params))

    def update(grads, state, params):
        grads = jax.tree.map(lambda g, p: g + weight_decay * p, grads, params)
        mu = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, state[0], grads)
        nu = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, state[1], grads)
        return jax.tree.map(lambda m, v: -lr * m / (jnp.sqrt(v) + eps), mu, nu), (mu, nu)

    return optax.GradientTransformation(init, update)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_unbroken_adam_passes(dtype):
    assert runner.run_concept(registry.get("optim.adam"), dtype).passed


def test_changed_adam_eps_in_torch_fails(monkeypatch):
    real = T.optim.adam
    monkeypatch.setattr(T.optim, "adam", lambda lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0:
                        real(lr, betas, eps * 10, weight_decay))
    r = runner.run_concept(registry.get("optim.adam"), "float64")
    assert not r.passed and not r.error, r.failures


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("side", ["jax", "torch"])
def test_missing_bias_correction_fails(monkeypatch, side, dtype):
    if side == "jax":
        monkeypatch.setattr(J.optim, "adam", _jax_adam_without_bias_correction)
    else:
        monkeypatch.setattr(T.optim, "adam", _torch_adam_without_bias_correction)
    r = runner.run_concept(registry.get("optim.adam"), dtype)
    assert not r.passed and not r.error, r.failures


@pytest.fixture(scope="module")
def digits():
    return data.load_digits()


def _curves_agree(ds, dtype="float64"):
    run = training.train(training.Config(model="simple_net", optimizer="adam", dtype=dtype, epochs=1), ds)
    return run.curves_agree(training_curve(dtype, "adam"))


def test_training_curves_catch_a_changed_eps(monkeypatch, digits):
    # (unbroken, these curves agree: tests/test_train_parity.py)
    real = T.optim.from_library
    monkeypatch.setattr(T.optim, "from_library", lambda name, **kw: real(name, **{**kw, "eps": 1e-7}))
    assert not _curves_agree(digits)


def test_training_curves_catch_a_missing_bias_correction(monkeypatch, digits):
    monkeypatch.setattr(J.optim, "from_library", lambda name, lr=1e-3, **kw: _jax_adam_without_bias_correction(lr))
    assert not _curves_agree(digits, "float32")  # caught even by the looser float32 bound
