"""The from-scratch optimisers refuse gradients or updates unlike the parameters, with one message.

Without the check, torch's twin dropped a parameter from a shorter tuple or dict, JAX's raised a
raw pytree error, and both broadcast a (1, 3) gradient onto a (3,) parameter.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import jax_impl as J
import torch_impl as T

OPTIMIZERS = {"sgd": dict(lr=0.1, momentum=0.9, weight_decay=0.01), "adam": dict(lr=0.1, weight_decay=0.01),
              "adamw": dict(lr=0.1)}
PARAMS = {"w": np.arange(3.0), "b": np.array([0.5, -0.5])}

# (label, grads as NumPy, the message both twins give): dict and tuple trees
BAD = [
    ("missing", {"w": np.ones(3)}, r"grads: structure differs from params: missing ['b']"),
    ("unexpected", {**PARAMS, "c": np.ones(1)}, r"grads: structure differs from params: unexpected ['c']"),
    ("both", {"w": np.ones(3), "c": np.ones(2)},
     r"grads: structure differs from params: missing ['b']; unexpected ['c']"),
    ("broadcasting shape", {"w": np.ones((1, 3)), "b": np.ones(2)},
     r"grads['w']: shape (1, 3) does not match the parameter's (3,)"),
    ("incompatible shape", {"w": np.ones(2), "b": np.ones(2)},
     r"grads['w']: shape (2,) does not match the parameter's (3,)"),
    ("tuple, shorter", (np.ones(3),), r"grads: structure differs from params: missing [1]"),
    ("tuple, None leaf", (np.ones(3), None), r"grads: structure differs from params: missing [1]"),
    ("tuple, scalar", (np.ones(3), np.float64(1.0)), r"grads[1]: shape () does not match the parameter's (2,)"),
    ("dict for a tuple", {"w": np.ones(3), "b": np.ones(2)},
     r"grads: structure differs from params: missing [0], [1]; unexpected ['b'], ['w']"),
]


def _case(label, grads):
    """(jax params, torch params, jax grads, torch grads): params as a tuple for tuple-shaped cases."""
    as_tuple = isinstance(grads, tuple) or label == "dict for a tuple"
    out = []
    for arr in (jnp.asarray, torch.from_numpy):
        out.append(tuple(arr(v) for v in PARAMS.values()) if as_tuple else {k: arr(v) for k, v in PARAMS.items()})
    for arr in (jnp.asarray, torch.from_numpy):
        out.append({k: arr(np.asarray(v)) for k, v in grads.items()} if isinstance(grads, dict)
                   else tuple(None if v is None else arr(np.asarray(v)) for v in grads))
    return out


def _message(fn):
    with pytest.raises(ValueError) as e:
        fn()
    return str(e.value)


def _jax_update(name, grads, params, jit):
    tx = getattr(J.optim, name)(**OPTIMIZERS[name])
    update = jax.jit(tx.update) if jit else tx.update
    return update(grads, tx.init(params), params)


def _torch_update(name, grads, params):
    tx = getattr(T.optim, name)(**OPTIMIZERS[name])
    return tx.update(grads, tx.init(params), params)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
@pytest.mark.parametrize("label,grads,msg", BAD, ids=[b[0] for b in BAD])
def test_update_refuses_grads_unlike_params_with_one_message(name, label, grads, msg):
    jp, tp, jg, tg = _case(label, grads)
    eager = _message(lambda: _jax_update(name, jg, jp, jit=False))
    traced = _message(lambda: _jax_update(name, jg, jp, jit=True))  # shapes and structure are static
    torch_msg = _message(lambda: _torch_update(name, tg, tp))
    assert eager == traced == torch_msg == msg


@pytest.mark.parametrize("label,grads,msg", BAD, ids=[b[0] for b in BAD])
def test_apply_updates_refuses_updates_unlike_params_with_one_message(label, grads, msg):
    jp, tp, jg, tg = _case(label, grads)
    want = msg.replace("grads", "updates")
    assert _message(lambda: J.optim.apply_updates(jp, jg)) == want
    assert _message(lambda: jax.jit(J.optim.apply_updates)(jp, jg)) == want
    assert _message(lambda: T.optim.apply_updates(tp, tg)) == want


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_a_correct_call_is_unchanged(name):
    """Matching trees pass: both twins give the same updates, state and new parameters as before."""
    rng = np.random.default_rng(0)
    grads = {k: rng.standard_normal(v.shape) for k, v in PARAMS.items()}
    jp, tp = ({k: arr(v) for k, v in PARAMS.items()} for arr in (jnp.asarray, torch.from_numpy))
    ju, _ = _jax_update(name, {k: jnp.asarray(v) for k, v in grads.items()}, jp, jit=True)
    tu, _ = _torch_update(name, {k: torch.from_numpy(v) for k, v in grads.items()}, tp)
    for k in PARAMS:
        np.testing.assert_allclose(np.asarray(ju[k]), tu[k].numpy(), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(np.asarray(J.optim.apply_updates(jp, ju)[k]),
                                   T.optim.apply_updates(tp, tu)[k].numpy(), rtol=1e-12, atol=1e-15)
    if name == "sgd":  # first step with momentum: buf = g + wd·p, update = −lr·buf
        h = OPTIMIZERS["sgd"]
        want = -h["lr"] * (grads["w"] + h["weight_decay"] * PARAMS["w"])
        np.testing.assert_allclose(np.asarray(ju["w"]), want, rtol=1e-15)


def test_sgd_without_params_still_updates():
    """optax lets params be None where an update does not read them (plain SGD): nothing to check."""
    ju, _ = J.optim.sgd(lr=0.5).update({"w": jnp.ones(3)}, J.optim.sgd(lr=0.5).init({"w": jnp.ones(3)}), None)
    tu, _ = T.optim.sgd(lr=0.5).update({"w": torch.ones(3)}, T.optim.sgd(lr=0.5).init({"w": torch.ones(3)}), None)
    np.testing.assert_array_equal(np.asarray(ju["w"]), tu["w"].numpy())


def test_jax_also_refuses_the_same_leaves_in_other_containers():
    """A list of gradients for a tuple of parameters: torch's twin zips them alike and accepts it;
    jax.tree.map cannot, so JAX's twin refuses it with the same opening as the other structure errors."""
    params = (jnp.ones(3), jnp.ones(2))
    with pytest.raises(ValueError, match=r"^grads: structure differs from params: PyTreeDef\(\[\*, \*\]\) is not"):
        J.optim.sgd(lr=0.1).update([jnp.ones(3), jnp.ones(2)], J.optim.sgd(lr=0.1).init(params), params)
    params = (torch.ones(3), torch.ones(2))
    tu, _ = T.optim.sgd(lr=0.1).update([torch.ones(3), torch.ones(2)], T.optim.sgd(lr=0.1).init(params), params)
    assert len(tu) == 2
