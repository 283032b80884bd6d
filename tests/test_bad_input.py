"""Bad input raises a clear error naming the parameter and the expected shape, in both twins."""
import re

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import jax_impl as J
import torch_impl as T

FW = [pytest.param((J, jnp.asarray), id="jax"), pytest.param((T, torch.from_numpy), id="torch")]


def f32(*shape):
    return np.ones(shape, np.float32)


@pytest.mark.parametrize("fw", FW)
@pytest.mark.parametrize("a,b,msg", [
    ((2, 3, 4), (4, 5), r"mm: a must be 2-D, got shape \(2, 3, 4\)"),
    ((3, 4), (4,), r"mm: b must be 2-D, got shape \(4,\)"),
    ((3, 4), (5, 2), r"cannot be multiplied \(4 != 5\)"),
])
def test_mm_rejects_non_matrices(fw, a, b, msg):
    L, arr = fw
    with pytest.raises(ValueError, match=msg):
        L.tensors.mm(arr(f32(*a)), arr(f32(*b)))


@pytest.mark.parametrize("fw", FW)
def test_mse_shape_trap_raises_instead_of_broadcasting(fw):
    """The seed's y_hat (10, 1) against y (10,): torch's MSELoss would warn and average a (10, 10) grid."""
    L, arr = fw
    with pytest.raises(ValueError, match=r"y_hat has shape \(10, 1\) but y has shape \(10,\)"):
        L.losses.mse_loss(arr(f32(10, 1)), arr(f32(10)))


def test_torch_builtin_mse_silently_broadcasts():
    """Why the check exists: torch's own loss only warns, and the number is wrong."""
    yh, y = torch.arange(10.0).view(10, 1), torch.arange(10.0)
    with pytest.warns(UserWarning, match="different to the input size"):
        wrong = torch.nn.functional.mse_loss(yh, y)
    assert wrong.item() != 0.0 and T.losses.mse_loss(yh.view(10), y).item() == 0.0


@pytest.mark.parametrize("fw", FW)
@pytest.mark.parametrize("logits,labels,msg", [
    ((4, 3), np.array([0, 1, 2, 3]), r"labels must lie in \[0, 3\)"),
    ((4, 3), np.array([0, 1, 2]), r"labels must have shape \(4,\)"),
    ((4,), np.array([0]), r"logits must be 2-D \(N, C\)"),
    ((2, 3), np.array([0.0, 1.0], np.float32), r"labels must be integers"),
])
def test_cross_entropy_rejects_bad_labels(fw, logits, labels, msg):
    L, arr = fw
    with pytest.raises(ValueError, match=msg):
        L.losses.cross_entropy(arr(f32(*logits)), arr(labels))


@pytest.mark.parametrize("fw", FW)
def test_unknown_reduction(fw):
    L, arr = fw
    with pytest.raises(ValueError, match="reduction must be one of"):
        L.losses.mse_loss(arr(f32(3)), arr(f32(3)), reduction="avg")


@pytest.mark.parametrize("fw", FW)
def test_linear_rejects_wrong_input_width_and_sizes(fw):
    L, arr = fw
    make = (lambda i, o: L.layers.Linear(i, o, rngs=nnx.Rngs(0))) if L is J else L.layers.Linear
    with pytest.raises(ValueError, match=r"in_features=10, got shape \(3, 7\)"):
        make(10, 5)(arr(f32(3, 7)))
    with pytest.raises(ValueError, match="in_features and out_features must be >= 1"):
        make(0, 5)


@pytest.mark.parametrize("fw", FW)
def test_gelu_rejects_an_unknown_approximation(fw):
    L, arr = fw
    with pytest.raises(ValueError, match=r"gelu: approximate must be 'none' or 'tanh', got 'erf'"):
        L.activations.gelu(arr(f32(3)), "erf")


def _error(fn):
    with pytest.raises(ValueError) as e:
        fn()
    return str(e.value)


@pytest.mark.parametrize("w,b,msg", [
    ((1, 3), (1,), r"neuron: w must have shape \(3, 1\) for x of shape \(4, 3\), got \(1, 3\)"),
    ((3, 1), (3,), r"neuron: b must have shape \(1,\) or be a scalar for w of shape \(3, 1\), got \(3,\)"),
    ((3, 1), (4, 1), r"neuron: b must have shape \(1,\) or be a scalar for w of shape \(3, 1\), got \(4, 1\)"),
    ((3, 1), (1, 1), r"neuron: b must have shape \(1,\) or be a scalar for w of shape \(3, 1\), got \(1, 1\)"),
])
def test_neuron_rejects_a_weight_or_bias_that_would_broadcast(w, b, msg):
    """z = x·w + b with w (d, 1): a (3,) bias would broadcast the (4, 1) output to (4, 3), so it is
    refused with the same message in both twins, as is a weight of the wrong shape (whose message
    ends with each framework's own fix, after the ';')."""
    x, w, b = f32(4, 3), f32(*w), f32(*b)
    got = [_error(lambda: L.layers.neuron(arr(x), arr(w), arr(b))).split(";")[0] for L, arr in
           ((J, jnp.asarray), (T, torch.from_numpy))]
    assert got[0] == got[1]
    assert re.fullmatch(msg, got[0]), got[0]


@pytest.mark.parametrize("fw", FW)
@pytest.mark.parametrize("b", [0.5, (), (1,)], ids=["float", "0-d", "(1,)"])
def test_neuron_accepts_a_scalar_or_one_element_bias(fw, b):
    L, arr = fw
    b = b if isinstance(b, float) else arr(np.full(b, 0.5, np.float32))
    y = L.layers.neuron(arr(f32(4, 3)), arr(f32(3, 1)), b)
    assert tuple(y.shape) == (4, 1)
    np.testing.assert_allclose(np.asarray(y), 1 / (1 + np.exp(-3.5)), rtol=1e-6)
