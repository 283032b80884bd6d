"""Weight and state conversion between torch state_dicts and Flax NNX state: per layer kind and for a
whole CNN built from the twin layers. torch → Flax → torch is exact (bitwise)."""
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import jax_impl as J
import torch_impl as T
from parity import convert
from parity.porting import kinds
from parity.tolerances import lookup, training_curve

TOL = lookup("float32", "cpu")


def _sd(module: torch.nn.Module) -> dict:
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


def _assert_bitwise(a: dict, b: dict):
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert a[k].tobytes() == b[k].tobytes(), f"{k} differs"


@pytest.mark.parametrize("to_flax,to_torch,torch_layer", [
    (convert.linear_torch_to_flax, convert.linear_flax_to_torch, lambda: T.layers.Linear(7, 3)),
    (convert.conv_torch_to_flax, convert.conv_flax_to_torch, lambda: T.conv.Conv2d(3, 4, (2, 3))),
    (convert.conv_torch_to_flax, convert.conv_flax_to_torch, lambda: T.conv.Conv2d(4, 6, 3, groups=2, bias=False)),
    (convert.batchnorm_torch_to_flax, convert.batchnorm_flax_to_torch, lambda: T.normalization.BatchNorm2d(5)),
], ids=["linear", "conv", "grouped conv", "batchnorm"])
def test_round_trip_is_bitwise(to_flax, to_torch, torch_layer):
    torch.manual_seed(0)
    layer = torch_layer()
    if isinstance(layer, torch.nn.BatchNorm2d):  # non-trivial running statistics and counter
        layer(torch.randn(4, 5, 3, 3))
    sd = _sd(layer)
    _assert_bitwise(to_torch(to_flax(sd)), sd)


def test_conv_layouts():
    w = np.arange(4 * 3 * 2 * 5, dtype=np.float32).reshape(4, 3, 2, 5)  # O, I, kh, kw
    k = convert.conv_torch_to_flax({"weight": w})["kernel"]
    assert k.shape == (2, 5, 3, 4) and k[1, 4, 2, 3] == w[3, 2, 1, 4]
    x = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    assert np.array_equal(convert.nhwc_to_nchw(convert.nchw_to_nhwc(x)), x)
    assert convert.nchw_to_nhwc(x)[1, 2, 3, 0] == x[1, 0, 2, 3]


def test_flatten_linear_conversion_accounts_for_nhwc_flatten_order():
    """torch Flatten of (C, H, W) → Linear equals Flax Flatten of (H, W, C) → the converted Linear;
    the plain Linear conversion (no row permutation) does not."""
    c, h, w = 2, 3, 4
    torch.manual_seed(0)
    lin = T.layers.Linear(c * h * w, 5)
    x = np.random.default_rng(0).standard_normal((3, c, h, w)).astype(np.float32)
    want = lin(T.layers.Flatten()(torch.from_numpy(x))).detach().numpy()
    flat = J.layers.Flatten()(jnp.asarray(convert.nchw_to_nhwc(x)))
    jl = J.layers.Linear(c * h * w, 5, rngs=nnx.Rngs(0))
    nnx.update(jl, convert.flatten_linear_torch_to_flax(_sd(lin), (c, h, w)))
    np.testing.assert_allclose(np.asarray(jl(flat)), want, rtol=TOL.rtol, atol=TOL.atol)
    nnx.update(jl, convert.linear_torch_to_flax(_sd(lin)))
    assert not np.allclose(np.asarray(jl(flat)), want, rtol=TOL.rtol, atol=TOL.atol)
    with pytest.raises(ValueError, match=r"expected C·H·W = 2·3·3 = 18"):
        convert.flatten_linear_torch_to_flax(_sd(lin), (2, 3, 3))


# ---------------------------------------------------------------- a whole CNN built from the twins
class TorchNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = T.conv.Conv2d(3, 4, 3, padding=1)
        self.bn1 = T.normalization.BatchNorm2d(4)
        self.pool = T.pooling.MaxPool2d(2)
        self.conv2 = T.conv.Conv2d(4, 6, 3, groups=2, padding="same", bias=False)
        self.avg = T.pooling.AvgPool2d(2, ceil_mode=True)
        self.flatten = T.layers.Flatten()
        self.fc = T.layers.Linear(6 * 2 * 2, 5)

    def forward(self, x):
        x = self.pool(torch.relu(self.bn1(self.conv1(x))))
        return self.fc(self.flatten(self.avg(self.conv2(x))))


class FlaxNet(nnx.Module):
    def __init__(self, *, rngs):
        self.conv1 = J.conv.Conv2d(3, 4, 3, padding=1, rngs=rngs)
        self.bn1 = J.normalization.BatchNorm2d(4)
        self.pool = J.pooling.MaxPool2d(2)
        self.conv2 = J.conv.Conv2d(4, 6, 3, groups=2, padding="same", bias=False, rngs=rngs)
        self.avg = J.pooling.AvgPool2d(2, ceil_mode=True)
        self.flatten = J.layers.Flatten()
        self.fc = J.layers.Linear(6 * 2 * 2, 5, rngs=rngs)

    def __call__(self, x):
        x = self.pool(jnp.maximum(self.bn1(self.conv1(x)), 0))
        return self.fc(self.flatten(self.avg(self.conv2(x))))


LAYERS = {"conv1": "conv", "bn1": "batchnorm", "conv2": "conv", "fc": ("flatten_linear", (6, 2, 2))}


def _twins():
    torch.manual_seed(0)
    tnet, fnet = TorchNet(), FlaxNet(rngs=nnx.Rngs(0))
    with torch.no_grad():  # running statistics away from their initial 0 and 1
        tnet.bn1.running_mean.uniform_(-1, 1)
        tnet.bn1.running_var.uniform_(0.5, 2)
        tnet.bn1.num_batches_tracked.fill_(7)
    state = nnx.state(fnet)
    nnx.replace_by_pure_dict(state, kinds.model_to_flax(_sd(tnet), LAYERS))
    nnx.update(fnet, state)
    return tnet, fnet


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_whole_model_converted_to_flax_computes_the_same(training):
    tnet, fnet = _twins()
    tnet.train(training)
    fnet.train() if training else fnet.eval()
    x = np.random.default_rng(1).standard_normal((2, 3, 7, 7)).astype(np.float32)  # 7 → 3 → ceil 2
    want = tnet(torch.from_numpy(x)).detach().numpy()
    got = np.asarray(fnet(jnp.asarray(convert.nchw_to_nhwc(x))))
    np.testing.assert_allclose(got, want, rtol=TOL.rtol, atol=TOL.atol)
    # after the step the state (running statistics and their counter, in training) matches too
    back = kinds.model_to_torch(nnx.to_pure_dict(nnx.state(fnet)), LAYERS)
    for k, v in _sd(tnet).items():
        np.testing.assert_allclose(back[k], v, rtol=TOL.rtol, atol=TOL.atol, err_msg=k)


def test_whole_model_round_trip_is_bitwise():
    tnet, fnet = _twins()
    flax_params = nnx.to_pure_dict(nnx.state(fnet))
    _assert_bitwise(kinds.model_to_torch(flax_params, LAYERS), _sd(tnet))
    # and the other way: Flax → torch → Flax
    again = kinds.model_to_flax(kinds.model_to_torch(flax_params, LAYERS), LAYERS)
    for name in LAYERS:
        _assert_bitwise({k: np.asarray(v) for k, v in flax_params[name].items()}, again[name])


def test_whole_model_conversion_drops_nothing_silently():
    sd = _sd(TorchNet())
    with pytest.raises(KeyError, match=r"keys of no listed layer: \['bn1.bias'"):
        kinds.model_to_flax(sd, {k: v for k, v in LAYERS.items() if k != "bn1"})
    with pytest.raises(ValueError, match="unknown kind 'dense'"):
        kinds.model_to_flax(sd, {**LAYERS, "fc": "dense"})


def test_trainers_update_batchnorm_running_statistics_alike():
    """Both Trainers carry BatchNorm's running statistics through their steps: the JAX step returns
    the state the forward pass updated (not the state it started from), torch mutates the buffers."""
    tnet, fnet = _twins()
    rng = np.random.default_rng(2)
    x = rng.standard_normal((8, 3, 7, 7)).astype(np.float32)
    y = rng.integers(0, 5, 8)
    jtr = J.train.Trainer(fnet, J.optim.from_library("sgd", lr=0.1, momentum=0.9), J.losses.cross_entropy)
    ttr = T.train.Trainer(tnet, T.optim.from_library("sgd", lr=0.1, momentum=0.9), torch.nn.functional.cross_entropy)
    jx, jy, tx, ty = jnp.asarray(convert.nchw_to_nhwc(x)), jnp.asarray(y), torch.from_numpy(x), torch.from_numpy(y)
    losses = np.array([(float(jtr.step(jx, jy)), float(ttr.step(tx, ty))) for _ in range(5)])
    tol = training_curve("float32", "sgd", convolutional=True)
    np.testing.assert_allclose(losses[:, 0], losses[:, 1], rtol=tol.rtol, atol=tol.atol, err_msg=tol.source)
    back = kinds.model_to_torch(nnx.to_pure_dict(nnx.state(jtr.model)), LAYERS)
    assert int(back["bn1.num_batches_tracked"]) == 7 + 5  # five steps counted, from _twins' 7
    for k in ("bn1.running_mean", "bn1.running_var", "bn1.num_batches_tracked"):
        np.testing.assert_allclose(back[k], _sd(tnet)[k], rtol=tol.rtol, atol=tol.atol, err_msg=k)
