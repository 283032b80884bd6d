"""Every option of cross_entropy, nll_loss, BatchNorm2d, softmax/log_softmax and the empty batch,
in both twins, against torch's own F.cross_entropy, F.nll_loss, nn.BatchNorm2d and F.softmax.

The parity registry compares the twins with each other on chosen samples; here each twin is
compared with the torch library itself over a grid of option combinations (and a hypothesis sweep),
outputs and gradients, plus the refusals both twins share for bad values.
"""
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import jax_impl as J
import torch_impl as T
from parity import precision  # noqa: F401  (x64 on before any JAX use)
from parity.tolerances import lookup
from shape_rules import DtypeError

DTYPES = ("float32", "float64")
REDUCTIONS = ("mean", "sum", "none")
SHAPES = [(6, 4), (4,), (2, 4, 3), (2, 4, 3, 2), (0, 4)]  # (N, C), unbatched, K = 1, K = 2, empty batch


def _index_shape(shape):
    return () if len(shape) == 1 else (shape[0],) + shape[2:]


def _indices(rng, shape, ignore_index, ignored):
    c = shape[0] if len(shape) == 1 else shape[1]
    y = rng.integers(0, c, _index_shape(shape)).astype(np.int64)
    flat = y.reshape(-1)
    flat[:ignored] = ignore_index
    return y


def _probabilities(rng, shape, dt):
    c = shape[0] if len(shape) == 1 else shape[1]
    p = rng.dirichlet(np.ones(c), size=max(int(np.prod(shape)) // c, 0) if c else 0)
    if len(shape) == 1:
        return p.reshape(shape).astype(dt)
    return np.moveaxis(p.reshape(_index_shape(shape) + (c,)), -1, 1).astype(dt)


def _ce_all(logits, target, weight, kwargs, loss="cross_entropy", target_grad=False):
    """(torch library, torch twin, JAX twin): each a (value, logits gradient, target gradient or None)."""
    ct = np.random.default_rng(1).standard_normal(np.shape(_torch_value(logits, target, weight, kwargs, loss)))
    out = []
    for which in ("library", "torch", "jax"):
        if which == "jax":
            w = None if weight is None else jnp.asarray(weight)
            fn = getattr(J.losses, loss)

            def scalar(x, t):
                v = fn(x, t, w, **kwargs)
                return (v * jnp.asarray(ct, v.dtype)).sum(), v
            argnums = (0, 1) if target_grad else 0
            grads, value = jax.grad(scalar, argnums=argnums, has_aux=True)(jnp.asarray(logits), jnp.asarray(target))
            gx, gt = grads if target_grad else (grads, None)
            out.append((np.asarray(value), np.asarray(gx), None if gt is None else np.asarray(gt)))
            continue
        x = torch.tensor(logits, requires_grad=True)
        t = torch.tensor(target, requires_grad=target_grad)
        w = None if weight is None else torch.tensor(weight)
        fn = getattr(F, loss) if which == "library" else getattr(T.losses, loss)
        v = fn(x, t, w, **kwargs)
        g = torch.autograd.grad((v * torch.tensor(ct, dtype=v.dtype)).sum(), [x, t] if target_grad else [x],
                                allow_unused=True)
        out.append((v.detach().numpy(), g[0].numpy(), g[1].numpy() if target_grad else None))
    return out


def _torch_value(logits, target, weight, kwargs, loss):
    return getattr(F, loss)(torch.tensor(logits), torch.tensor(target),
                            None if weight is None else torch.tensor(weight), **kwargs)


def _assert_same(results, dtype, what):
    """Each twin's value and gradients equal the library's within the dtype's parity tolerance;
    nan where the library has nan (torch's 0/0 'mean')."""
    tol = lookup(dtype, "cpu")
    ref = results[0]
    for name, got in zip(("torch twin", "jax twin"), results[1:]):
        for k, (a, b) in enumerate(zip(got, ref)):
            if b is None:
                continue
            assert a.shape == b.shape and a.dtype == b.dtype, \
                f"{what} {name} [{k}]: {a.shape} {a.dtype} vs {b.shape} {b.dtype}"
            np.testing.assert_allclose(a, b, rtol=tol.rtol, atol=tol.atol, equal_nan=True,
                                       err_msg=f"{what} {name} [{k}] ({tol.source})")


# ---------------------------------------------------------------- cross_entropy and nll_loss, the grid
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_cross_entropy_class_indices_grid_matches_torch(shape, reduction, dtype):
    """Weight × ignore_index (-100 and a class) × label smoothing (0, 0.25, 1) × ignored targets
    (none, some, every one: torch's 'mean' is then nan with zero gradients) on each shape."""
    rng = np.random.default_rng(0)
    c = shape[0] if len(shape) == 1 else shape[1]
    logits = rng.standard_normal(shape).astype(dtype) * 2
    n_targets = int(np.prod(_index_shape(shape)))
    ignoring = [(-100, i) for i in sorted({0, min(2, n_targets), n_targets})] + [(1, min(2, n_targets))]
    for weighted in (False, True):
        weight = rng.uniform(0.2, 2.0, c).astype(dtype) if weighted else None
        for ignore_index, ignored in ignoring:
            labels = _indices(rng, shape, ignore_index, ignored)
            for ls in (0.0, 0.25) if (ignore_index, weighted) != (1, True) else (0.0, 0.25, 1.0):
                kw = dict(ignore_index=ignore_index, reduction=reduction, label_smoothing=ls)
                _assert_same(_ce_all(logits, labels, weight, kw), dtype,
                             f"{shape} weight={weighted} ignore={ignore_index}×{ignored} ls={ls}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_cross_entropy_probabilities_grid_matches_torch(shape, reduction, dtype):
    """Class-probability targets: weight × label smoothing, gradients for logits and target."""
    rng = np.random.default_rng(1)
    c = shape[0] if len(shape) == 1 else shape[1]
    logits = rng.standard_normal(shape).astype(dtype)
    target = _probabilities(rng, shape, dtype)
    for weight in (None, rng.uniform(0.2, 2.0, c).astype(dtype)):
        for ls in (0.0, 0.3, 1.0):
            kw = dict(reduction=reduction, label_smoothing=ls)
            _assert_same(_ce_all(logits, target, weight, kw, target_grad=True), dtype,
                         f"{shape} weight={weight is not None} ls={ls}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_nll_loss_grid_matches_torch(shape, reduction, dtype):
    rng = np.random.default_rng(2)
    c = shape[0] if len(shape) == 1 else shape[1]
    logp = np.log(rng.dirichlet(np.ones(c), size=1)[0]).astype(dtype) if len(shape) == 1 else \
        rng.standard_normal(shape).astype(dtype) - 2
    n_targets = int(np.prod(_index_shape(shape)))
    for weight in (None, rng.uniform(0.2, 2.0, c).astype(dtype)):
        for ignore_index in (-100, 0):
            for ignored in sorted({0, min(1, n_targets), n_targets}):
                labels = _indices(rng, shape, ignore_index, ignored)
                kw = dict(ignore_index=ignore_index, reduction=reduction)
                _assert_same(_ce_all(logp, labels, weight, kw, loss="nll_loss"), dtype,
                             f"{shape} weight={weight is not None} ignore={ignore_index}×{ignored}")


@given(data=st.data())
def test_cross_entropy_random_combinations_match_torch(data):
    """Any shape (batched, K-dim, unbatched, empty), target kind, weight, ignore_index, smoothing in
    [0, 1] and reduction: both twins equal torch's F.cross_entropy."""
    rank = data.draw(st.integers(1, 4), label="rank")
    c = data.draw(st.integers(1, 5), label="C")
    n = data.draw(st.integers(0, 4), label="N")
    shape = (c,) if rank == 1 else (n, c) + tuple(data.draw(st.integers(1, 3)) for _ in range(rank - 2))
    dtype = data.draw(st.sampled_from(DTYPES), label="dtype")
    seed = data.draw(st.integers(0, 2 ** 16), label="seed")
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal(shape) * data.draw(st.sampled_from([1.0, 30.0]))).astype(dtype)
    weight = rng.uniform(0.0, 2.0, c).astype(dtype) if data.draw(st.booleans(), label="weight") else None
    ls = data.draw(st.sampled_from([0.0, 1.0]) | st.floats(0.0, 1.0), label="label_smoothing")
    reduction = data.draw(st.sampled_from(REDUCTIONS), label="reduction")
    if data.draw(st.booleans(), label="probabilities"):
        target, kw, tg = _probabilities(rng, shape, dtype), dict(reduction=reduction, label_smoothing=ls), True
    else:
        ignore_index = data.draw(st.sampled_from([-100, -1, 0, c - 1]), label="ignore_index")
        n_targets = int(np.prod(_index_shape(shape)))
        target = _indices(rng, shape, ignore_index, data.draw(st.integers(0, n_targets), label="ignored"))
        kw, tg = dict(ignore_index=ignore_index, reduction=reduction, label_smoothing=ls), False
    _assert_same(_ce_all(logits, target, weight, kw, target_grad=tg), dtype, f"{shape} {kw}")


def test_every_target_ignored_is_nan_with_zero_gradients_as_torch():
    """torch's 'mean' over no counted target is 0/0 = nan, and its gradient is zeros (not nan)."""
    logits = np.random.default_rng(3).standard_normal((4, 3))
    labels = np.full(4, -100)
    for ls in (0.0, 0.2):
        lib, tw, jx = _ce_all(logits, labels, None, dict(label_smoothing=ls))
        for value, grad, _ in (lib, tw, jx):
            assert np.isnan(value) and np.array_equal(grad, np.zeros_like(grad))


def test_counted_targets_of_zero_weight_give_torchs_nan_gradients():
    """Targets counted but all weighing 0: torch's 'mean' is 0/0 = nan and so is its gradient (the
    whole row for cross_entropy, the target's column for nll_loss); the twins follow."""
    logits = np.random.default_rng(3).standard_normal((4, 3))
    labels, weight = np.array([0, 2, 0, -100]), np.array([0.0, 1.0, 0.0])
    for loss, ls in (("cross_entropy", 0.0), ("cross_entropy", 0.2), ("nll_loss", 0.0)):
        kw = dict(label_smoothing=ls) if loss == "cross_entropy" else {}
        lib, tw, jx = _ce_all(logits, labels, weight, kw, loss=loss)
        assert np.isnan(lib[0]) and np.isnan(lib[1]).any() and not np.isnan(lib[1]).all()
        for got in (tw, jx):
            np.testing.assert_array_equal(np.isnan(got[1]), np.isnan(lib[1]))
            np.testing.assert_array_equal(got[1][~np.isnan(lib[1])], lib[1][~np.isnan(lib[1])])


def test_legacy_size_average_and_reduce_map_as_torch():
    rng = np.random.default_rng(4)
    logits, labels = rng.standard_normal((5, 3)), rng.integers(0, 3, 5)
    for size_average in (None, True, False):
        for reduce in (None, True, False):
            if size_average is None and reduce is None:
                continue
            kw = dict(size_average=size_average, reduce=reduce)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                want = F.cross_entropy(torch.tensor(logits), torch.tensor(labels), **kw).numpy()
                got_t = T.losses.cross_entropy(torch.tensor(logits), torch.tensor(labels), **kw).numpy()
                got_j = np.asarray(J.losses.cross_entropy(jnp.asarray(logits), jnp.asarray(labels), **kw))
                got_n = np.asarray(J.losses.nll_loss(jnp.asarray(logits), jnp.asarray(labels), **kw))
            messages = {str(w.message) for w in caught}
            assert len(messages) == 1, messages  # torch's own warning text, from all four
            np.testing.assert_allclose(got_t, want)
            np.testing.assert_allclose(got_j, want, rtol=1e-12)
            assert got_n.shape == want.shape


# ---------------------------------------------------------------- the same refusals in both twins
def _both(fn, *arrays, **kw):
    """fn called in each twin on the arrays; the two raised exceptions (type, message)."""
    raised = []
    for L, arr in ((J, jnp.asarray), (T, torch.as_tensor)):
        with pytest.raises(Exception) as info:
            fn(L)(*[None if a is None else arr(a) for a in arrays], **kw)
        raised.append((type(info.value), str(info.value)))
    assert raised[0] == raised[1], raised
    return raised[0]


X = np.zeros((4, 3), np.float32)
Y = np.array([0, 1, 2, 1])


@pytest.mark.parametrize("logits,labels,weight,kw,kind,msg", [
    (X, Y, np.ones(2, np.float32), {}, ValueError, r"weight must have shape \(3,\)"),
    (X, Y, np.ones((3, 1), np.float32), {}, ValueError, r"weight must have shape \(3,\)"),
    (X, Y, np.ones(3, np.float64), {}, DtypeError, "weight dtype float64 differs from logits dtype float32"),
    (X, Y, None, dict(label_smoothing=1.5), ValueError, "label_smoothing must be between 0.0 and 1.0"),
    (X, Y, None, dict(label_smoothing=-0.1), ValueError, "label_smoothing must be between 0.0 and 1.0"),
    (X, Y, None, dict(ignore_index=1.5), TypeError, "ignore_index must be an int"),
    (X, Y, None, dict(reduction="avg"), ValueError, "reduction must be one of"),
    (X, np.full((4, 3), 1 / 3, np.float32), None, dict(ignore_index=1), ValueError,
     "ignore_index is not supported for class-probability targets"),
    (X, np.ones((4, 3), np.int64), None, {}, DtypeError, "holds class probabilities and must be floating"),
    (X, np.array([0, 1, 3, 1]), None, {}, ValueError, r"labels must lie in \[0, 3\)"),
    (X, np.array([0, 1, -1, 1]), None, {}, ValueError, r"labels must lie in \[0, 3\)"),
    (X, np.array([0, 1, 2]), None, {}, ValueError, r"labels must have shape \(4,\)"),
    (np.zeros((2, 3, 4), np.float32), np.zeros((2, 5), np.int64), None, {}, ValueError,
     r"labels must have shape \(2, 4\) to match logits \(N, C, d1, …, dK\)"),
    (np.zeros((4,), np.float32), np.array([0]), None, {}, ValueError, r"logits must be 2-D \(N, C\)"),
    (np.float32(1.0), np.int64(0), None, {}, ValueError, "logits must have a class axis"),
    (X, np.zeros(4, np.float32), None, {}, DtypeError, "labels must be integers"),
    (X.astype(np.int64), Y, None, {}, DtypeError, "logits dtype int64 is not supported"),
])
def test_cross_entropy_refusals_are_shared(logits, labels, weight, kw, kind, msg):
    """Bad values raise the same exception and message in both twins (torch's library raises
    RuntimeError, IndexError or ValueError for most of them; for a negative label_smoothing and a
    (1,) target against (C,) logits it computes a value instead, which both twins refuse)."""
    got_kind, got_msg = _both(lambda L: L.losses.cross_entropy, logits, labels, weight, **kw)
    assert issubclass(got_kind, kind) and __import__("re").search(msg, got_msg), (got_kind, got_msg)


def test_torch_accepts_what_the_twins_refuse():
    """The two refusals that are the twins' own: torch computes these silently."""
    x = torch.zeros(4, 3)
    assert torch.isfinite(F.cross_entropy(x, torch.tensor(Y), label_smoothing=-0.1))  # read as 0
    assert torch.isfinite(F.cross_entropy(torch.zeros(4), torch.tensor([0])))


def test_nll_loss_refuses_probability_targets_in_both():
    kind, msg = _both(lambda L: L.losses.nll_loss, X, np.full((4, 3), 1 / 3, np.float32))
    assert "class indices" in msg
    with pytest.raises(RuntimeError):  # torch: "multi-target not supported"
        F.nll_loss(torch.tensor(X), torch.full((4, 3), 1 / 3))


def test_an_ignored_label_out_of_range_is_not_refused():
    """-100 (the default ignore_index) is no class and is skipped, as in torch; an in-range class
    named as ignore_index is skipped too."""
    for L, arr in ((J, jnp.asarray), (T, torch.as_tensor)):
        v = L.losses.cross_entropy(arr(X), arr(np.array([0, -100, 1, 2])))
        assert np.isfinite(float(v))
        assert float(L.losses.cross_entropy(arr(X), arr(np.array([5, 5, 5, 5])), ignore_index=5, reduction="sum")) == 0


# ---------------------------------------------------------------- empty batches
@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_batches_follow_torch(dtype):
    """N = 0: mse/cross-entropy/nll 'mean' is nan, 'sum' 0, 'none' empty; Linear gives (0, out)."""
    for red in REDUCTIONS:
        tz = torch.zeros(0, 3, dtype=getattr(torch, dtype))
        want = F.mse_loss(tz, tz, reduction=red).numpy()
        for got in (T.losses.mse_loss(torch.zeros(0, 3, dtype=getattr(torch, dtype)),
                                      torch.zeros(0, 3, dtype=getattr(torch, dtype)), red).numpy(),
                    np.asarray(J.losses.mse_loss(jnp.zeros((0, 3), dtype), jnp.zeros((0, 3), dtype), red))):
            assert got.shape == want.shape and got.dtype == want.dtype
            np.testing.assert_array_equal(got, want)
    rng = np.random.default_rng(5)
    weight = rng.uniform(size=4).astype(dtype)
    bound = 1 / np.sqrt(4)
    w, b = rng.uniform(-bound, bound, (3, 4)).astype(dtype), rng.uniform(-bound, bound, 3).astype(dtype)
    tm = T.layers.Linear(4, 3, dtype=getattr(torch, dtype))
    tm.load_state_dict({"weight": torch.tensor(w), "bias": torch.tensor(b)})
    from flax import nnx
    jm = J.layers.Linear(4, 3, dtype=dtype, rngs=nnx.Rngs(0))
    jm.kernel[...], jm.bias[...] = jnp.asarray(w.T), jnp.asarray(b)
    assert tuple(tm(torch.zeros(0, 4, dtype=getattr(torch, dtype))).shape) == (0, 3)
    assert jm(jnp.zeros((0, 4), dtype)).shape == (0, 3) and jm(jnp.zeros((0, 4), dtype)).dtype == dtype
    graphdef, params = nnx.split(jm)
    g = nnx.to_pure_dict(jax.grad(lambda p: nnx.merge(graphdef, p)(jnp.zeros((0, 4), dtype)).sum())(params))
    xt = torch.zeros(0, 4, dtype=getattr(torch, dtype))
    gt = torch.autograd.grad(tm(xt).sum(), [tm.weight, tm.bias])
    np.testing.assert_array_equal(np.asarray(g["kernel"]).T, gt[0].numpy())  # zeros in both
    np.testing.assert_array_equal(np.asarray(g["bias"]), gt[1].numpy())
    _assert_same(_ce_all(np.zeros((0, 4), dtype), np.zeros(0, np.int64), weight, {}), dtype, "empty")


# ---------------------------------------------------------------- softmax and log_softmax
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("shape,dim", [((), 0), ((), -1), ((3, 0), 1), ((0, 5), 1), ((0, 5), 0), ((2, 0, 3), -1),
                                       ((4, 5), 0), ((4, 5), -1), ((2, 3, 4), 1)])
def test_softmax_edges_match_torch(name, shape, dim):
    """0-d input (dim 0 or −1) and zero-size input give torch's results; gradients too."""
    x = np.random.default_rng(6).standard_normal(shape)
    t = torch.tensor(x, requires_grad=True)
    want = getattr(F, name)(t, dim)
    ct = np.random.default_rng(7).standard_normal(shape)
    (gw,) = torch.autograd.grad((want * torch.tensor(ct)).sum(), t)
    tt = torch.tensor(x, requires_grad=True)
    got_t = getattr(T.activations, name)(tt, dim)
    (gt,) = torch.autograd.grad((got_t * torch.tensor(ct)).sum(), tt)
    got_j, gj = jax.value_and_grad(lambda v: (getattr(J.activations, name)(v, dim) * ct).sum())(jnp.asarray(x))
    got_j = getattr(J.activations, name)(jnp.asarray(x), dim)
    for a, b in ((got_t.detach().numpy(), want.detach().numpy()), (np.asarray(got_j), want.detach().numpy()),
                 (gt.numpy(), gw.numpy()), (np.asarray(gj), gw.numpy())):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_dim_rules_are_torchs(name):
    """dim None: torch's implicit choice (0 for 0-, 1- and 3-D input, else 1) and its warning; an
    axis out of range: torch's IndexError and message; dtype= casts the input first."""
    rng = np.random.default_rng(8)
    for shape in ((4,), (2, 3), (2, 3, 4), (2, 3, 4, 5)):
        x = rng.standard_normal(shape)
        with pytest.warns(UserWarning, match=f"Implicit dimension choice for {name} has been deprecated"):
            want = getattr(F, name)(torch.tensor(x)).numpy()
        for got in (lambda: getattr(T.activations, name)(torch.tensor(x)).numpy(),
                    lambda: np.asarray(getattr(J.activations, name)(jnp.asarray(x)))):
            with pytest.warns(UserWarning, match=f"Implicit dimension choice for {name} has been deprecated"):
                np.testing.assert_allclose(got(), want, rtol=1e-12)
    for shape, dim in (((), 1), ((), -2), ((2, 3), 2), ((2, 3), -3)):
        with pytest.raises(IndexError) as lib:
            getattr(F, name)(torch.zeros(shape), dim)
        for fn in (lambda: getattr(T.activations, name)(torch.zeros(shape), dim),
                   lambda: getattr(J.activations, name)(jnp.zeros(shape), dim)):
            with pytest.raises(IndexError) as ours:
                fn()
            assert str(ours.value) == str(lib.value)
    for L, arr in ((J, jnp.asarray), (T, torch.as_tensor)):
        with pytest.raises(TypeError, match="dim must be an int"):
            getattr(L.activations, name)(arr(np.zeros(3)), 0.0)
    want = getattr(F, name)(torch.arange(3), 0, dtype=torch.float64).numpy()
    np.testing.assert_allclose(getattr(T.activations, name)(torch.arange(3), 0, dtype=torch.float64).numpy(), want)
    np.testing.assert_allclose(np.asarray(getattr(J.activations, name)(jnp.arange(3), 0, dtype=jnp.float64)), want)
    for L, arr, dt in ((J, jnp.asarray, jnp.int64), (T, torch.as_tensor, torch.int64)):
        with pytest.raises(DtypeError, match="input dtype int64 is not supported"):
            getattr(L.activations, name)(arr(np.zeros(3)), 0, dtype=dt)


# ---------------------------------------------------------------- BatchNorm2d
BN_OPTIONS = [dict(momentum=m, affine=a, track_running_stats=t)
              for m in (0.1, 0.5, None) for a in (True, False) for t in (True, False)]
# training (True) or eval (False) per batch, and the batch's N (0: no elements)
BN_SCHEDULE = [(True, 3), (True, 0), (True, 2), (False, 2), (False, 0), (True, 4), (False, 3)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("options", BN_OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_batchnorm_options_match_torch(options, dtype):
    """momentum (incl. None: the cumulative average), affine and track_running_stats, over a schedule
    of training and eval batches with empty ones among them: outputs, input and parameter gradients,
    running statistics and the batch count equal nn.BatchNorm2d's (an empty training batch leaves the
    statistics and is still counted, as torch 2.13 does)."""
    from flax import nnx
    tdt = getattr(torch, dtype)
    lib = torch.nn.BatchNorm2d(3, **options, dtype=tdt)
    tw = T.normalization.BatchNorm2d(3, **options, dtype=tdt)
    jx = J.normalization.BatchNorm2d(3, **options, dtype=dtype)
    rng = np.random.default_rng(9)
    if options["affine"]:
        w, b = rng.uniform(0.5, 1.5, 3).astype(dtype), rng.standard_normal(3).astype(dtype)
        for m in (lib, tw):
            m.weight.data, m.bias.data = torch.tensor(w), torch.tensor(b)
        jx.scale[...], jx.bias[...] = jnp.asarray(w), jnp.asarray(b)
    tol = lookup(dtype, "cpu")
    for k, (training, n) in enumerate(BN_SCHEDULE):
        x = (rng.standard_normal((n, 3, 2, 3)) * 2 + 1).astype(dtype)
        ct = rng.standard_normal(x.shape).astype(dtype)
        got = {}
        for name, m in (("library", lib), ("torch", tw)):
            m.train(training)
            xt = torch.tensor(x, requires_grad=True)
            y = m(xt)
            params = [p for p in (m.weight, m.bias) if p is not None]
            g = torch.autograd.grad((y * torch.tensor(ct)).sum(), [xt, *params], allow_unused=True)
            got[name] = [y.detach().numpy(), *[np.zeros(3, dtype) if v is None else v.numpy() for v in g]]
            if m.running_mean is not None:
                got[name] += [m.running_mean.numpy().copy(), m.running_var.numpy().copy(),
                              np.asarray(m.num_batches_tracked.item())]
        jx.train() if training else jx.eval()

        def forward(m, v):  # nnx's transform: the running statistics' update lands in jx
            out = m(jnp.transpose(v, (0, 2, 3, 1)))
            return (jnp.transpose(out, (0, 3, 1, 2)) * ct).sum(), out
        (_, y), (gp, gx) = nnx.value_and_grad(forward, argnums=(0, 1), has_aux=True)(jx, jnp.asarray(x))
        gp = nnx.to_pure_dict(gp)
        got["jax"] = [np.asarray(y).transpose(0, 3, 1, 2), np.asarray(gx)] + \
            [np.asarray(gp[k2]) for k2 in ("scale", "bias") if k2 in gp]
        if jx.mean is not None:
            got["jax"] += [np.asarray(jx.mean[...]), np.asarray(jx.var[...]),
                           np.asarray(int(jx.num_batches_tracked[...]))]
        for name in ("torch", "jax"):
            assert len(got[name]) == len(got["library"]), name
            for i, (a, b) in enumerate(zip(got[name], got["library"])):
                assert a.shape == b.shape, (name, k, i, a.shape, b.shape)
                np.testing.assert_allclose(a, b, rtol=tol.rtol, atol=tol.atol,
                                           err_msg=f"{name}, batch {k} (training={training}, N={n}), item {i}")
    assert (jx.mean is None) == (tw.running_mean is None) == (not options["track_running_stats"])


@pytest.mark.parametrize("fw", ["jax", "torch"])
def test_batchnorm_one_value_per_channel_raises_where_torch_does(fw):
    """Training with N·H·W = 1 raises, and so does eval without running statistics (torch's
    F.batch_norm normalises with batch statistics there); N·H·W = 0 does not."""
    def make(**kw):
        return J.normalization.BatchNorm2d(2, **kw) if fw == "jax" else T.normalization.BatchNorm2d(2, **kw)

    def x(n):
        return jnp.zeros((n, 1, 1, 2), jnp.float32) if fw == "jax" else torch.zeros(n, 2, 1, 1)
    for kw, training in (({}, True), ({"track_running_stats": False}, False)):
        m = make(**kw)
        m.train() if training else m.eval()
        with pytest.raises(ValueError, match="expected more than 1 value per channel when training"):
            m(x(1))
        assert tuple(m(x(0)).shape) == ((0, 1, 1, 2) if fw == "jax" else (0, 2, 1, 1))
    with pytest.raises(ValueError, match=r"momentum must be in \[0, 1\]"):
        make(momentum=1.5)


def test_a_reduction_passed_by_position_is_refused_alike():
    """torch's third positional argument is weight: cross_entropy(x, y, 'mean') is refused in both
    twins with the same message (torch's library raises its own TypeError)."""
    kind, msg = _both(lambda L: (lambda x, y: L.losses.cross_entropy(x, y, "mean")), X, Y)
    assert kind is TypeError and "the third positional argument is weight" in msg
    with pytest.raises(TypeError):
        F.cross_entropy(torch.tensor(X), torch.tensor(Y), "mean")
