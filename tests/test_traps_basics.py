"""Parity traps of the foundation concepts (docs/traps.md 2, 16, 17, 22–27, and relu at 0).

Each test shows the default mismatch first, then the setting or conversion that removes it.
"""
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from flax import nnx

import jax_impl as J
import torch_impl as T
from parity import convert
from parity.tolerances import lookup

TOL = lookup("float32", "cpu")


def _close(a, b, tol=TOL):
    return np.allclose(np.asarray(a), np.asarray(b), rtol=tol.rtol, atol=tol.atol)


def test_trap02_linear_weight_layout():
    """torch weight is (out, in), Flax kernel is (in, out): copying it as is fails; transposing fixes it."""
    tl = T.layers.Linear(4, 3)
    jl = J.layers.Linear(4, 3, rngs=nnx.Rngs(0))
    w = tl.weight.detach().numpy()
    with pytest.raises(ValueError, match="broadcast"):  # (3,4) where (4,3) is expected: shapes disagree
        jl.kernel[...] = jnp.asarray(w)
        jl(jnp.ones((2, 4)))
    sq_t, sq_j = T.layers.Linear(3, 3), J.layers.Linear(3, 3, rngs=nnx.Rngs(0))
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    sd = {k: v.detach().numpy() for k, v in sq_t.state_dict().items()}
    sq_j.kernel[...], sq_j.bias[...] = jnp.asarray(sd["weight"]), jnp.asarray(sd["bias"])  # square: runs, wrong
    want = sq_t(torch.from_numpy(x)).detach().numpy()
    assert not _close(sq_j(jnp.asarray(x)), want)
    p = convert.linear_torch_to_flax(sd)
    sq_j.kernel[...], sq_j.bias[...] = jnp.asarray(p["kernel"]), jnp.asarray(p["bias"])
    assert _close(sq_j(jnp.asarray(x)), want)


def test_trap16_default_initialisation_differs():
    """Default inits differ (kaiming_uniform(a=√5) + uniform bias vs lecun_normal + zero bias); copy weights."""
    torch.manual_seed(0)
    tl, jl = T.layers.Linear(64, 32), J.layers.Linear(64, 32, rngs=nnx.Rngs(0))
    tw, jk = tl.weight.detach().numpy(), np.asarray(jl.kernel[...])
    assert np.all(np.abs(tw) <= 1 / np.sqrt(64))  # torch: uniform in ±1/sqrt(fan_in)
    assert np.abs(jk).max() > 1 / np.sqrt(64)  # Flax: truncated normal with std 1/sqrt(fan_in)
    assert np.all(np.asarray(jl.bias[...]) == 0) and np.any(tl.bias.detach().numpy() != 0)
    p = convert.linear_torch_to_flax({k: v.detach().numpy() for k, v in tl.state_dict().items()})
    jl.kernel[...], jl.bias[...] = jnp.asarray(p["kernel"]), jnp.asarray(p["bias"])
    x = np.ones((3, 64), np.float32)
    assert _close(jl(jnp.asarray(x)), tl(torch.from_numpy(x)).detach().numpy())


def test_trap17_same_seed_different_numbers():
    """Seed 0 gives different normals in each framework; drawing once in NumPy gives identical data."""
    a = np.asarray(J.tensors.randn(jax.random.key(0), (5,)))
    b = T.tensors.randn(torch.Generator().manual_seed(0), (5,)).numpy()
    assert not _close(a, b)
    data = np.random.default_rng(0).standard_normal(5).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(J.tensors.from_numpy(data)),
                                  T.tensors.from_numpy(data).numpy())


def test_trap22_mse_scale():
    """optax.l2_loss is 0.5·e² (gradients half of torch's MSELoss); our mse_loss matches torch."""
    rng = np.random.default_rng(1)
    yh, y = rng.standard_normal(8).astype(np.float32), rng.standard_normal(8).astype(np.float32)
    torch_mse = torch.nn.MSELoss()(torch.from_numpy(yh), torch.from_numpy(y)).item()
    optax_mean = float(jnp.mean(optax.l2_loss(jnp.asarray(yh), jnp.asarray(y))))
    assert _close(2 * optax_mean, torch_mse) and not _close(optax_mean, torch_mse)
    assert _close(J.losses.mse_loss(jnp.asarray(yh), jnp.asarray(y)), torch_mse)


def test_trap23_cross_entropy_reduction_class_axis_and_ignore_index():
    """optax gives per-example losses over the last axis; torch averages over dim 1 and skips -100."""
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((4, 5)).astype(np.float32)
    labels = np.array([0, 3, 1, 4])
    per_example = optax.softmax_cross_entropy_with_integer_labels(jnp.asarray(logits), jnp.asarray(labels))
    t = torch.nn.CrossEntropyLoss()(torch.from_numpy(logits), torch.from_numpy(labels)).item()
    assert per_example.shape == (4,)  # not a scalar: the default mismatch
    assert _close(jnp.mean(per_example), t)  # fix 1: take the mean
    # class axis: torch's (N, C, d) puts classes on axis 1, optax takes the last axis; with C = d = 3
    # the torch layout even runs in optax, silently scoring the wrong axis
    lg3 = rng.standard_normal((2, 3, 3)).astype(np.float32)
    lb3 = rng.integers(0, 3, (2, 3))
    t3 = torch.nn.functional.cross_entropy(torch.from_numpy(lg3), torch.from_numpy(lb3)).item()
    naive = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(jnp.asarray(lg3), jnp.asarray(lb3)))
    assert not _close(naive, t3)
    fixed = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(jnp.moveaxis(jnp.asarray(lg3), 1, -1),
                                                                     jnp.asarray(lb3)))
    assert _close(fixed, t3)  # fix 2: move the class axis last
    # ignore_index=-100 (torch's default): torch drops that example from the mean; optax has no such
    # option (mask it yourself); both twins follow torch
    lab_ign = np.array([0, -100, 1, 4])
    t_ign = torch.nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(lab_ign)).item()
    keep = lab_ign != -100
    assert _close(jnp.mean(optax.softmax_cross_entropy_with_integer_labels(
        jnp.asarray(logits[keep]), jnp.asarray(lab_ign[keep]))), t_ign)
    assert _close(J.losses.cross_entropy(jnp.asarray(logits), jnp.asarray(lab_ign)), t_ign)
    assert _close(T.losses.cross_entropy(torch.from_numpy(logits), torch.from_numpy(lab_ign)), t_ign)


def test_trap23_optax_has_no_class_weights_ignore_index_or_weighted_smoothing():
    """torch's weight, ignore_index and label_smoothing have no optax argument; the obvious hand-made
    versions give other numbers (sizes measured here are in docs/traps.md, trap 23); the twins match torch."""
    rng = np.random.default_rng(5)
    n, c = 8, 5
    lg, y, w = rng.standard_normal((n, c)), rng.integers(0, c, n), rng.uniform(0.2, 2.0, c)
    tl, ty, tw = map(torch.from_numpy, (lg, y, w))
    jl, jy, jw = map(jnp.asarray, (lg, y, w))
    per = np.asarray(optax.softmax_cross_entropy_with_integer_labels(jl, jy), np.float64)
    f64 = lookup("float64", "cpu")
    # class weights: torch's weighted mean divides by Σ w[y], not by N
    t = _ce(tl, ty, weight=tw)
    assert not _close(np.mean(per * w[y]), t, f64)  # the naive mean: 12 % high here
    assert _close(np.sum(per * w[y]) / np.sum(w[y]), t, f64)  # the fix
    # ignore_index: optax reads label -100 out of bounds and returns nan for that example
    y_ign = y.copy()
    y_ign[2] = -100
    per_ign = np.asarray(optax.softmax_cross_entropy_with_integer_labels(jl, jnp.asarray(y_ign)))
    assert np.isnan(per_ign[2]) and np.isfinite(np.delete(per_ign, 2)).all()
    t_ign = _ce(tl, torch.from_numpy(y_ign))
    assert np.isfinite(t_ign) and _close(np.mean(np.delete(per_ign, 2)), t_ign, f64)  # fix: mask yourself
    # label smoothing: optax.smooth_labels matches torch without weights, not with them
    eps = 0.1
    smooth = np.asarray(optax.softmax_cross_entropy(jl, optax.smooth_labels(jax.nn.one_hot(jy, c), eps)))
    assert _close(np.mean(smooth), _ce(tl, ty, label_smoothing=eps), f64)
    t_sw = _ce(tl, ty, weight=tw, label_smoothing=eps)
    assert not _close(np.sum(smooth * w[y]) / np.sum(w[y]), t_sw, f64)  # about 0.9 % off here
    # torch weighs the smoothing term by every class's weight: (1-ε)·w[y]·(−log p_y) + ε/C·Σ_c w_c·(−log p_c)
    logp = np.asarray(jax.nn.log_softmax(jl))
    mine = -((1 - eps) * w[y] * logp[np.arange(n), y] + eps / c * (logp * w).sum(1))
    assert _close(mine.sum() / w[y].sum(), t_sw, f64)
    for kw in ({"weight": w}, {"weight": w, "label_smoothing": eps}, {"label_smoothing": eps}):
        jkw = {k: jnp.asarray(v) if k == "weight" else v for k, v in kw.items()}
        tkw = {k: torch.from_numpy(v) if k == "weight" else v for k, v in kw.items()}
        assert _close(J.losses.cross_entropy(jl, jnp.asarray(y_ign), **jkw),
                      _ce(tl, torch.from_numpy(y_ign), **tkw), f64)
        assert _close(T.losses.cross_entropy(tl, torch.from_numpy(y_ign), **tkw),
                      _ce(tl, torch.from_numpy(y_ign), **tkw), f64)


def _ce(*args, **kwargs) -> float:
    return torch.nn.functional.cross_entropy(*args, **kwargs).item()


def test_trap24_softmax_overflow():
    """exp(1000) overflows (exp(100) already does in float32); subtracting the max keeps it finite."""
    for dt in (np.float32, np.float64):
        x = np.array([[100.0, 1000.0, 999.0]], dt)
        with np.errstate(over="ignore", invalid="ignore"):
            naive = np.exp(x) / np.exp(x).sum(-1, keepdims=True)
        assert not np.all(np.isfinite(naive))
        want = np.exp(x.astype(np.float64) - 1000) / np.exp(x.astype(np.float64) - 1000).sum()
        for got in (J.activations.softmax(jnp.asarray(x)), T.activations.softmax(torch.from_numpy(x))):
            assert np.all(np.isfinite(np.asarray(got)))
            assert _close(got, want)
    x32 = np.array([100.0], np.float32)
    with np.errstate(over="ignore"):
        assert np.isinf(np.exp(x32)).all()  # the seed's e^100, in float32


def test_trap25_float64_needs_x64():
    """Without jax_enable_x64 a float64 array silently becomes float32; parity switches x64 on."""
    code = ("import jax, jax.numpy as jnp, numpy as np; "
            "print(jnp.asarray(np.ones(2, np.float64)).dtype)")
    off = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True,
                         env={"JAX_ENABLE_X64": "0", "PATH": ""}, check=True)
    assert off.stdout.strip() == "float32"
    assert jnp.asarray(np.ones(2, np.float64)).dtype == jnp.float64  # parity.precision enabled x64


def test_trap26_autograd_api():
    """torch accumulates .grad across backward() calls and needs `gradient=` for non-scalars;
    jax.grad never accumulates and requires a scalar output."""
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    for _ in range(2):
        T.autograd.poly_sum(x).backward()
    assert torch.equal(x.grad, 2 * (2 * x.detach() + 2))  # doubled: accumulated
    x.grad = None  # the fix: zero (or set to None) between steps
    T.autograd.poly_sum(x).backward()
    assert torch.equal(x.grad, 2 * x.detach() + 2)
    with pytest.raises(RuntimeError, match="grad can be implicitly created only for scalar"):
        T.autograd.quadratic(x).backward()
    x.grad = None
    T.autograd.quadratic(x).backward(gradient=torch.ones(2))
    jx = jnp.array([1.0, 2.0])
    with pytest.raises(TypeError, match="scalar"):
        jax.grad(J.autograd.quadratic)(jx)
    _, vjp = jax.vjp(J.autograd.quadratic, jx)
    assert _close(vjp(jnp.ones(2))[0], x.grad.numpy())


def test_trap27_views_and_memory():
    """torch views and from_numpy share memory; JAX arrays are immutable copies (.at[].set)."""
    a = np.arange(6, dtype=np.float32)
    t = T.tensors.from_numpy(a)
    j = J.tensors.from_numpy(a)
    a[0] = 100.0
    assert t[0].item() == 100.0  # shared with NumPy
    assert float(j[0]) == 0.0  # JAX copied
    v = T.tensors.reshape(t, (2, 3))
    v[1, 1] = -1.0
    assert t[4].item() == -1.0  # the view wrote through to the base tensor
    j2 = J.tensors.reshape(j, (2, 3)).at[1, 1].set(-1.0)  # functional update: a new array
    assert float(j[4]) == 4.0 and float(j2[1, 1]) == -1.0
    assert not J.tensors.to_numpy(j).flags.writeable  # NumPy sees JAX memory read-only
    with pytest.raises(TypeError):
        j[0] = 1.0


def test_trap_relu_gradient_at_zero():
    """Written as max(x, 0) the two frameworks disagree at 0 (JAX 0.5, torch clamp 1); relu gives 0 in both."""
    g_max = float(jax.grad(lambda x: jnp.maximum(x, 0.0))(0.0))
    x = torch.tensor(0.0, requires_grad=True)
    torch.clamp_min(x, 0.0).backward()
    assert (g_max, x.grad.item()) == (0.5, 1.0)
    x.grad = None
    T.activations.relu(x).backward()
    assert float(jax.grad(J.activations.relu)(0.0)) == x.grad.item() == 0.0


def test_seed_sigmoid_formula_is_log_sigmoid():
    """The seed prints Sigmoid as log(1/(1+e^-x)): that formula is log-sigmoid, not sigmoid."""
    x = np.linspace(-6, 6, 25)
    seed_formula = np.log(1 / (1 + np.exp(-x)))
    tol64 = lookup("float64", "cpu")
    for L, arr in ((J, jnp.asarray), (T, torch.from_numpy)):
        assert _close(L.activations.log_sigmoid(arr(x)), seed_formula, tol64)
        assert not _close(L.activations.sigmoid(arr(x)), seed_formula, tol64)


def test_trap15_gelu_default_is_exact_in_torch_and_tanh_in_jax():
    """jax.nn.gelu defaults to the tanh approximation, torch to the exact erf form (gap ≈ 4.7e-4)."""
    x = np.linspace(-4, 4, 81, dtype=np.float32)
    want = torch.nn.functional.gelu(torch.from_numpy(x)).numpy()
    assert not _close(jax.nn.gelu(jnp.asarray(x)), want)
    assert _close(jax.nn.gelu(jnp.asarray(x), approximate=False), want)
    assert _close(J.activations.gelu(jnp.asarray(x)), want)  # the twin follows torch's default
    tanh_form = torch.nn.functional.gelu(torch.from_numpy(x), approximate="tanh").numpy()
    assert _close(J.activations.gelu(jnp.asarray(x), "tanh"), tanh_form)
