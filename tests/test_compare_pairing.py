"""Pairing a torch model's layers with its Flax port's, and converting weights both ways: exact round
trips, name and execution-order pairing (and why not definition order), the Flatten→Linear rows
seen in the data, explicit mappings, the other direction, and the caller's models left alone."""
from pathlib import Path

import jax
import numpy as np
import pytest
import torch
from flax import nnx
from torch import nn

from parity.porting import compare, pair_models
from parity.porting.load import abstract_model, load_module

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
rb = load_module(str(EXAMPLES / "resnet_block.py"))
tb = load_module(str(EXAMPLES / "transformer_block.py"))
sc = load_module(str(EXAMPLES / "small_cnn.py"))
RNG = np.random.default_rng(1)


def flax(make):
    model = abstract_model(make)
    assert model is not None
    return model


def _examples():
    torch.manual_seed(0)
    ids = RNG.integers(1, 50, (2, 16))
    return {"resnet": (rb.torch_model(), flax(lambda: rb.flax_model(rngs=nnx.Rngs(0))),
                       RNG.standard_normal((2, 3, 16, 16)).astype(np.float32)),
            "transformer": (tb.TorchTransformerBlock(), flax(lambda: tb.FlaxTransformerBlock(rngs=nnx.Rngs(0))), ids),
            "cnn": (sc.torch_model(), flax(lambda: sc.flax_model(rngs=nnx.Rngs(0))),
                    RNG.standard_normal((2, 1, 8, 8)).astype(np.float32))}


@pytest.mark.parametrize("name", ["resnet", "transformer", "cnn"])
def test_pairing_round_trips_torch_to_flax_to_torch_exactly(name):
    t, f, x = _examples()[name]
    pairing = pair_models(t, f, x)
    sd = {k: v.detach().numpy().copy() for k, v in t.state_dict().items()}
    back = pairing.flax_to_torch(pairing.torch_to_flax(sd))
    # stock nnx.BatchNorm keeps no num_batches_tracked (a counter, not a weight): the only key lost
    assert set(sd) - set(back) == {k for k in sd if k.endswith("num_batches_tracked") and name == "resnet"}
    assert set(back) <= set(sd)
    for k in back:
        assert back[k].dtype == sd[k].dtype and np.array_equal(back[k], sd[k]), k
    # loaded into the Flax model and read back out of it: the same, bit for bit
    pairing.load_flax(f, sd)
    held = pairing.flax_to_torch(jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(f, nnx.Not(nnx.RngState)))))
    assert all(np.array_equal(held[k], sd[k]) for k in back)


def test_the_flatten_linear_rows_are_a_permutation_that_round_trips():
    t, f, x = _examples()["cnn"]
    pairing = pair_models(t, f, x)
    fc1 = next(p for p in pairing.pairs if p.torch.name == "fc1")
    assert fc1.flatten == (32, 4, 1)
    sd = {k: v.detach().numpy().copy() for k, v in t.state_dict().items()}
    kernel = pairing.torch_to_flax(sd)["fc1"]["kernel"]
    assert not np.array_equal(kernel, sd["fc1.weight"].T)  # rows really moved
    assert np.array_equal(np.sort(kernel, axis=0), np.sort(sd["fc1.weight"].T, axis=0))  # only moved


class _TorchTwoLayers(nn.Module):
    def __init__(self):
        super().__init__()
        self.zeta = nn.Linear(4, 8)  # defined first, runs first
        self.alpha = nn.Linear(8, 3)

    def forward(self, x):
        return self.alpha(torch.tanh(self.zeta(x)))


class _FlaxTwoLayers(nnx.Module):
    def __init__(self, *, rngs):
        self.first = nnx.Linear(4, 8, rngs=rngs)
        self.b_second = nnx.Linear(8, 3, rngs=rngs)  # NNX iterates attributes sorted: b_second, first

    def __call__(self, x):
        return self.b_second(jax.numpy.tanh(self.first(x)))


def test_layers_pair_in_execution_order_where_definition_order_would_fail():
    x = RNG.standard_normal((5, 4)).astype(np.float32)
    f = _FlaxTwoLayers(rngs=nnx.Rngs(0))
    assert [p for p, _ in nnx.iter_modules(f)][:2] == [("b_second",), ("first",)]  # sorted, not defined
    r = compare(_TorchTwoLayers(), f, x, dtype="float64")
    assert r.passed, r.summary()
    assert r.pairing["strategy"] == "by execution order"
    assert [(p["torch"], p["flax"]) for p in r.pairing["layers"]] == [("zeta", ["first"]), ("alpha", ["b_second"])]


def test_an_explicit_mapping_pairs_the_layers():
    x = RNG.standard_normal((5, 4)).astype(np.float32)
    r = compare(_TorchTwoLayers(), _FlaxTwoLayers(rngs=nnx.Rngs(0)), x, dtype="float64",
                weights={"zeta": "first", "alpha": ("b_second",)})
    assert r.passed and r.pairing["strategy"] == "by the given mapping"


class _FlaxCnnFlattensNCHW(nnx.Module):
    """The SmallCNN twin's layers, but transposing back to NCHW before flattening (the other fix of
    docs/traps.md, trap 4): fc1's rows must then stay in torch's order."""

    def __init__(self, *, rngs):
        self.inner = sc.flax_model(rngs=rngs)

    def __call__(self, x):
        m = self.inner
        x = m.pool(jax.nn.relu(m.conv1(x)))
        x = m.pool(jax.nn.relu(m.conv2(x)))
        x = x.transpose(0, 3, 1, 2).reshape(x.shape[0], -1)
        return m.fc2(jax.nn.relu(m.fc1(x)))


def test_a_flax_model_that_flattens_in_torch_order_keeps_the_rows():
    torch.manual_seed(0)
    x = RNG.standard_normal((4, 1, 8, 8)).astype(np.float32)
    r = compare(sc.torch_model(), flax(lambda: _FlaxCnnFlattensNCHW(rngs=nnx.Rngs(0))), x)
    assert r.passed, r.summary()
    fc1 = next(p for p in r.pairing["layers"] if p["torch"] == "fc1")
    assert fc1["flatten_chw"] is None
    assert any("flattens it in (C, H, W) order (seen in the data): rows kept" in n for n in r.notes)


class _FlaxCnnTakingNCHW(nnx.Module):
    """The NHWC SmallCNN twin behind a transpose: NCHW at the boundary, NHWC inside."""

    def __init__(self, *, rngs):
        self.inner = sc.flax_model(rngs=rngs)

    def __call__(self, x):
        return self.inner(x.transpose(0, 2, 3, 1))


def test_a_flax_model_taking_nchw_and_working_in_nhwc_inside():
    torch.manual_seed(0)
    x = RNG.standard_normal((4, 1, 8, 8)).astype(np.float32)
    r = compare(sc.torch_model(), flax(lambda: _FlaxCnnTakingNCHW(rngs=nnx.Rngs(0))), x, layout="nchw")
    assert r.passed, r.summary()
    assert "input 0 (4, 1, 8, 8) float32: as given to both" in r.notes
    # its activations are NHWC all the same: read from their shapes, and fc1's rows permuted as seen
    assert any("(H, W, C) order (seen in the data): rows permuted" in n for n in r.notes)


def test_flax_weights_into_torch_compare_the_same():
    x = RNG.standard_normal((4, 1, 8, 8)).astype(np.float32)
    torch.manual_seed(0)
    f = flax(lambda: sc.flax_model(rngs=nnx.Rngs(0)))
    params = nnx.state(f, nnx.Param)  # weights of the Flax model's own (drawn here, not torch's)
    nnx.update(f, jax.tree.map(lambda a: jax.numpy.asarray(0.1 * RNG.standard_normal(a.shape), a.dtype), params))
    r = compare(sc.torch_model(), f, x, weights="flax->torch", dtype="float64")
    assert r.passed and r.direction == "flax->torch"


def test_the_callers_models_are_left_as_they_were():
    t, f, x = _examples()["resnet"]
    t.train()
    before_t = {k: v.clone() for k, v in t.state_dict().items()}
    before_f = jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(f, nnx.Not(nnx.RngState))))
    r = compare(t, f, x, train=True)
    assert r.train and t.training and f.bn1.use_running_average is False
    assert all(torch.equal(before_t[k], v) for k, v in t.state_dict().items())
    after_f = jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(f, nnx.Not(nnx.RngState))))
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(before_f), jax.tree.leaves(after_f)))


def test_a_channels_last_1d_output_has_its_gradients_compared():
    """A Conv1d stack whose Flax port returns (N, L, C) where torch returns (N, C, L): the output is
    read channels-last from its shape, and the cotangent goes back channels-last, so every gradient
    is compared (it was not, for outputs other than 4-D)."""
    import torch as _torch
    from flax import nnx as _nnx

    from parity.porting import compare as _compare

    class T(_torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = _torch.nn.Conv1d(2, 5, 3, padding=1)

        def forward(self, x):
            return self.conv(x)

    class F(_nnx.Module):
        def __init__(self, rngs):
            self.conv = _nnx.Conv(2, 5, (3,), padding=((1, 1),), rngs=rngs)

        def __call__(self, x):
            return self.conv(x.transpose(0, 2, 1))

    _torch.manual_seed(0)
    x = np.random.default_rng(0).standard_normal((2, 2, 7)).astype(np.float32)
    r = _compare(T(), F(_nnx.Rngs(0)), x, dtype="float64", layout="nchw")
    assert r.passed, r.summary()
    assert set(r.param_grads) == {"conv.weight", "conv.bias"} and len(r.input_grads) == 1
    assert not any("gradients not compared" in n for n in r.notes)
