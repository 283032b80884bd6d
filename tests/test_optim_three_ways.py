"""SGD, Adam and AdamW three ways: from scratch (JAX and torch), optax, torch.optim (foreach, fused).

All run 100 steps on one fixed problem from the same NumPy start and must end at the same
parameters, in float64 and in float32, within the parity tolerance of that dtype.
"""
import jax
import numpy as np
import pytest
import torch

import jax_impl as J
import torch_impl as T
from parity import bridge
from parity.concepts import optim as P
from parity.tolerances import lookup

STEPS = 100

# (optimizer, hyperparameters); every one of them exists in all three ways
SETTINGS = [
    ("sgd", dict(lr=0.1)),
    ("sgd", dict(lr=0.05, momentum=0.9)),
    ("sgd", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("adam", dict(lr=0.01)),
    # lr 0.005: at 0.01 this one reaches its minimum within 100 steps, where gradients shrink
    # towards eps and Adam's normalised step turns float32 rounding into 1.6e-4 differences
    # (the mechanism behind parity.tolerances' float32 Adam training-curve entry)
    ("adam", dict(lr=0.005, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    ("adamw", dict(lr=0.01, betas=(0.85, 0.995), weight_decay=0.3)),
]
IDS = [f"{n}-" + ",".join(f"{k}={v}" for k, v in h.items()) for n, h in SETTINGS]


def _problem(dt):
    return P.problem(np.random.default_rng(7), np.dtype(dt))


def _all_ways(name, hyper, dt):
    """Final (w, b) of every implementation, as NumPy."""
    prob = _problem(dt)
    jx, tx = bridge.to_jax(prob), bridge.to_torch(prob)
    run_jax = jax.jit(P.run_jax, static_argnums=(0, 2))
    ways = {
        "jax from scratch": run_jax(getattr(J.optim, name)(**hyper), jx, STEPS),
        "optax": run_jax(J.optim.from_library(name, **hyper), jx, STEPS),
        "torch from scratch": P.run_torch(getattr(T.optim, name)(**hyper), tx, STEPS),
        "torch.optim foreach": P.run_torch_optim(T.optim.from_library(name, **hyper), tx, STEPS),
    }
    cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[name]
    ways["torch.optim fused"] = P.run_torch_optim(lambda ps: cls(list(ps), **hyper, fused=True), tx, STEPS)
    return {k: tuple(np.asarray(bridge.to_numpy(a)) for a in v) for k, v in ways.items()}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name,hyper", SETTINGS, ids=IDS)
def test_three_ways_agree_after_100_steps(name, hyper, dtype):
    tol = lookup(dtype, "cpu")
    ways = _all_ways(name, hyper, dtype)
    ref = ways["torch.optim foreach"]
    start = _problem(dtype)
    assert not np.allclose(ref[0], start["w"], rtol=tol.rtol, atol=tol.atol), "the parameters did not move"
    for way, (w, b) in ways.items():
        assert w.dtype == b.dtype == np.dtype(dtype), f"{way} changed the dtype"
        np.testing.assert_allclose(w, ref[0], rtol=tol.rtol, atol=tol.atol, err_msg=f"{way}: w ({tol.source})")
        np.testing.assert_allclose(b, ref[1], rtol=tol.rtol, atol=tol.atol, err_msg=f"{way}: b ({tol.source})")


def test_sgd_dampening_from_scratch_matches_torch_and_optax_refuses_it():
    """optax.sgd has no dampening: from_library refuses it; both from-scratch twins implement it."""
    tol = lookup("float64", "cpu")
    hyper = dict(lr=0.05, momentum=0.9, dampening=0.5, weight_decay=0.01)
    prob = _problem("float64")
    want = P.run_torch_optim(T.optim.from_library("sgd", **hyper), bridge.to_torch(prob), STEPS)
    got_t = P.run_torch(T.optim.sgd(**hyper), bridge.to_torch(prob), STEPS)
    got_j = P.run_jax(J.optim.sgd(**hyper), bridge.to_jax(prob), STEPS)
    for got in (got_t, got_j):
        for a, b in zip(got, want):
            np.testing.assert_allclose(np.asarray(bridge.to_numpy(a)), b.numpy(), rtol=tol.rtol, atol=tol.atol)
    with pytest.raises(ValueError, match="no dampening"):
        J.optim.from_library("sgd", **hyper)


def test_torch_library_uses_the_fast_path():
    """from_library builds torch.optim fused where torch has it (all parameters floating, on one
    CPU or CUDA device), foreach otherwise (complex parameters, for instance)."""
    params = [torch.zeros(3, requires_grad=True)]
    for name in ("sgd", "adam", "adamw"):
        opt = T.optim.from_library(name)(params)
        assert opt.defaults["fused"] is True and not opt.defaults.get("foreach")


def test_defaults_follow_torch():
    """The from-scratch and library optimisers take torch's defaults (AdamW weight decay 1e-2)."""
    params = [torch.zeros(1, requires_grad=True)]
    t = T.optim.from_library("adamw")(params)
    assert t.defaults["weight_decay"] == torch.optim.AdamW(params).defaults["weight_decay"] == 1e-2
    assert t.defaults["eps"] == 1e-8 and t.defaults["betas"] == (0.9, 0.999)


@pytest.mark.parametrize("bad", [dict(lr=-1.0), dict(lr=0.1, momentum=-0.5), dict(lr=0.1, nesterov=True),
                                 dict(lr=0.1, momentum=0.9, dampening=0.1, nesterov=True)])
def test_bad_sgd_settings_raise(bad):
    for lib in (J.optim, T.optim):
        with pytest.raises(ValueError):
            lib.sgd(**bad)


@pytest.mark.parametrize("bad", [dict(betas=(1.0, 0.999)), dict(eps=-1e-8), dict(weight_decay=-0.1)])
def test_bad_adam_settings_raise(bad):
    for lib in (J.optim, T.optim):
        for name in ("adam", "adamw"):
            with pytest.raises(ValueError):
                getattr(lib, name)(**bad)
        with pytest.raises(ValueError):
            lib.from_library("adam", **bad)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        J.optim.from_library("rmsprop")
    with pytest.raises(ValueError, match="optimizer must be one of"):
        T.optim.from_library("rmsprop")


def test_pure_updates_leave_their_inputs_unchanged():
    """The torch from-scratch update returns new tensors, as JAX's must."""
    p = {"w": torch.ones(2, 2, dtype=torch.float64)}
    g = {"w": torch.full((2, 2), 0.5, dtype=torch.float64)}
    tx = T.optim.adam(lr=0.1)
    s = tx.init(p)
    u, s2 = tx.update(g, s, p)
    new = T.optim.apply_updates(p, u)
    assert torch.equal(p["w"], torch.ones(2, 2, dtype=torch.float64)) and s["count"] == 0 and s2["count"] == 1
    assert torch.all(new["w"] < 1)
