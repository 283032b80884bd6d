"""Traps 3–14, 18 and 29 of docs/traps.md: each test shows the default mismatch, then the fix.

Inputs and weights are drawn once in NumPy (docs/traps.md, trap 16/17); torch runs NCHW, Flax NHWC, and results
are compared in NCHW. Tolerances come from parity.tolerances.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from flax import nnx

import jax_impl as J
import torch_impl as T
from parity import convert
from parity.tolerances import lookup

TOL = lookup("float32", "cpu")


def _randn(*shape):
    """Standard normal float32 data seeded by its shape, so each test's data is fixed on its own."""
    return np.random.default_rng(shape).standard_normal(shape).astype(np.float32)


def close(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and np.allclose(a, b, rtol=TOL.rtol, atol=TOL.atol)


def tnp(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy()


def on_nchw(f, x):
    """Apply a Flax (NHWC) function to an NCHW NumPy array; NCHW NumPy back."""
    return np.asarray(convert.nhwc_to_nchw(f(jnp.asarray(convert.nchw_to_nhwc(x)))))


def twin_conv(*args, **kw):
    return J.conv.Conv2d(*args, **kw, rngs=nnx.Rngs(0)), T.conv.Conv2d(*args, **kw)


def load_conv(jax_conv, torch_conv):
    nnx.update(jax_conv, convert.conv_torch_to_flax({k: tnp(v) for k, v in torch_conv.state_dict().items()}))


# ---------------------------------------------------------------- docs/traps.md, trap 3: conv layouts
def test_trap03_conv_weight_layout_oihw_vs_hwio():
    jc, tc = twin_conv(3, 4, 3)
    x = _randn(2, 3, 6, 6)
    want = tnp(tc(torch.from_numpy(x)))
    w = tnp(tc.weight)
    nnx.update(jc, {"kernel": w.reshape(3, 3, 3, 4), "bias": tnp(tc.bias)})  # a reshape is not a transpose
    assert not close(on_nchw(jc, x), want)
    load_conv(jc, tc)  # OIHW → HWIO is transpose(2, 3, 1, 0)
    assert close(on_nchw(jc, x), want)
    with pytest.raises(ValueError, match="in_channels=3"):  # NCHW activations fed as they are
        jc(jnp.asarray(x))


# ---------------------------------------------------------------- docs/traps.md, trap 4: flatten order
def test_trap04_flatten_then_linear_needs_permuted_rows():
    c, h, w = 3, 4, 5
    x = _randn(2, c, h, w)
    lin = T.layers.Linear(c * h * w, 6)
    want = tnp(lin(T.layers.Flatten()(torch.from_numpy(x))))
    sd = {k: tnp(v) for k, v in lin.state_dict().items()}
    jl = J.layers.Linear(c * h * w, 6, rngs=nnx.Rngs(0))
    flat = J.layers.Flatten()(jnp.asarray(convert.nchw_to_nhwc(x)))  # (H, W, C) order
    nnx.update(jl, convert.linear_torch_to_flax(sd))  # the plain Linear conversion
    assert not close(jl(flat), want)
    nnx.update(jl, convert.flatten_linear_torch_to_flax(sd, (c, h, w)))  # rows permuted to (H, W, C)
    assert close(jl(flat), want)


# ---------------------------------------------------------------- docs/traps.md, trap 5: conv padding default
def test_trap05_flax_conv_pads_same_by_default_torch_pads_zero():
    x = _randn(1, 2, 7, 7)
    tc = torch.nn.Conv2d(2, 3, 3)
    want = tnp(tc(torch.from_numpy(x)))
    fc = nnx.Conv(2, 3, (3, 3), rngs=nnx.Rngs(0))
    assert fc.padding == "SAME"
    load_conv(fc, tc)
    assert on_nchw(fc, x).shape == (1, 3, 7, 7) != want.shape == (1, 3, 5, 5)
    fc = nnx.Conv(2, 3, (3, 3), padding=((0, 0), (0, 0)), rngs=nnx.Rngs(0))  # explicit pairs
    load_conv(fc, tc)
    assert close(on_nchw(fc, x), want)
    jc, _ = twin_conv(2, 3, 3)  # the twin's default is torch's
    load_conv(jc, tc)
    assert close(on_nchw(jc, x), want)


# ---------------------------------------------------------------- docs/traps.md, trap 6: 'same'
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")  # torch's note (once)
def test_trap06_same_with_even_kernel_pads_the_odd_pixel_right():
    x = _randn(1, 2, 6, 7)
    jc, tc = twin_conv(2, 3, 4, padding="same", bias=False)
    want = tnp(tc(torch.from_numpy(x)))
    # total padding 3 per axis: torch puts 1 before and 2 after; the mirror image is a look-alike
    right = tnp(F.conv2d(F.pad(torch.from_numpy(x), (1, 2, 1, 2)), tc.weight))
    left = tnp(F.conv2d(F.pad(torch.from_numpy(x), (2, 1, 2, 1)), tc.weight))
    assert close(right, want) and not close(left, want)
    load_conv(jc, tc)
    assert close(on_nchw(jc, x), want)
    # Flax's own 'SAME' at stride 1 also puts the odd pixel after (XLA: low = total // 2), so here
    # the frameworks agree; they part at stride > 1 (the next test)
    fc = nnx.Conv(2, 3, (4, 4), padding="SAME", use_bias=False, dtype=jnp.float32, param_dtype=jnp.float32,
                  rngs=nnx.Rngs(0))
    fc.kernel[...] = jnp.asarray(convert.conv_torch_to_flax({"weight": tnp(tc.weight)})["kernel"])
    flax_same = on_nchw(fc, x)
    assert flax_same.shape == want.shape and close(flax_same, want)


def test_trap06_same_with_stride_2_torch_rejects_flax_accepts():
    with pytest.raises(ValueError, match="strided"):
        torch.nn.Conv2d(2, 3, 3, stride=2, padding="same")
    fc = nnx.Conv(2, 3, (3, 3), strides=2, padding="SAME", rngs=nnx.Rngs(0))
    assert fc(jnp.zeros((1, 7, 7, 2), jnp.float32)).shape == (1, 4, 4, 3)  # Flax's ceil(7/2)
    for make in (J.conv.Conv2d, T.conv.Conv2d):  # the twins follow torch
        kw = {"rngs": nnx.Rngs(0)} if make is J.conv.Conv2d else {}
        with pytest.raises(ValueError, match="padding='same' needs stride=1"):
            make(2, 3, 3, stride=2, padding="same", **kw)


# ---------------------------------------------------------------- docs/traps.md, traps 7–10: pooling
def test_trap07_flax_pool_stride_defaults_to_1_torch_to_kernel():
    x = _randn(1, 2, 6, 6)
    want = tnp(torch.nn.MaxPool2d(2)(torch.from_numpy(x)))
    assert on_nchw(lambda t: nnx.max_pool(t, (2, 2)), x).shape == (1, 2, 5, 5) != want.shape
    assert close(on_nchw(lambda t: nnx.max_pool(t, (2, 2), strides=(2, 2)), x), want)
    assert close(on_nchw(J.pooling.MaxPool2d(2), x), want)


def test_trap08_ceil_mode_and_the_last_window_rule():
    x = np.array([[1, 2, 1, 0], [2, 0, 1, 3], [0, 5, 4, 2], [4, 1, 2, 5]], np.float32)[None, None]
    want = tnp(torch.nn.MaxPool2d(3, ceil_mode=True)(torch.from_numpy(x)))  # the seed: [[5,3],[4,5]]
    assert on_nchw(lambda t: nnx.max_pool(t, (3, 3), (3, 3)), x).shape == (1, 1, 1, 1)  # no ceil_mode
    assert close(on_nchw(J.pooling.MaxPool2d(3, ceil_mode=True), x), want)
    # ceil((4 + 2 − 2)/3) + 1 = 3 windows, but the third would start in the right padding: torch keeps 2
    x = _randn(1, 1, 4, 4)
    want = tnp(torch.nn.MaxPool2d(2, stride=3, padding=1, ceil_mode=True)(torch.from_numpy(x)))
    assert want.shape == (1, 1, 2, 2)
    assert close(on_nchw(J.pooling.MaxPool2d(2, stride=3, padding=1, ceil_mode=True), x), want)


def test_trap09_max_pool_pads_with_minus_infinity():
    x = -np.abs(_randn(1, 2, 5, 5)) - 1  # all negative: a zero pad would win every border window
    want = tnp(torch.nn.MaxPool2d(3, stride=1, padding=1)(torch.from_numpy(x)))
    zero_padded = on_nchw(lambda t: nnx.max_pool(jnp.pad(t, ((0, 0), (1, 1), (1, 1), (0, 0))), (3, 3)), x)
    assert not close(zero_padded, want) and (zero_padded == 0).any()
    assert close(on_nchw(lambda t: nnx.max_pool(t, (3, 3), padding=((1, 1), (1, 1))), x), want)
    assert close(on_nchw(J.pooling.MaxPool2d(3, stride=1, padding=1), x), want)


def test_trap10_count_include_pad_set_explicitly_in_both():
    x = _randn(1, 2, 5, 5)
    torch_excl = tnp(torch.nn.AvgPool2d(3, 1, 1, count_include_pad=False)(torch.from_numpy(x)))
    flax_default = on_nchw(lambda t: nnx.avg_pool(t, (3, 3), (1, 1), ((1, 1), (1, 1))), x)
    assert not close(flax_default, torch_excl)  # Flax's default counts the padding
    flax_excl = on_nchw(lambda t: nnx.avg_pool(t, (3, 3), (1, 1), ((1, 1), (1, 1)), count_include_pad=False), x)
    assert close(flax_excl, torch_excl)
    for cip in (True, False):
        want = tnp(torch.nn.AvgPool2d(3, 1, 1, count_include_pad=cip)(torch.from_numpy(x)))
        assert close(on_nchw(J.pooling.AvgPool2d(3, 1, 1, count_include_pad=cip), x), want)


# ---------------------------------------------------------------- docs/traps.md, traps 11–14: normalisation
def _bn_step(x, **flax_kw):
    """One training step of torch's BatchNorm2d and of nnx.BatchNorm: torch's and Flax's running stats."""
    tb = torch.nn.BatchNorm2d(x.shape[1])
    tb(torch.from_numpy(x))
    fb = nnx.BatchNorm(x.shape[1], rngs=nnx.Rngs(0), **flax_kw)
    fb(jnp.asarray(convert.nchw_to_nhwc(x)))
    return (tnp(tb.running_mean), tnp(tb.running_var)), (np.asarray(fb.mean[...]), np.asarray(fb.var[...]))


def _twin_bn_step(x):
    jb = J.normalization.BatchNorm2d(x.shape[1])
    jb(jnp.asarray(convert.nchw_to_nhwc(x)))
    return np.asarray(jb.mean[...]), np.asarray(jb.var[...])


def test_trap11_momentum_is_the_weight_of_the_new_batch_in_torch():
    x = _randn(4, 3, 3, 3) + 2
    (t_mean, _), (f_mean, _) = _bn_step(x, use_fast_variance=False)  # both defaults: 0.1 and 0.99
    assert not close(f_mean, t_mean)
    (t_mean, _), (f_mean, _) = _bn_step(x, momentum=0.1, use_fast_variance=False)  # torch's number
    assert not close(f_mean, t_mean)
    (t_mean, _), (f_mean, _) = _bn_step(x, momentum=0.9, use_fast_variance=False)  # 1 − torch's
    assert close(f_mean, t_mean)
    assert close(_twin_bn_step(x)[0], t_mean)  # the twin takes torch's 0.1 and converts


def test_trap12_running_variance_is_unbiased_in_torch():
    x = _randn(2, 3, 2, 2)
    n = 2 * 2 * 2
    (_, t_var), (_, f_var) = _bn_step(x, momentum=0.9, use_fast_variance=False)
    assert not close(f_var, t_var)
    batch_var = (f_var - 0.9) / 0.1  # Flax's stored (biased) batch variance, recovered
    assert close(0.9 + 0.1 * batch_var * n / (n - 1), t_var)  # Bessel's correction n/(n − 1)
    assert close(_twin_bn_step(x)[1], t_var)


def test_trap13_flax_fast_variance_loses_digits_at_large_mean():
    # float32 at mean 30: E[x²] − E[x]² loses digits (measured: 4.5e-4 from torch, 35× the
    # tolerance); two passes stay within it (3.8e-6, 0.34×). At means ≳ 100 even two passes can
    # differ from torch by more than float32's tolerance (each sums the mean in its own order).
    x = _randn(8, 2, 4, 4) + 30
    want = tnp(torch.nn.BatchNorm2d(2)(torch.from_numpy(x)))
    fast = nnx.BatchNorm(2, momentum=0.9, rngs=nnx.Rngs(0))
    assert fast.use_fast_variance
    assert not close(on_nchw(fast, x), want)
    two_pass = nnx.BatchNorm(2, momentum=0.9, use_fast_variance=False, rngs=nnx.Rngs(0))
    assert close(on_nchw(two_pass, x), want)
    assert close(on_nchw(J.normalization.BatchNorm2d(2), x), want)


def test_trap14_norm_eps_defaults():
    assert torch.nn.BatchNorm2d(3).eps == nnx.BatchNorm(3, rngs=nnx.Rngs(0)).epsilon  # both 1e-5
    assert J.normalization.BatchNorm2d(3).eps == T.normalization.BatchNorm2d(3).eps == torch.nn.BatchNorm2d(3).eps
    x = _randn(4, 8) * 3e-3  # variance ~1e-5, comparable to eps: 1e-5 vs 1e-6 rescales y by ~1.4x
    want = tnp(torch.nn.LayerNorm(8)(torch.from_numpy(x)))
    assert not close(nnx.LayerNorm(8, rngs=nnx.Rngs(0))(jnp.asarray(x)), want)
    assert close(nnx.LayerNorm(8, epsilon=1e-5, rngs=nnx.Rngs(0))(jnp.asarray(x)), want)


# ---------------------------------------------------------------- docs/traps.md, trap 18: dropout masks
def test_trap18_dropout_masks_differ_until_one_mask_is_injected():
    x = _randn(8, 16)
    torch.manual_seed(0)
    t_layer, j_layer = T.layers.Dropout(0.5), J.layers.Dropout(0.5, rngs=nnx.Rngs(0))
    assert not np.array_equal(tnp(t_layer(torch.from_numpy(x))) != 0, np.asarray(j_layer(jnp.asarray(x))) != 0)
    mask = np.random.default_rng(0).random(x.shape) >= 0.5  # one mask, drawn in NumPy, for both
    want = tnp(t_layer(torch.from_numpy(x), torch.from_numpy(mask)))
    assert close(j_layer(jnp.asarray(x), jnp.asarray(mask)), want)
    j_layer.eval()
    t_layer.eval()
    assert close(j_layer(jnp.asarray(x)), x) and close(tnp(t_layer(torch.from_numpy(x))), x)


# ---------------------------------------------------------------- docs/traps.md, trap 29: recompilation
def test_trap29_a_short_last_batch_recompiles_unless_padded():
    layer = J.conv.Conv2d(2, 3, 3, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(layer)
    step = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))
    full, short = jnp.asarray(_randn(8, 5, 5, 2)), jnp.asarray(_randn(5, 5, 5, 2))
    step(state, full)
    step(state, full)
    assert step._cache_size() == 1
    padded = jnp.concatenate([short, jnp.zeros((3, 5, 5, 2), short.dtype)])  # pad to the full batch
    y_padded = step(state, padded)[:5]
    assert step._cache_size() == 1  # same shapes: no new compilation
    y_short = step(state, short)
    assert step._cache_size() == 2  # a new batch size: traced and compiled again
    assert close(y_padded, y_short)
