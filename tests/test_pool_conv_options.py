"""Every option torch's Conv2d and pooling layers take, checked against torch itself (not its twin).

Hypothesis draws option combinations (int, pair or one-element-tuple sizes, ceil_mode, dilation,
return_indices, divisor_override, count_include_pad, output_size; batched, unbatched and empty
batches; ties, NaN and −inf): either torch's twin refuses the configuration, and then the JAX twin
refuses it with the same message, or plain torch, torch's twin and the JAX twin agree. Max pooling,
its indices and max unpooling are compared bit for bit (values, NaN payloads and signed zeros
included) with their input gradients; average pooling and convolution within parity.tolerances.
Then bad values: both twins raise the same error, where torch raises too. The example count comes
from the hypothesis profile in conftest.py.
"""
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import jax_impl as J
import torch_impl as T
from parity import convert, registry, runner
from parity.tolerances import lookup

SETTINGS = settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
UINT = {2: np.uint16, 4: np.uint32, 8: np.uint64}


def to_jax(a):
    """NCHW → NHWC, unbatched CHW → HWC (NumPy)."""
    return a.transpose(1, 2, 0) if a.ndim == 3 else convert.nchw_to_nhwc(a)


def from_jax(a):
    a = np.asarray(a)
    return a.transpose(2, 0, 1) if a.ndim == 3 else convert.nhwc_to_nchw(a)


def tnp(t):
    return t.detach().numpy()


def same_bits(a, b) -> bool:
    """Equal shape, dtype and bits (NaN payloads and the sign of zero included)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.kind != "f":
        return np.array_equal(a, b)
    return np.array_equal(np.ascontiguousarray(a).view(UINT[a.itemsize]), np.ascontiguousarray(b).view(UINT[b.itemsize]))


def close(a, b, dtype) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype.kind != "f":
        return a.shape == b.shape and np.array_equal(a, b)
    tol = lookup(dtype, "cpu")
    return a.shape == b.shape and np.allclose(a, b, rtol=tol.rtol, atol=tol.atol, equal_nan=True)


def size_arg(draw, lo, hi):
    """An int, a one-element tuple or a pair, as torch's layers take them."""
    kind = draw(st.sampled_from(["int", "one", "pair"]))
    a = draw(st.integers(lo, hi))
    return a if kind == "int" else (a,) if kind == "one" else (a, draw(st.integers(lo, hi)))


def as_pair(v):
    return (v, v) if isinstance(v, int) else v * 2 if len(v) == 1 else v


def draw_input(draw, c, dtype, values):
    """NCHW input: batch 0, 1, 2 or unbatched (C, H, W); normal, tied, or NaN/−inf/−0 values."""
    batch = draw(st.sampled_from([0, 1, 2, "unbatched"]))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    shape = (c, h, w) if batch == "unbatched" else (batch, c, h, w)
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    if values == "normal":
        x = rng.standard_normal(shape)
    else:
        x = rng.integers(-1, 2, shape).astype(np.float64)
        if values == "special":
            for v, p in ((np.nan, 0.2), (-np.inf, 0.2), (-0.0, 0.2), (np.inf, 0.05)):
                x[rng.random(shape) < p] = v
    event(f"batch {batch}")
    return x.astype(dtype), rng


def refused_alike(build_and_call):
    """Run `build_and_call(fw)` in both twins: (torch result, jax result), or None after checking
    that both refuse with the same exception type and message."""
    out, errors = {}, {}
    for fw in ("torch", "jax"):
        try:
            out[fw] = build_and_call(fw)
        except (ValueError, TypeError) as e:
            errors[fw] = (type(e).__name__, str(e))
    if errors:
        assert set(errors) == {"torch", "jax"} and errors["torch"] == errors["jax"], errors
        event("refused by both")
        return None
    event("accepted by both")
    return out


# ---------------------------------------------------------------- MaxPool2d and its indices, bit for bit
@st.composite
def max_pool_cases(draw):
    kernel = size_arg(draw, 1, 4)
    kh, kw = as_pair(kernel)
    padding = draw(st.sampled_from([0, (min(kh, kw) // 2,), (kh // 2, kw // 2), (0, kw // 2)]))
    kwargs = dict(kernel_size=kernel, stride=size_arg(draw, 1, 3) if draw(st.booleans()) else None,
                  padding=padding, dilation=size_arg(draw, 1, 2), ceil_mode=draw(st.booleans()),
                  return_indices=draw(st.booleans()))
    dtype = draw(st.sampled_from(["float32", "float64", "float16", "int32"]))
    values = "ties" if dtype == "int32" else draw(st.sampled_from(["normal", "ties", "special"]))
    x, rng = draw_input(draw, draw(st.integers(1, 3)), dtype, values)
    return kwargs, x, rng


@SETTINGS
@given(max_pool_cases())
def test_max_pool2d_options_bit_for_bit_against_torch(case):
    kwargs, x, rng = case
    floating = x.dtype.kind == "f"

    def run(fw):
        if fw == "torch":
            m = T.pooling.MaxPool2d(**kwargs)
            return m(torch.tensor(x))
        return J.pooling.MaxPool2d(**kwargs)(jnp.asarray(to_jax(x)))

    if refused_alike(run) is None:  # torch itself is not run there: some of those configurations
        return                     # corrupt its heap (a dilated window over padding only)
    tx = torch.tensor(x, requires_grad=floating)
    ref = torch.nn.MaxPool2d(**kwargs)(tx)  # torch's own layer, one-element tuples as given
    ref_y, ref_i = ref if kwargs["return_indices"] else (ref, None)
    f = J.pooling.MaxPool2d(**kwargs)
    jx = jnp.asarray(to_jax(x))
    if floating:
        ct = rng.standard_normal(ref_y.shape).astype(x.dtype)
        ref_y.backward(torch.tensor(ct))
        (jy, *ji), vjp = jax.vjp(lambda v: (lambda o: o if isinstance(o, tuple) else (o,))(f(v)), jx)
        (jg,) = vjp((jnp.asarray(to_jax(ct)), *[np.zeros(i.shape, jax.dtypes.float0) for i in ji]))
        assert same_bits(from_jax(jg), tnp(tx.grad)), "input gradients differ"
    else:
        out = f(jx)
        jy, *ji = out if isinstance(out, tuple) else (out,)
    assert same_bits(from_jax(jy), tnp(ref_y)), "outputs differ"
    if kwargs["return_indices"]:
        assert same_bits(from_jax(ji[0]), tnp(ref_i)), "indices differ"


def test_max_pool2d_nan_ties_and_signed_zero_follow_torchs_loop():
    """torch keeps the first maximum of a tie, the LAST NaN of a window, a −inf window's first tap
    inside the input, and −0 when −0 comes first (XLA's max would return +0)."""
    x = np.array([[1, np.nan, 3, np.nan], [2, 5, np.nan, 0], [-0.0, 0, 4, 4], [0, -0.0, 4, 4]], np.float32)
    x = np.stack([x, np.full((4, 4), -np.inf, np.float32)])[None]  # channel 1: −inf only
    kw = dict(kernel_size=2, padding=1, return_indices=True)
    ty, ti = torch.nn.functional.max_pool2d(torch.tensor(x), **kw)
    jy, ji = J.pooling.MaxPool2d(**kw)(jnp.asarray(to_jax(x)))
    assert same_bits(from_jax(jy), tnp(ty)) and same_bits(from_jax(ji), tnp(ti))
    assert tnp(ti)[0, 1, 0, 0] == 0  # a −inf window (tap 0 in the padding): its first tap in the input
    y, i = F_max_pool(np.array([[[[np.nan, np.nan], [np.nan, 0.0]]]], np.float32))
    assert i == 2  # three NaNs: the last one
    y, i = F_max_pool(np.array([[[[-0.0, 0.0], [0.0, -0.0]]]], np.float32))
    assert i == 0 and np.signbit(y)


def F_max_pool(x):
    """The JAX twin's value and index on one 2×2 window, checked against torch's."""
    ty, ti = torch.nn.functional.max_pool2d(torch.tensor(x), 2, return_indices=True)
    jy, ji = J.pooling.MaxPool2d(2, return_indices=True)(jnp.asarray(to_jax(x)))
    assert same_bits(from_jax(jy), tnp(ty)) and same_bits(from_jax(ji), tnp(ti))
    return float(tnp(ty).ravel()[0]), int(tnp(ti).ravel()[0])


# ---------------------------------------------------------------- MaxUnpool2d
@st.composite
def unpool_cases(draw):
    kernel = size_arg(draw, 1, 3)
    kh, kw = as_pair(kernel)
    stride = size_arg(draw, 1, 3) if draw(st.booleans()) else None
    padding = draw(st.sampled_from([0, (min(kh, kw) // 2,), (kh // 2, kw // 2)]))
    dtype = draw(st.sampled_from(["float32", "float64"]))
    x, rng = draw_input(draw, draw(st.integers(1, 3)), dtype, "normal")
    size = draw(st.sampled_from([None, "hw", "shape"]))
    return dict(kernel_size=kernel, stride=stride, padding=padding), x, rng, size


@SETTINGS
@given(unpool_cases())
def test_max_unpool2d_options_against_torch(case):
    kw, x, rng, size = case
    try:  # the pooling that makes the indices: torch's own (its twin refuses what it refuses)
        T.pooling.MaxPool2d(**kw)(torch.tensor(x))
    except ValueError:
        event("pooling refused")
        return
    y, idx = torch.nn.functional.max_pool2d(torch.tensor(x), return_indices=True, **kw)
    out_size = {None: None, "hw": tuple(x.shape[-2:]), "shape": tuple(x.shape)}[size]
    ct_shape = None

    def run(fw):
        if fw == "torch":
            return T.pooling.MaxUnpool2d(**kw)(y, idx, out_size)
        jsize = out_size if size != "shape" or x.ndim == 3 else tuple(x.shape[i] for i in (0, 2, 3, 1))
        return J.pooling.MaxUnpool2d(**kw)(jnp.asarray(to_jax(tnp(y))), jnp.asarray(to_jax(tnp(idx))), jsize)

    # torch's own MaxUnpool2d fails on one-element tuples (its MaxPool2d broadcasts them); both twins
    # broadcast them for MaxUnpool2d too, so torch's runs on the pairs
    own = {k: v if v is None else as_pair(v) for k, v in kw.items()}
    if refused_alike(run) is None:  # an index beyond the default size, or a 3-entry shape
        try:
            empty = torch.nn.MaxUnpool2d(**own)(y, idx, out_size).shape[-2:].numel() == 0
        except (RuntimeError, ValueError):
            return
        # torch unpools into a 0×0 plane without checking its indices, and its backward then fails
        # ("index 0 is out of bounds"); both twins refuse the index up front
        assert empty and idx.numel(), "torch accepts what both twins refuse"
        event("0×0 output: torch's forward skips the index check")
        return
    ty = y.clone().requires_grad_(True)
    ref = torch.nn.MaxUnpool2d(**own)(ty, idx, out_size)
    ct_shape = ref.shape
    ct = rng.standard_normal(ct_shape).astype(x.dtype)
    ref.backward(torch.tensor(ct))
    jsize = out_size if size != "shape" or x.ndim == 3 else tuple(x.shape[i] for i in (0, 2, 3, 1))
    ji = jnp.asarray(to_jax(tnp(idx)))
    ju, vjp = jax.vjp(lambda v: J.pooling.MaxUnpool2d(**kw)(v, ji, jsize), jnp.asarray(to_jax(tnp(y))))
    (jg,) = vjp(jnp.asarray(to_jax(ct)))
    assert same_bits(from_jax(ju), tnp(ref)), "outputs differ"
    assert same_bits(from_jax(jg), tnp(ty.grad)), "input gradients differ"
    assert same_bits(tnp(T.pooling.MaxUnpool2d(**kw)(y, idx, out_size)), tnp(ref))


# ---------------------------------------------------------------- AvgPool2d
@st.composite
def avg_pool_cases(draw):
    kernel = size_arg(draw, 1, 4)
    kh, kw = as_pair(kernel)
    kwargs = dict(kernel_size=kernel, stride=size_arg(draw, 1, 3) if draw(st.booleans()) else None,
                  padding=draw(st.sampled_from([0, (min(kh, kw) // 2,), (kh // 2, kw // 2)])),
                  ceil_mode=draw(st.booleans()), count_include_pad=draw(st.booleans()),
                  divisor_override=draw(st.sampled_from([None, None, 1, 3, -2])))
    dtype = draw(st.sampled_from(["float32", "float64", "int64"]))
    x, rng = draw_input(draw, draw(st.integers(1, 3)), dtype, "normal" if dtype != "int64" else "ties")
    if dtype == "int64":
        x = (x * 7).astype(np.int64)
    return kwargs, x, rng


@SETTINGS
@given(avg_pool_cases())
def test_avg_pool2d_options_against_torch(case):
    kwargs, x, rng = case
    floating = x.dtype.kind == "f"

    def run(fw):
        if fw == "torch":
            return T.pooling.AvgPool2d(**kwargs)(torch.tensor(x))
        return J.pooling.AvgPool2d(**kwargs)(jnp.asarray(to_jax(x)))

    if refused_alike(run) is None:
        return
    tx = torch.tensor(x, requires_grad=floating)
    ref = torch.nn.AvgPool2d(**kwargs)(tx)
    f = J.pooling.AvgPool2d(**kwargs)
    jx = jnp.asarray(to_jax(x))
    if floating:
        ct = rng.standard_normal(ref.shape).astype(x.dtype)
        ref.backward(torch.tensor(ct))
        jy, vjp = jax.vjp(f, jx)
        assert close(from_jax(vjp(jnp.asarray(to_jax(ct)))[0]), tnp(tx.grad), x.dtype.name), "input gradients differ"
    else:
        jy = f(jx)
    assert from_jax(jy).dtype == tnp(ref).dtype and close(from_jax(jy), tnp(ref), x.dtype.name), "outputs differ"


# ---------------------------------------------------------------- Conv2d
@st.composite
def conv_cases(draw):
    cin = draw(st.sampled_from([1, 3, 8]))  # shallow (im2col in the JAX twin) and deep kernels
    kernel = draw(st.one_of(st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    stride = size_arg(draw, 1, 2)
    padding = draw(st.one_of(st.just("same"), st.just("valid"), st.just(0), st.just((1,)), st.just((1, 2))))
    if padding == "same":
        stride = 1
    kwargs = dict(in_channels=cin, out_channels=draw(st.sampled_from([2, 4])), kernel_size=kernel, stride=stride,
                  padding=padding, dilation=size_arg(draw, 1, 2), bias=draw(st.booleans()),
                  padding_mode=draw(st.sampled_from(["zeros", "zeros", "reflect", "replicate", "circular"])))
    dtype = draw(st.sampled_from(["float32", "float64"]))
    x, rng = draw_input(draw, cin, dtype, "normal")
    return kwargs, x, rng


@SETTINGS
@given(conv_cases())
def test_conv2d_options_against_torch(case):
    kwargs, x, rng = case
    dtype = x.dtype.name
    own = dict(kwargs)
    if kwargs["padding_mode"] != "zeros":
        # torch's own Conv2d mishandles one-element tuples with a non-zero padding_mode: padding=(1,)
        # fails in F.pad (NotImplementedError), and 'same' with dilation=(1,) pads the height only
        # (a wrong output shape); both twins broadcast them first, so torch's runs on the pairs
        own.update({k: as_pair(kwargs[k]) for k in ("stride", "dilation", "padding") if isinstance(kwargs[k], tuple)})
    ref_m = torch.nn.Conv2d(**own, dtype=getattr(torch, dtype))
    sd = {k: v.detach().numpy() for k, v in ref_m.state_dict().items()}

    def run(fw):
        if fw == "torch":
            m = T.conv.Conv2d(**kwargs, dtype=getattr(torch, dtype))
            m.load_state_dict(ref_m.state_dict())
            return m(torch.tensor(x))
        m = J.conv.Conv2d(**kwargs, dtype=dtype, rngs=nnx.Rngs(0))
        nnx.update(m, convert.conv_torch_to_flax(sd))
        return m(jnp.asarray(to_jax(x)))

    got = refused_alike(run)
    if got is None:
        return
    tx = torch.tensor(x, requires_grad=True)
    ref = ref_m(tx)
    ct = rng.standard_normal(ref.shape).astype(dtype)
    ref.backward(torch.tensor(ct))
    m = J.conv.Conv2d(**kwargs, dtype=dtype, rngs=nnx.Rngs(0))
    nnx.update(m, convert.conv_torch_to_flax(sd))
    graphdef, state = nnx.split(m)
    jy, vjp = jax.vjp(lambda st_, v: nnx.merge(graphdef, st_)(v), state, jnp.asarray(to_jax(x)))
    gstate, gx = vjp(jnp.asarray(to_jax(ct)))
    gw = convert.conv_flax_to_torch(jax.tree.map(np.asarray, nnx.to_pure_dict(gstate)))
    assert close(from_jax(jy), tnp(ref), dtype) and close(tnp(got["torch"]), tnp(ref), dtype), "outputs differ"
    assert close(from_jax(gx), tnp(tx.grad), dtype), "input gradients differ"
    for k, p in ref_m.named_parameters():
        assert close(gw[k], tnp(p.grad), dtype), f"{k} gradients differ"


# ---------------------------------------------------------------- bad values: one error in both twins
def _arr(fw, shape, dtype="float32"):
    """Zeros of an NCHW (or CHW, or other-rank) shape, in the framework's own layout."""
    a = np.zeros(shape, dtype)
    if fw == "torch":
        return torch.tensor(a)
    return jnp.asarray(to_jax(a) if a.ndim in (3, 4) else a)


def _layer(fw, path, *args, **kw):
    module, cls = path.split(".")
    if fw == "jax" and cls == "Conv2d":
        kw["rngs"] = nnx.Rngs(0)
    return getattr(getattr(T if fw == "torch" else J, module), cls)(*args, **kw)


def _unpool(fw, x_shape=(1, 2, 3, 3), idx=None, idx_dtype="int64", x_dtype="float32", output_size=None, **kw):
    idx = np.zeros(x_shape, idx_dtype) if idx is None else idx
    i = torch.tensor(idx) if fw == "torch" else jnp.asarray(to_jax(idx) if idx.ndim in (3, 4) else idx)
    return _layer(fw, "pooling.MaxUnpool2d", kw.pop("kernel_size", 2), **kw)(_arr(fw, x_shape, x_dtype), i, output_size)


def _torch_own(path, *args, **kw):
    return getattr(torch.nn, path.split(".")[1])(*args, **kw)


# id: (twin call (fw), plain torch's call or None where torch accepts it, exception, message pattern)
BAD = {
    "divisor_override 0": (lambda fw: _layer(fw, "pooling.AvgPool2d", 2, divisor_override=0)(_arr(fw, (1, 1, 4, 4))),
                           lambda: torch.nn.AvgPool2d(2, divisor_override=0)(torch.ones(1, 1, 4, 4)),
                           ValueError, r"AvgPool2d: divisor_override must not be 0"),
    "divisor_override float": (lambda fw: _layer(fw, "pooling.AvgPool2d", 2, divisor_override=2.5),
                               lambda: torch.nn.AvgPool2d(2, divisor_override=2.5)(torch.ones(1, 1, 4, 4)),
                               TypeError, r"AvgPool2d: divisor_override must be an int or None, got 2.5"),
    "divisor_override bool": (lambda fw: _layer(fw, "pooling.AvgPool2d", 2, divisor_override=True),
                              lambda: torch.nn.AvgPool2d(2, divisor_override=True)(torch.ones(1, 1, 4, 4)),
                              TypeError, r"AvgPool2d: divisor_override must be an int or None, got True"),
    "unpool indices of another shape": (
        lambda fw: _unpool(fw, idx=np.zeros((1, 2, 2, 3), np.int64)),
        lambda: torch.nn.MaxUnpool2d(2)(torch.zeros(1, 2, 3, 3), torch.zeros(1, 2, 2, 3, dtype=torch.long)),
        ValueError, r"MaxUnpool2d: indices must have the input's shape"),
    "unpool float indices": (lambda fw: _unpool(fw, idx_dtype="float32"),
                             lambda: torch.nn.MaxUnpool2d(2)(torch.zeros(1, 2, 3, 3), torch.zeros(1, 2, 3, 3)),
                             TypeError, r"MaxUnpool2d: indices dtype float32 is not supported \(expected int64"),
    "unpool int16 indices": (lambda fw: _unpool(fw, idx_dtype="int16"),
                             lambda: torch.nn.MaxUnpool2d(2)(torch.zeros(1, 2, 3, 3),
                                                             torch.zeros(1, 2, 3, 3, dtype=torch.int16)),
                             TypeError, r"MaxUnpool2d: indices dtype int16 is not supported"),
    "unpool index beyond the output": (
        lambda fw: _unpool(fw, idx=np.full((1, 2, 3, 3), 36, np.int64)),
        lambda: torch.nn.MaxUnpool2d(2)(torch.zeros(1, 2, 3, 3), torch.full((1, 2, 3, 3), 36)),
        ValueError, r"MaxUnpool2d: found an invalid max index 36: the output planes are 6×6"),
    "unpool negative index": (
        lambda fw: _unpool(fw, idx=np.full((1, 2, 3, 3), -1, np.int64)),
        lambda: torch.nn.MaxUnpool2d(2)(torch.zeros(1, 2, 3, 3), torch.full((1, 2, 3, 3), -1)),
        ValueError, r"MaxUnpool2d: found an invalid max index -1"),
    "unpool output_size of 3 entries": (
        lambda fw: _unpool(fw, output_size=(2, 6, 6)),
        lambda: torch.nn.MaxUnpool2d(2)(torch.zeros(1, 2, 3, 3), torch.zeros(1, 2, 3, 3, dtype=torch.long), (2, 6, 6)),
        ValueError, r"MaxUnpool2d: output_size must have 2 entries \(H, W\) or 4"),
    "unpool output_size out of range": (
        lambda fw: _unpool(fw, output_size=(8, 6)),
        lambda: torch.nn.MaxUnpool2d(2)(torch.zeros(1, 2, 3, 3), torch.zeros(1, 2, 3, 3, dtype=torch.long), (8, 6)),
        ValueError, r"MaxUnpool2d: output_size height 8 must lie strictly between 4 and 8"),
    "unpool output_size an int": (
        lambda fw: _unpool(fw, output_size=6),
        lambda: torch.nn.MaxUnpool2d(2)(torch.zeros(1, 2, 3, 3), torch.zeros(1, 2, 3, 3, dtype=torch.long), 6),
        TypeError, r"MaxUnpool2d: output_size must be a sequence of 2 ints"),
    "unpool integer input": (
        lambda fw: _unpool(fw, x_dtype="int64"),
        lambda: torch.nn.MaxUnpool2d(2)(torch.zeros(1, 2, 3, 3, dtype=torch.long), torch.zeros(1, 2, 3, 3, dtype=torch.long)),
        TypeError, r"MaxUnpool2d: input dtype int64 is not supported \(expected a floating dtype\)"),
    "unpool 5-D input": (
        lambda fw: _unpool(fw, x_shape=(1, 1, 2, 3, 3)),
        lambda: torch.nn.MaxUnpool2d(2)(torch.zeros(1, 1, 2, 3, 3), torch.zeros(1, 1, 2, 3, 3, dtype=torch.long)),
        ValueError, r"MaxUnpool2d: expected a 3-D .* or 4-D .* input, got a 5-D input"),
    "unpool no channels": (
        lambda fw: _unpool(fw, x_shape=(1, 0, 3, 3)),
        lambda: torch.nn.MaxUnpool2d(2)(torch.zeros(1, 0, 3, 3), torch.zeros(1, 0, 3, 3, dtype=torch.long)),
        ValueError, r"MaxUnpool2d: expected non-empty channel and spatial axes"),
    "unpool stride 0": (lambda fw: _layer(fw, "pooling.MaxUnpool2d", 2, stride=0),
                        lambda: torch.nn.MaxUnpool2d(2, stride=0)(torch.zeros(1, 2, 3, 3),
                                                                  torch.ones(1, 2, 3, 3, dtype=torch.long) * 29),
                        ValueError, r"MaxUnpool2d: stride must be >= 1"),
    "max pool 2-D input": (lambda fw: _layer(fw, "pooling.MaxPool2d", 2)(_arr(fw, (4, 4))),
                           lambda: torch.nn.MaxPool2d(2)(torch.zeros(4, 4)),
                           ValueError, r"MaxPool2d: expected a 3-D .* or 4-D .* input, got a 2-D input"),
    "max pool no channels": (lambda fw: _layer(fw, "pooling.MaxPool2d", 2)(_arr(fw, (1, 0, 4, 4))),
                             lambda: torch.nn.MaxPool2d(2)(torch.zeros(1, 0, 4, 4)),
                             ValueError, r"MaxPool2d: expected non-empty channel and spatial axes \(only the batch"),
    "max pool empty height": (lambda fw: _layer(fw, "pooling.MaxPool2d", 1)(_arr(fw, (1, 2, 0, 4))),
                              lambda: torch.nn.MaxPool2d(1)(torch.zeros(1, 2, 0, 4)),
                              ValueError, r"MaxPool2d: expected non-empty channel and spatial axes"),
    "avg pool unbatched, no channels": (lambda fw: _layer(fw, "pooling.AvgPool2d", 2)(_arr(fw, (0, 4, 4))),
                                        lambda: torch.nn.AvgPool2d(2)(torch.zeros(0, 4, 4)),
                                        ValueError, r"AvgPool2d: expected non-empty channel and spatial axes"),
    "max pool kernel of 3 entries": (lambda fw: _layer(fw, "pooling.MaxPool2d", (3, 1, 1)),
                                     lambda: torch.nn.MaxPool2d((3, 1, 1))(torch.zeros(1, 1, 8, 8)),
                                     TypeError, r"MaxPool2d: kernel_size must be an int, a one-element tuple or a pair"),
    "max pool empty kernel tuple": (lambda fw: _layer(fw, "pooling.MaxPool2d", ()),
                                    lambda: torch.nn.MaxPool2d(())(torch.zeros(1, 1, 8, 8)),
                                    TypeError, r"MaxPool2d: kernel_size must be an int, a one-element tuple"),
    "conv one-element kernel_size": (lambda fw: _layer(fw, "conv.Conv2d", 1, 1, (3,)),
                                     lambda: torch.nn.Conv2d(1, 1, (3,))(torch.zeros(1, 1, 8, 8)),
                                     TypeError, r"Conv2d: kernel_size must be an int or a pair of ints, got \(3,\)"),
    "conv 2-D input": (lambda fw: _layer(fw, "conv.Conv2d", 1, 1, 3)(_arr(fw, (8, 8))),
                       lambda: torch.nn.Conv2d(1, 1, 3)(torch.zeros(8, 8)),
                       ValueError, r"Conv2d: expected a 3-D .* or 4-D .* input, got a 2-D input"),
    "conv unbatched, wrong channels": (lambda fw: _layer(fw, "conv.Conv2d", 3, 4, 3)(_arr(fw, (4, 8, 8))),
                                       lambda: torch.nn.Conv2d(3, 4, 3)(torch.zeros(4, 8, 8)),
                                       ValueError, r"Conv2d: expected in_channels=3 channels .* got 4"),
    "conv empty height, padded": (lambda fw: _layer(fw, "conv.Conv2d", 3, 4, 1, padding=1)(_arr(fw, (1, 3, 0, 8))),
                                  lambda: torch.nn.Conv2d(3, 4, 1, padding=1)(torch.zeros(1, 3, 0, 8)),
                                  ValueError, r"Conv2d: expected non-empty channel and spatial axes"),
    "conv unknown padding_mode": (lambda fw: _layer(fw, "conv.Conv2d", 1, 1, 3, padding_mode="zero"),
                                  lambda: torch.nn.Conv2d(1, 1, 3, padding_mode="zero"),
                                  ValueError, r"Conv2d: padding_mode must be one of 'zeros', 'reflect', 'replicate'"),
    "conv reflect padding as large as the input": (
        lambda fw: _layer(fw, "conv.Conv2d", 1, 1, 3, padding=3, padding_mode="reflect")(_arr(fw, (1, 1, 3, 5))),
        lambda: torch.nn.Conv2d(1, 1, 3, padding=3, padding_mode="reflect")(torch.zeros(1, 1, 3, 5)),
        ValueError, r"Conv2d: padding_mode='reflect' needs padding smaller than the input: padding 3 on input height 3"),
    "conv circular padding wrapping twice": (
        lambda fw: _layer(fw, "conv.Conv2d", 1, 1, 3, padding=4, padding_mode="circular")(_arr(fw, (1, 1, 5, 3))),
        lambda: torch.nn.Conv2d(1, 1, 3, padding=4, padding_mode="circular")(torch.zeros(1, 1, 5, 3)),
        ValueError, r"Conv2d: padding_mode='circular' needs padding at most the input's size .* input width 3"),
    "adaptive pool one-element output_size": (
        lambda fw: _layer(fw, "pooling.AdaptiveAvgPool2d", (2,)),
        lambda: torch.nn.AdaptiveAvgPool2d((2,))(torch.zeros(1, 1, 4, 4)),
        TypeError, r"AdaptiveAvgPool2d: output_size must be an int or a pair of ints"),
}


@pytest.mark.parametrize("fw", ["jax", "torch"])
@pytest.mark.parametrize("case", list(BAD))
def test_bad_values_raise_one_error_in_both_twins(case, fw):
    call, torch_call, exc, pattern = BAD[case]
    with pytest.raises(exc, match=pattern):
        call(fw)


@pytest.mark.parametrize("case", list(BAD))
def test_torch_refuses_each_bad_value_too(case):
    """Each refusal is torch's own (its error type and message differ: often a RuntimeError deep in a kernel)."""
    with pytest.raises(Exception):
        BAD[case][1]()


def test_the_twins_refuse_what_torch_computes_into_nothing():
    """Stricter than torch, alike in both twins: a MaxUnpool2d kernel 0 (torch returns a 0×0 output)."""
    assert torch.nn.MaxUnpool2d(0)(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2, dtype=torch.long)).shape[-1] == 0
    for fw in ("jax", "torch"):
        with pytest.raises(ValueError, match=r"MaxUnpool2d: kernel_size must be >= 1"):
            _layer(fw, "pooling.MaxUnpool2d", 0)


# ---------------------------------------------------------------- unbatched input and empty batches
UNBATCHED = {  # the layers torch runs on (C, H, W): the JAX twin on (H, W, C), the same numbers
    "Conv2d": ("conv.Conv2d", (3, 4, 3), {"padding": 1}),
    "MaxPool2d": ("pooling.MaxPool2d", (2,), {"return_indices": True}),
    "AvgPool2d": ("pooling.AvgPool2d", (2,), {"divisor_override": 3}),
    "AdaptiveAvgPool2d": ("pooling.AdaptiveAvgPool2d", ((2, 3),), {}),
}


@pytest.mark.parametrize("name", list(UNBATCHED))
def test_unbatched_input_equals_a_batch_of_one(name):
    path, args, kw = UNBATCHED[name]
    x = np.random.default_rng(0).standard_normal((3, 6, 7)).astype(np.float32)
    for fw in ("jax", "torch"):
        m = _layer(fw, path, *args, **kw)
        one = m(torch.tensor(x)) if fw == "torch" else m(jnp.asarray(to_jax(x)))
        batch = m(torch.tensor(x[None])) if fw == "torch" else m(jnp.asarray(to_jax(x[None])))
        one, batch = (one, batch) if isinstance(one, tuple) else ((one,), (batch,))
        for a, b in zip(one, batch):
            a, b = (v.detach().numpy() if fw == "torch" else np.asarray(v) for v in (a, b))
            assert a.shape == b.shape[1:] and np.array_equal(a, b[0])


@pytest.mark.parametrize("name", ["Conv2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d"])
def test_empty_batch_gives_an_empty_result_and_gradients(name):
    """N = 0: torch's shape and dtype, an empty input gradient and zero parameter gradients."""
    path, args, kw = UNBATCHED[name]
    x = np.zeros((0, 3, 6, 7), np.float32)
    tm = _layer("torch", path, *args, **kw)
    tx = torch.tensor(x, requires_grad=True)
    ty = tm(tx)
    ty = ty[0] if isinstance(ty, tuple) else ty
    ty.sum().backward()
    jm = _layer("jax", path, *args, **kw)
    graphdef, state = nnx.split(jm)

    def f(st_, v):
        y = nnx.merge(graphdef, st_)(v)
        return (y[0] if isinstance(y, tuple) else y).sum()

    gstate, gx = jax.grad(f, argnums=(0, 1))(state, jnp.asarray(to_jax(x)))
    jy = jm(jnp.asarray(to_jax(x)))
    jy = jy[0] if isinstance(jy, tuple) else jy
    assert from_jax(jy).shape == tuple(ty.shape) and str(jy.dtype) == str(ty.dtype).removeprefix("torch.")
    assert from_jax(gx).shape == x.shape == tuple(tx.grad.shape)
    assert all(not np.any(np.asarray(g)) for g in jax.tree.leaves(gstate))
    assert all(not p.grad.any() for p in tm.parameters())


# ---------------------------------------------------------------- mutants the registry must catch
@pytest.fixture
def fresh_traces():
    """A mutant replaces a function that jitted code calls: traces cached before or during it must go."""
    jax.clear_caches()
    yield
    jax.clear_caches()


def _fails(name, why):
    res = runner.run_concept(registry.get(name), "float64")
    assert not res.passed and not res.error, f"mutant '{why}' passed {name}: the samples cannot see it"
    return res


def test_mutant_first_nan_wins(monkeypatch, fresh_traces):
    """np.argmax's rule (the first NaN of a window takes the gradient), where torch's loop ends on the last."""
    monkeypatch.setattr(J.pooling, "_takes", lambda v, m: (v > m) | ((v != v) & (m == m)))
    res = _fails("layers.max_pool2d", "first NaN wins")
    assert all("NaN" in f and "grad[x]" in f for f in res.failures), res.failures


def test_mutant_last_maximum_wins(monkeypatch, fresh_traces):
    """`>=` for torch's `>`: a tie's gradient goes to its last maximum."""
    monkeypatch.setattr(J.pooling, "_takes", lambda v, m: (v >= m) | (v != v))
    res = _fails("layers.max_pool2d", "last maximum wins")
    assert all("grad[x]" in f for f in res.failures) and any("ties" in f for f in res.failures), res.failures


def test_mutant_minus_inf_window_takes_its_first_tap_even_in_padding(monkeypatch, fresh_traces):
    """A window of −inf gives its gradient to tap 0, which lies in the padding (dropped), not to torch's
    first in-input tap."""
    monkeypatch.setattr(J.pooling, "_first_inside", lambda n, k, s, p, d, o: np.zeros(o, int))
    res = _fails("layers.max_pool2d", "−inf window's tap 0")
    assert all("grad[x]" in f for f in res.failures), res.failures


def test_mutant_unpool_gradient_to_one_repeated_index(monkeypatch, fresh_traces):
    """JAX's own scatter gradient (one of several equal indices gets it) instead of torch's gather."""
    def plain(x, indices, size):
        n, h, w, c = x.shape
        flat = jnp.zeros((n, size[0] * size[1], c), x.dtype)
        flat = flat.at[jnp.arange(n)[:, None, None], indices.reshape(n, h * w, c), jnp.arange(c)[None, None, :]].set(
            x.reshape(n, h * w, c), mode="drop")
        return flat.reshape(n, *size, c)
    monkeypatch.setattr(J.pooling, "_unpool_core", plain)
    res = _fails("layers.max_unpool2d", "scatter's own gradient")
    assert all("grad[x]" in f for f in res.failures) and any("repeated" in f for f in res.failures), res.failures


# ---------------------------------------------------------------- JAX without x64: int32 indices
def test_indices_are_int32_without_x64_and_both_unpools_take_them():
    code = textwrap.dedent("""
        import jax, jax.numpy as jnp, numpy as np, torch
        assert not jax.config.jax_enable_x64
        import jax_impl as J, torch_impl as T
        x = np.random.default_rng(0).standard_normal((2, 6, 6, 3)).astype(np.float32)  # NHWC
        y, i = J.pooling.MaxPool2d(2, return_indices=True)(jnp.asarray(x))
        assert i.dtype == jnp.int32, i.dtype
        u = J.pooling.MaxUnpool2d(2)(y, i)
        t = T.pooling.MaxUnpool2d(2)(torch.tensor(np.asarray(y).transpose(0, 3, 1, 2)),
                                     torch.tensor(np.asarray(i).transpose(0, 3, 1, 2)))
        ty, ti = torch.nn.functional.max_pool2d(torch.tensor(x.transpose(0, 3, 1, 2)), 2, return_indices=True)
        assert np.array_equal(np.asarray(i).transpose(0, 3, 1, 2), ti.numpy())
        assert np.array_equal(np.asarray(u).transpose(0, 3, 1, 2), t.numpy())
    """)
    env = {k: v for k, v in __import__("os").environ.items() if k != "JAX_ENABLE_X64"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
