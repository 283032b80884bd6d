"""The seeds' worked examples (docs/concepts.md §1–4), checked in both frameworks."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import jax_impl as J
import torch_impl as T
from parity.tolerances import lookup

TOL = lookup("float32", "cpu")
F32 = {"jax": jnp.float32, "torch": torch.float32}


def _close(got, want):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want, dtype=np.float64),
                               rtol=TOL.rtol, atol=TOL.atol)


@pytest.mark.parametrize("fw", ["jax", "torch"])
def test_derivative_of_quadratic_at_2_is_11(fw):
    L = J if fw == "jax" else T
    x = jnp.float32(2.0) if fw == "jax" else torch.tensor(2.0)
    y, g = L.autograd.value_and_grad(L.autograd.quadratic, x)
    _close(y, 15.0)  # 2·4 + 3·2 + 1
    _close(g, 11.0)


@pytest.mark.parametrize("fw", ["jax", "torch"])
def test_sum_of_polynomial_is_54_with_gradient(fw):
    L = J if fw == "jax" else T
    x = np.array([[1, 2], [3, 4]], np.float32)
    x = jnp.asarray(x) if fw == "jax" else torch.from_numpy(x)
    y, g = L.autograd.value_and_grad(L.autograd.poly_sum, x)
    _close(y, 54.0)
    _close(g, [[4, 6], [8, 10]])


@pytest.mark.parametrize("fw", ["jax", "torch"])
def test_fit_line_through_1_5_and_2_7(fw):
    """y = kx + b learned from (1,5), (2,7): k = 2, b = 3, and the model predicts 9 at x = 3."""
    L = J if fw == "jax" else T
    xs, ys = np.array([1.0, 2.0], np.float64), np.array([5.0, 7.0], np.float64)
    xs, ys = (jnp.asarray(xs), jnp.asarray(ys)) if fw == "jax" else (torch.from_numpy(xs), torch.from_numpy(ys))
    k, b = L.autograd.fit_line(xs, ys, 0.0, 0.0, 0.1, 2000)
    # The loss's Hessian [[5,3],[3,2]] has smallest eigenvalue 0.146, so each step at lr 0.1 shrinks
    # the error by 0.985: after 2000 steps it is ~1e-12, inside float64 parity tolerance.
    tol = lookup("float64", "cpu")
    np.testing.assert_allclose([float(k), float(b), 3 * float(k) + float(b)], [2.0, 3.0, 9.0],
                               rtol=tol.rtol, atol=tol.atol)


@pytest.mark.parametrize("fw", ["jax", "torch"])
def test_update_rule(fw):
    L = J if fw == "jax" else T
    w, g = np.array([1.0, -2.0], np.float32), np.array([0.5, 4.0], np.float32)
    arr = jnp.asarray if fw == "jax" else torch.from_numpy
    (w2,) = L.autograd.gd_step((arr(w),), (arr(g),), 0.1)
    _close(w2, [0.95, -2.4])


@pytest.mark.parametrize("fw", ["jax", "torch"])
def test_flatten_1_2_3_4_to_1_24(fw):
    L = J if fw == "jax" else T
    x = np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4)
    y = L.tensors.flatten_batch(jnp.asarray(x) if fw == "jax" else torch.from_numpy(x))
    assert tuple(y.shape) == (1, 24)
    _close(y, x.reshape(1, 24))


@pytest.mark.parametrize("fw", ["jax", "torch"])
def test_linear_10_to_5_on_ones_3_10(fw):
    """Linear(10, 5) on ones(3, 10): shape (3, 5), and every row is the weight's row sums plus the
    bias (a float64 reference from the layer's own weight, in each framework's layout). The bias is
    set to non-zero values first: Flax initialises it to zeros, which would hide a dropped bias."""
    bias = np.linspace(-0.5, 0.5, 5).astype(np.float32)
    if fw == "jax":
        layer = J.layers.Linear(10, 5, rngs=nnx.Rngs(0))
        layer.bias[...] = jnp.asarray(bias)
        y = layer(jnp.ones((3, 10), jnp.float32))
        w = np.asarray(layer.kernel[...]).T  # kernel is (in, out)
    else:
        layer = T.layers.Linear(10, 5)
        with torch.no_grad():
            layer.bias.copy_(torch.from_numpy(bias))
        y = layer(torch.ones(3, 10))
        w = layer.weight.detach().numpy()  # weight is (out, in)
    assert tuple(y.shape) == (3, 5) and w.shape == (5, 10)
    want = np.ones((3, 10)) @ w.astype(np.float64).T + bias
    _close(y.detach() if fw == "torch" else y, want)


@pytest.mark.parametrize("fw", ["jax", "torch"])
def test_neuron_on_1x10_and_the_reshape_fix(fw):
    """The seed's neuron: a weight of shape (1, 10) is rejected; reshape/view to (10, 1) fixes it."""
    rng = np.random.default_rng(0)
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((1, 10), (1, 10), (1,)))
    want = 1 / (1 + np.exp(-(x.astype(np.float64) @ w.reshape(10, 1).astype(np.float64) + b)))
    L = J if fw == "jax" else T
    arr = jnp.asarray if fw == "jax" else torch.from_numpy
    with pytest.raises(ValueError, match=r"w must have shape \(10, 1\)"):
        L.layers.neuron(arr(x), arr(w), arr(b))
    fixed = arr(w).reshape(10, 1) if fw == "jax" else torch.from_numpy(w).view(10, 1)
    _close(L.layers.neuron(arr(x), fixed, arr(b)), want)


@pytest.mark.parametrize("fw", ["jax", "torch"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_randn_moments_and_creation(fw, dtype):
    """randn from an explicit key/generator: mean ≈ 0 and variance ≈ 1; zeros, ones, eye exact."""
    n = 200_000
    if fw == "jax":
        dt = getattr(jnp, dtype)
        x = J.tensors.randn(jax.random.key(0), (n,), dt)
        z, o, e = J.tensors.zeros((2, 3), dt), J.tensors.ones((2, 3), dt), J.tensors.eye(3, dt)
    else:
        dt = getattr(torch, dtype)
        x = T.tensors.randn(torch.Generator().manual_seed(0), (n,), dt)
        z, o, e = T.tensors.zeros((2, 3), dt), T.tensors.ones((2, 3), dt), T.tensors.eye(3, dt)
    x = np.asarray(x)
    assert x.dtype == np.dtype(dtype) and np.asarray(e).dtype == np.dtype(dtype)
    # the sample mean of n standard normals has standard error 1/sqrt(n) ≈ 2.2e-3: allow 5 sigma
    assert abs(x.mean()) < 5 / np.sqrt(n)
    # the sample variance has standard error sqrt(2/n) ≈ 3.2e-3: allow 5 sigma
    assert abs(x.var() - 1) < 5 * np.sqrt(2 / n)
    np.testing.assert_array_equal(z, np.zeros((2, 3)))
    np.testing.assert_array_equal(o, np.ones((2, 3)))
    np.testing.assert_array_equal(e, np.identity(3))
