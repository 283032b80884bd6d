"""`parity port`'s average pooling with ceil_mode and its interpolation (parity/port/resample.py).

The helpers the generated files hold (`avg_pool`, `interpolate_linear`, `interpolate_nearest`) are
run on small inputs against torch's own functions — outputs and input gradients, float64 and
float32, up- and downsampling, align_corners both ways, ceil_mode windows over padding with
count_include_pad both ways, divisor_override — and small torch modules holding the patterns of
EfficientNet (AvgPool2d(ceil_mode=True) with a kernel larger than the map) and BEiT (a table resized
with bilinear interpolation, then indexed by a constant index tensor) are ported and proven with
`parity.porting.compare` (every layer, every gradient, float64 and float32). Every expected value
is torch's.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from parity.port import resample as R
from parity.port.generate import generate, load_generated
from parity.porting import compare

NS = {"jax": jax, "jnp": jnp}
for _src in R.HELPERS.values():
    exec(_src, NS)  # noqa: S102 — the helper source a generated file holds


def _cl(a):
    return np.moveaxis(a, 1, -1)


def _cf(a):
    return np.moveaxis(np.asarray(a), -1, 1)


def _against_torch(torch_fn, jax_fn, shape, dtype, seed=0):
    """(output error, input-gradient error): `torch_fn` on NCHW, `jax_fn` on channels-last."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch_fn(xt)
    g = rng.standard_normal(tuple(yt.shape)).astype(dtype)
    yt.backward(torch.tensor(g))
    y, vjp = jax.vjp(jax.jit(jax_fn), jnp.asarray(_cl(x)))
    (gx,) = vjp(jnp.asarray(_cl(g)))
    assert _cf(y).shape == tuple(yt.shape) and _cf(y).dtype == x.dtype
    return np.abs(_cf(y) - yt.detach().numpy()).max(), np.abs(_cf(gx) - xt.grad.numpy()).max()


def _bound(dtype):  # float64: the port's bar; float32: a few roundings of values of size ~1
    return 1e-12 if dtype == np.float64 else 2e-6


# ---------------------------------------------------------------- avg_pool
POOLS = [  # input spatial size, kernel, stride, padding, ceil_mode
    ((6, 6), 3, 2, 1, True),  # a last window over the right padding
    ((7, 6), 3, 2, 1, True),
    ((5, 5), 2, 2, 0, True),  # a last, partial window: divisor = its part inside the input
    ((2, 2), 8, 8, 0, True),  # EfficientNet's pooler: one window larger than the map
    ((9, 9), 4, 3, 2, True),
    ((5, 5), 3, 2, 0, True),  # ceil_mode adds no window here
    ((6, 7), 3, 3, 1, False),
    ((6, 5), (3, 2), (2, 3), (1, 1), True),
    ((8,), 3, 2, 1, True),  # avg_pool1d
    ((5, 6, 7), 3, 2, 1, True),  # avg_pool3d
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("size, k, s, p, ceil", POOLS)
def test_avg_pool_is_torchs(size, k, s, p, ceil, count_include_pad, dtype):
    nd = len(size)
    pool = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[nd]
    kernel, stride, padding = ((v,) * nd if isinstance(v, int) else v for v in (k, s, p))
    for div in (None, 3) if nd > 1 else (None,):
        kw = {"kernel_size": k, "stride": s, "padding": p, "ceil_mode": ceil, "count_include_pad": count_include_pad}
        if div:
            kw["divisor_override"] = div
        dy, dg = _against_torch(lambda x, kw=kw: pool(x, **kw),
                                lambda x, div=div: NS["avg_pool"](x, kernel, stride, padding, ceil, count_include_pad,
                                                                  div),
                                (2, 3, *size), dtype)
        assert dy <= _bound(dtype) and dg <= _bound(dtype), (kw, dy, dg)


# ---------------------------------------------------------------- interpolate_linear
LINEAR = [  # input spatial size, output spatial size
    ((5, 7), (9, 4)), ((3, 3), (7, 7)), ((8, 6), (3, 2)), ((4, 5), (1, 1)), ((13, 13), (25, 25)),
    ((1, 3), (4, 4)), ((7, 7), (7, 7)), ((6,), (13,)), ((13,), (5,)), ((3, 4, 5), (5, 3, 6))]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("size, out", LINEAR)
def test_interpolate_linear_is_torchs(size, out, align_corners, dtype):
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(size)]
    dy, dg = _against_torch(lambda x: F.interpolate(x, size=out, mode=mode, align_corners=align_corners),
                            lambda x: NS["interpolate_linear"](x, out, align_corners=align_corners),
                            (2, 3, *size), dtype)
    # float32: torch's CPU kernel is compiled with fused multiply-adds (AVX2), one rounding fewer
    assert dy <= _bound(dtype) and dg <= _bound(dtype), (dy, dg)


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("size, scale", [((5, 7), (2.5, 1.3)), ((6, 6), (0.5, 0.7)), ((4, 4), (3.0, 3.0))])
def test_interpolate_linear_with_the_scale_factors_torchs_kernel_is_given(size, scale, align_corners):
    def torch_fn(x):
        return F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=align_corners)

    out = tuple(torch_fn(torch.zeros(1, 1, *size)).shape[2:])
    dy, dg = _against_torch(torch_fn, lambda x: NS["interpolate_linear"](x, out, align_corners, scales=scale),
                            (1, 2, *size), np.float64)
    assert dy <= 1e-12 and dg <= 1e-12


def test_interpolate_linear_keeps_torchs_nan_from_infinity_times_zero():
    """torch blends x·1 + x'·0 even where a size is unchanged: an infinite input makes NaNs."""
    x = torch.arange(12.0, dtype=torch.float64).reshape(1, 1, 3, 4)
    x[0, 0, 1, 1] = float("inf")
    for out in ((3, 4), (3, 6), (5, 4)):
        want = F.interpolate(x, size=out, mode="bilinear").numpy()
        got = _cf(NS["interpolate_linear"](jnp.asarray(_cl(x.numpy())), out))
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_allclose(got, want, rtol=1e-15, atol=0)  # NaN where torch has NaN, and only there


def test_interpolate_linear_floors_in_float32_as_torch_does_in_float64():
    """align_corners, 2 → 50: output 49's source index is 0.9999999999999999 in float64; torch's
    floorf reads 1.0, so the output is x[1] exactly."""
    x = torch.tensor([[[0.0, 1.0]]], dtype=torch.float64)
    want = F.interpolate(x, size=50, mode="linear", align_corners=True).numpy()
    got = _cf(NS["interpolate_linear"](jnp.asarray(_cl(x.numpy())), (50,), align_corners=True))
    np.testing.assert_array_equal(got, want)
    assert want[0, 0, 49] == 1.0


# ---------------------------------------------------------------- interpolate_nearest
@pytest.mark.parametrize("mode", ["nearest", "nearest-exact"])
@pytest.mark.parametrize("size, out", [((3, 2), (3, 82)), ((5, 7), (9, 4)), ((3, 3), (6, 9)), ((6, 6), (6, 6)),
                                       ((3, 5), (123, 7))])
def test_interpolate_nearest_is_torchs(size, out, mode):
    x = np.random.default_rng(0).standard_normal((1, 2, *size)).astype(np.float32)
    want = F.interpolate(torch.tensor(x), size=out, mode=mode).numpy()
    got = _cf(NS["interpolate_nearest"](jnp.asarray(_cl(x)), out, exact=mode == "nearest-exact"))
    np.testing.assert_array_equal(got, want)


def test_nearest_by_41_is_no_repeat():
    """torch's float32 source index ⌊i · fl(2/82)⌋ sends output 41 of 2 → 82 to input 0."""
    assert R.nearest_repeats((2,), (82,), None) is None
    assert R.nearest_repeats((3, 4), (6, 12), None) == [2, 3]
    y = F.interpolate(torch.tensor([[[[0.0, 1.0]]]]), size=(1, 82), mode="nearest")
    assert y[0, 0, 0, 41] == 0.0


# ---------------------------------------------------------------- ports of small modules
def _port_and_prove(model, x):
    port = generate(model, (torch.as_tensor(x),))
    assert port.complete, [p.line() for p in port.problems]
    mod = load_generated(port, f"port_resample_{type(model).__name__}")
    flax_model = eval(port.build, mod.__dict__)  # the expression generate() wrote
    for dtype in ("float64", "float32"):
        report = compare(model, flax_model, x, dtype=dtype, weights=port.weights or "torch->flax")
        assert report.passed, report.summary() + "\n" + port.source
        assert report.layers_compared > 0
    return port


class CeilPool(nn.Module):
    """EfficientNet's pooler: AvgPool2d(kernel, ceil_mode=True) over a map smaller than the kernel, and
    a ceil_mode window over padding, both ways of counting it."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.pooler = nn.AvgPool2d(8, ceil_mode=True)
        self.pad_pool = nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True)
        self.pad_pool_ex = nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)

    def forward(self, x):
        h = torch.tanh(self.conv(x))
        return (self.pooler(h).flatten(1) + self.pad_pool(h).mean((2, 3)) + self.pad_pool_ex(h).mean((2, 3))
                + F.avg_pool2d(x, 2, ceil_mode=True, divisor_override=3).sum((1, 2, 3))[:, None])


def test_ceil_mode_average_pooling_is_ported_and_proven():
    x = np.random.default_rng(0).standard_normal((2, 3, 7, 7)).astype(np.float32)
    port = _port_and_prove(CeilPool(), x)
    assert "avg_pool(" in port.source


class TableResize(nn.Module):
    """BEiT's relative position bias: a (5·5 + 1, heads) table, its grid resized bilinearly to 7×7
    (torch's (N, C, H, W) input built by reshape/permute, so it arrives channels-first), permuted back
    and indexed by a constant index tensor."""

    def __init__(self):
        super().__init__()
        self.table = nn.Parameter(torch.randn(26, 2))

    def forward(self, x):
        grid = self.table[:25].reshape(1, 5, 5, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(7, 7), mode="bilinear")
        table = torch.cat([grid.permute(0, 2, 3, 1).reshape(49, -1), self.table[25:]])
        index = torch.arange(49).flip(0) % 50  # a tensor the trace holds as a constant
        return x + table[index].view(7, 7, -1).permute(2, 0, 1).unsqueeze(0)


class WithTable(nn.Module):
    def __init__(self):
        super().__init__()
        self.bias = TableResize()
        self.conv = nn.Conv2d(2, 3, 1)

    def forward(self, x):
        return self.conv(self.bias(x))


def test_a_bilinear_resized_table_indexed_by_a_constant_is_ported_and_proven():
    torch.manual_seed(0)
    x = np.random.default_rng(0).standard_normal((2, 2, 7, 7)).astype(np.float32)
    port = _port_and_prove(WithTable(), x)
    assert "interpolate_linear(" in port.source


class Nearest41(nn.Module):
    def forward(self, x):
        return F.interpolate(x, size=(3, 82), mode="nearest") * 2


def test_nearest_by_41_is_ported_as_torchs_index_not_a_repeat():
    x = np.random.default_rng(0).standard_normal((1, 2, 3, 2)).astype(np.float32)
    port = _port_and_prove(Nearest41(), x)
    assert "interpolate_nearest(" in port.source and "jnp.repeat" not in port.source


# ---------------------------------------------------------------- one Hugging Face model
def test_beit_relative_position_bias_ports_complete_and_proven_in_float32():
    """BEiT (tiny config of examples/transformers_zoo.py): complete, and float32 proven. Its float64 run
    carries float32 rounding of the model's own softmax(dtype=torch.float32)."""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    try:
        import transformers_zoo
    finally:
        sys.path.pop(0)
    pytest.importorskip("transformers")
    model, inputs = transformers_zoo.ARCHITECTURES["beit"].build()
    port = generate(model, tuple(torch.as_tensor(a) for a in inputs))
    assert port.complete, [p.line() for p in port.problems]
    mod = load_generated(port, "port_resample_beit")
    flax_model = eval(port.build, mod.__dict__)  # the expression generate() wrote
    report = compare(model, flax_model, np.asarray(inputs[0]), dtype="float32", weights=port.weights or "torch->flax")
    assert report.passed, report.summary()


def test_avg_pool_without_padding_counted_keeps_float32_with_float64_enabled(tmp_path):
    """PoolFormer's pooling, AvgPool2d(3, 1, 1, count_include_pad=False): stock nnx.avg_pool divides by
    a pooled array of ones made without a dtype, so with jax_enable_x64 on (as the comparer runs) a
    float32 input came out float64. The port's output is float32, and equal to torch's."""
    import jax
    from flax import nnx  # noqa: F401 — the generated constructor call names nnx

    from parity.port.generate import generate, load_generated

    class Pool(nn.Module):
        def __init__(self):
            super().__init__()
            self.pool = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)

        def forward(self, x):
            return self.pool(x) - x

    x = np.random.default_rng(0).standard_normal((2, 4, 5, 5)).astype(np.float32)
    port = generate(Pool().eval(), x)
    assert port.complete, [p.line() for p in port.problems]
    flax_model = eval(port.build, vars(load_generated(port, "port_pool_no_pad")))
    with jax.enable_x64(True):
        got = flax_model(jnp.asarray(x.transpose(0, 2, 3, 1)))
    assert got.dtype == jnp.float32, got.dtype
    want = Pool()(torch.from_numpy(x)).detach().numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=1e-6)  # float32 rounding of a 9-term mean
