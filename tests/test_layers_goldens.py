"""Known answers for the CNN layers (docs/concepts.md §4) in both frameworks, plus checks no parity can make:
dropout's statistics and BatchNorm's training-mode gradient against finite differences."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from jax.test_util import check_grads

import jax_impl as J
import torch_impl as T
from parity import convert
from parity.tolerances import lookup

TOL = lookup("float32", "cpu")
SEED_INPUT = np.array([[1, 2, 1, 0], [2, 0, 1, 3], [0, 5, 4, 2], [4, 1, 2, 5]], np.float32)
SEED_KERNEL = np.array([[0, 1, 0], [2, 1, 1], [1, 0, 1]], np.float32)


def _close(got, want):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want, np.float64), rtol=TOL.rtol, atol=TOL.atol)


def _run(fw, layer, x_nchw, params=None):
    """Run a layer of either twin on an NCHW NumPy input; return NCHW NumPy (layouts as in parity/)."""
    if fw == "torch":
        if params:
            layer.load_state_dict({k: torch.from_numpy(v) for k, v in params.items()})
        with torch.no_grad():
            return layer(torch.from_numpy(x_nchw)).numpy()
    if params:
        nnx.update(layer, convert.conv_torch_to_flax(params))
    return np.asarray(convert.nhwc_to_nchw(layer(jnp.asarray(convert.nchw_to_nhwc(x_nchw)))))


def _conv(fw, **kw):
    return T.conv.Conv2d(1, 1, 3, bias=False, **kw) if fw == "torch" else \
        J.conv.Conv2d(1, 1, 3, bias=False, **kw, rngs=nnx.Rngs(0))


@pytest.mark.parametrize("fw", ["jax", "torch"])
@pytest.mark.parametrize("kw,want", [
    ({}, [[11, 12], [15, 23]]),
    ({"padding": 1}, [[3, 8, 8, 3], [8, 11, 12, 9], [8, 15, 23, 15], [5, 16, 13, 11]]),
    ({"stride": 2}, [[11]]),
], ids=["plain", "padding 1", "stride 2"])
def test_conv2d_worked_example(fw, kw, want):
    y = _run(fw, _conv(fw, **kw), SEED_INPUT[None, None], {"weight": SEED_KERNEL[None, None]})
    _close(y[0, 0], want)


@pytest.mark.parametrize("fw", ["jax", "torch"])
@pytest.mark.parametrize("ceil_mode,want", [(True, [[5, 3], [4, 5]]), (False, [[5]])])
def test_max_pool2d_worked_example(fw, ceil_mode, want):
    layer = (T if fw == "torch" else J).pooling.MaxPool2d(3, ceil_mode=ceil_mode)  # stride = kernel
    _close(_run(fw, layer, SEED_INPUT[None, None])[0, 0], want)


@pytest.mark.parametrize("fw", ["jax", "torch"])
def test_conv2d_on_132x132_image_gives_6x130x130(fw):
    image = np.random.default_rng(0).standard_normal((1, 3, 132, 132)).astype(np.float32)
    layer = T.conv.Conv2d(3, 6, 3, stride=1, padding=0) if fw == "torch" else \
        J.conv.Conv2d(3, 6, 3, stride=1, padding=0, rngs=nnx.Rngs(0))
    y = _run(fw, layer, image)
    assert y.shape == (1, 6, 130, 130)
    # the seed's view(-1, 3, 130, 130), in each framework's own API: channel 3 becomes [1, 0]
    r = torch.from_numpy(y).view(-1, 3, 130, 130) if fw == "torch" else jnp.reshape(jnp.asarray(y), (-1, 3, 130, 130))
    assert tuple(r.shape) == (2, 3, 130, 130) and np.array_equal(np.asarray(r)[1, 0], y[0, 3])


# ---------------------------------------------------------------- dropout's statistics (docs/traps.md, trap 18 (b))
N_DROP = 200_000


@pytest.mark.parametrize("fw", ["jax", "torch"])
@pytest.mark.parametrize("p", [0.2, 0.5])
def test_dropout_keeps_1_minus_p_and_scales_survivors(fw, p):
    x = np.ones(N_DROP, np.float32)
    if fw == "torch":
        torch.manual_seed(0)
        y = T.layers.Dropout(p)(torch.from_numpy(x)).numpy()
    else:
        y = np.asarray(J.layers.Dropout(p, rngs=nnx.Rngs(dropout=0))(jnp.asarray(x)))
    kept = y != 0
    # The keep count is Binomial(N, 1 − p): 5 standard deviations bound a correct layer's deviation
    # (false alarm ~6e-7) while a layer keeping p instead of 1 − p misses by ~100 of them.
    sd = np.sqrt(N_DROP * p * (1 - p))
    assert abs(kept.sum() - N_DROP * (1 - p)) < 5 * sd
    _close(y[kept], np.full(kept.sum(), 1 / (1 - p)))


def test_jax_dropout_stream_advances():
    """Two calls of one Flax Dropout draw two different masks (its RNG stream is state)."""
    m = J.layers.Dropout(0.5, rngs=nnx.Rngs(dropout=0))
    x = jnp.ones((1000,), jnp.float32)
    assert not np.array_equal(np.asarray(m(x)), np.asarray(m(x)))


# ---------------------------------------------------------------- BatchNorm: train-mode gradient
# The registry's BatchNorm samples return the running statistics too, which finite differences cannot
# check in training (they depend on x but are not differentiated), so y's gradient is checked here.
BN_X = np.random.default_rng(1).standard_normal((3, 2, 3, 2)) * 2 + 1
BN_W = np.array([0.7, 1.3])
BN_B = np.array([0.1, -0.4])


def test_batchnorm_train_gradient_torch_matches_finite_differences():
    m = T.normalization.BatchNorm2d(2, dtype=torch.float64)

    def f(x, w, b):
        return torch.func.functional_call(m, {"weight": w, "bias": b}, (x,))

    args = tuple(torch.tensor(a, requires_grad=True) for a in (BN_X, BN_W, BN_B))
    assert torch.autograd.gradcheck(f, args)  # its float64 defaults: eps 1e-6, atol 1e-5, rtol 1e-3


def test_batchnorm_train_gradient_jax_matches_finite_differences():
    def f(x, scale, bias):
        m = J.normalization.BatchNorm2d(2, dtype=jnp.float64)  # built inside the traced function
        nnx.update(m, {"scale": scale, "bias": bias})
        return m(x)

    check_grads(jax.jit(f), (jnp.asarray(convert.nchw_to_nhwc(BN_X)), jnp.asarray(BN_W), jnp.asarray(BN_B)),
                order=1, modes=("rev",))  # its float64 defaults
