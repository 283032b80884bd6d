"""Every stock layer kind, over its options: the weights round-trip bit for bit (torch → Flax → torch),
and the Flax layer built as the kind's notes say computes what the torch layer computes (outputs,
input and parameter gradients, in float64 where rounding cannot hide a wrong layout). A wrongly
configured Flax layer is caught and its note names the setting. Expected values come from torch."""
import numpy as np
import pytest
import torch
from flax import nnx
from torch import nn

import parity.porting as porting
from parity.porting import kinds
from parity.porting.layer_kinds import tconv_padding

R = nnx.Rngs(0)


class ChannelsLast(nnx.Module):
    """Takes torch's channels-first layout at the boundary (compare's layout='nchw') and runs the
    layer channels-last, as a Flax model would."""

    def __init__(self, layer):
        self.layer = layer

    def __call__(self, x):
        return jnp_moveaxis(self.layer(jnp_moveaxis(x, 1, -1)), -1, 1)


class Reshaped(nnx.Module):
    """nnx.LinearGeneral with heads: the input or output split into (H, D) and merged again."""

    def __init__(self, layer, in_shape=None):
        self.layer, self.in_shape = layer, in_shape

    def __call__(self, x):
        if self.in_shape is not None:
            x = x.reshape(*x.shape[:-1], *self.in_shape)
        y = self.layer(x)
        return y.reshape(*x.shape[:1], -1) if y.ndim > 2 else y


def jnp_moveaxis(x, a, b):
    import jax.numpy as jnp
    return jnp.moveaxis(x, a, b)


def _x(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def _pads(tm):
    p = tm.padding
    return [(q, q) for q in p] if not isinstance(p, str) else p.upper()


def _conv(nd, **kw):
    cls = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[nd]
    tm = cls(4, 6, kernel_size=3, **kw)
    pads = "CIRCULAR" if kw.get("padding_mode") == "circular" else _pads(tm)
    fm = nnx.Conv(4, 6, (3,) * nd, strides=tm.stride, padding=pads, kernel_dilation=tm.dilation,
                  feature_group_count=tm.groups, use_bias=tm.bias is not None, rngs=R)
    size = {1: (2, 4, 11), 2: (2, 4, 9, 8), 3: (2, 4, 6, 7, 5)}[nd]
    return tm, ChannelsLast(fm), _x(*size), "nchw"


def _tconv(nd, **kw):
    cls = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}[nd]
    tm = cls(4, 3, kernel_size=3, **kw)
    fm = nnx.ConvTranspose(4, 3, (3,) * nd, strides=tm.stride, padding=tconv_padding(tm),
                           kernel_dilation=tm.dilation, use_bias=tm.bias is not None, rngs=R)
    size = {1: (2, 4, 7), 2: (2, 4, 5, 6), 3: (2, 4, 3, 4, 5)}[nd]
    return tm, ChannelsLast(fm), _x(*size), "nchw"


def _bn(nd):
    cls = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[nd]
    tm = cls(5, eps=1e-3, momentum=0.2)
    with torch.no_grad():  # running statistics of their own, so eval mode shows a wrong conversion
        tm.running_mean.copy_(torch.linspace(-1, 1, 5))
        tm.running_var.copy_(torch.linspace(0.5, 2, 5))
    fm = nnx.BatchNorm(5, momentum=0.8, epsilon=1e-3, use_fast_variance=False, rngs=R)
    size = {1: (3, 5, 7), 2: (3, 5, 4, 4), 3: (3, 5, 2, 3, 4)}[nd]
    return tm, ChannelsLast(fm), _x(*size), "nchw"


CASES = {
    "linear": lambda: (nn.Linear(5, 7), nnx.Linear(5, 7, rngs=R), _x(3, 5), "nhwc"),
    "linear no bias": lambda: (nn.Linear(5, 7, bias=False), nnx.Linear(5, 7, use_bias=False, rngs=R), _x(3, 5),
                               "nhwc"),
    "linear ⇄ LinearGeneral, heads out": lambda: (nn.Linear(8, 6), Reshaped(nnx.LinearGeneral(8, (2, 3), rngs=R)),
                                                  _x(3, 8), "nhwc"),
    "linear ⇄ LinearGeneral, heads in": lambda: (nn.Linear(6, 5), Reshaped(nnx.LinearGeneral(
        (2, 3), 5, axis=(-2, -1), rngs=R), in_shape=(2, 3)), _x(3, 6), "nhwc"),
    "conv1d": lambda: _conv(1, padding=1),
    "conv1d stride 2 dilation 2": lambda: _conv(1, stride=2, dilation=2, padding=2),
    "conv2d groups 2 no bias": lambda: _conv(2, groups=2, padding=1, bias=False),
    "conv2d padding same": lambda: _conv(2, padding="same", dilation=2),
    "conv2d circular": lambda: _conv(2, padding=1, padding_mode="circular"),
    "conv3d": lambda: _conv(3, padding=(1, 0, 1)),
    "conv_transpose1d stride 2 output_padding 1": lambda: _tconv(1, stride=2, padding=1, output_padding=1),
    "conv_transpose2d": lambda: _tconv(2),
    "conv_transpose2d stride 2 padding 1 dilation 2": lambda: _tconv(2, stride=2, padding=1, dilation=2),
    "conv_transpose3d no bias": lambda: _tconv(3, stride=(1, 2, 1), padding=1, bias=False),
    "batchnorm1d": lambda: _bn(1),
    "batchnorm2d": lambda: _bn(2),
    "batchnorm3d": lambda: _bn(3),
    "groupnorm": lambda: (nn.GroupNorm(2, 6), ChannelsLast(nnx.GroupNorm(6, num_groups=2, epsilon=1e-5,
                                                                        use_fast_variance=False, rngs=R)),
                          _x(3, 6, 4, 5), "nchw"),
    "instancenorm2d affine": lambda: (nn.InstanceNorm2d(4, affine=True), ChannelsLast(nnx.InstanceNorm(
        4, epsilon=1e-5, use_fast_variance=False, rngs=R)), _x(2, 4, 5, 6), "nchw"),
    "instancenorm1d plain": lambda: (nn.InstanceNorm1d(4), ChannelsLast(nnx.InstanceNorm(
        4, epsilon=1e-5, use_fast_variance=False, use_scale=False, use_bias=False, rngs=R)), _x(2, 4, 9), "nchw"),
    "layernorm": lambda: (nn.LayerNorm(6), nnx.LayerNorm(6, epsilon=1e-5, use_fast_variance=False, rngs=R),
                          _x(3, 4, 6), "nhwc"),
    "rmsnorm": lambda: (nn.RMSNorm(6, eps=1e-6), nnx.RMSNorm(6, epsilon=1e-6, use_fast_variance=False, rngs=R),
                        _x(3, 4, 6), "nhwc"),
    "prelu": lambda: (nn.PReLU(), nnx.PReLU(), _x(3, 6), "nhwc"),
}


def _randomise(tm):
    """Non-trivial weights everywhere (norm layers start at ones and zeros, which hide a swap)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in tm.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5 + 0.3)
    return tm


@pytest.mark.parametrize("case", list(CASES))
def test_kind_matches_torch_in_float64(case):
    tm, fm, x, layout = CASES[case]()
    tm = _randomise(tm).double().eval()
    report = porting.compare(tm, fm, x, dtype="float64", layout=layout)
    assert report.passed, f"{case}\n{report.summary()}\n" + "\n".join(report.notes)
    paired = report.pairing["layers"]
    assert len(paired) == 1, report.pairing  # the layer itself was paired and compared
    assert all(r.out is not None for r in report.rows if r.flax is not None and r.torch is not None)
    if any(True for _ in tm.parameters()):
        assert report.param_grads, "no parameter gradient compared"


@pytest.mark.parametrize("case", [c for c in CASES if "plain" not in c])
def test_kind_weights_round_trip_bit_exact(case):
    tm, fm, x, layout = CASES[case]()
    tm = _randomise(tm).double()
    tm.eval()
    pairing = porting.pair_models(tm.float(), fm, x.astype(np.float32), layout=layout)
    sd = {k: v.detach().numpy().copy() for k, v in tm.state_dict().items()}
    flax = pairing.torch_to_flax(sd)
    back = pairing.flax_to_torch(flax)
    for k, v in sd.items():
        if k == "num_batches_tracked" or k.endswith(".num_batches_tracked"):
            continue  # a counter nnx.BatchNorm does not keep
        assert back[k].dtype == v.dtype and np.array_equal(back[k], v), k
    assert set(back) >= {k for k in sd if not k.endswith("num_batches_tracked")}


def test_every_stock_kind_with_arrays_is_tested():
    tested = {kinds.torch_kind(CASES[c]()[0]) for c in CASES} | {"embedding"}  # embedding: test_compare_*
    tested |= {"multihead_attention", "lstm", "gru", "rnn"}  # tests/test_layer_kinds_attention_rnn.py
    with_arrays = {k.name for k in kinds.all_kinds() if k.has_params}
    assert with_arrays <= tested, with_arrays - tested


# ---------------------------------------------------------------- a wrong Flax setting is caught and named
def test_conv_transpose_wrong_padding_fails_and_is_named():
    tm = _randomise(nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1, output_padding=1)).double().eval()
    fm = ChannelsLast(nnx.ConvTranspose(4, 3, (3, 3), strides=2, padding="SAME", rngs=R))
    report = porting.compare(tm, fm, _x(2, 4, 5, 5), dtype="float64", layout="nchw")
    assert not report.passed
    assert any("output_padding=(1, 1) is Flax padding=((1, 2), (1, 2))" in n for n in report.notes), report.notes


def test_groupnorm_flax_defaults_fail_and_are_named():
    tm = _randomise(nn.GroupNorm(2, 6)).double().eval()
    fm = ChannelsLast(nnx.GroupNorm(6, num_groups=3, rngs=R))
    report = porting.compare(tm, fm, _x(3, 6, 4, 5), dtype="float64", layout="nchw")
    assert not report.passed
    text = "\n".join(report.notes)
    assert "groups: torch 2, Flax num_groups=3" in text and "eps: torch 1e-05, Flax 1e-06" in text


def test_rmsnorm_torch_default_eps_is_named():
    tm = nn.RMSNorm(6).double().eval()
    fm = nnx.RMSNorm(6, rngs=R)
    report = porting.compare(tm, fm, _x(3, 6) * 1e-4, dtype="float64")
    assert any("eps=None means the input dtype's machine epsilon" in n for n in report.notes), report.notes


def test_layers_without_nnx_counterpart_are_refused_with_the_way_out():
    tm = nn.ConvTranspose2d(4, 4, 3, groups=2)
    fm = ChannelsLast(nnx.ConvTranspose(4, 4, (3, 3), rngs=R))
    with pytest.raises(porting.PortingError, match="no kind automatic pairing knows.*register_kind"):
        porting.compare(tm, fm, _x(1, 4, 5, 5), layout="nchw")


def test_batchnorm_momentum_note_only_in_training_mode():
    tm = nn.BatchNorm1d(5, momentum=0.1).double()
    fm = nnx.BatchNorm(5, momentum=0.1, epsilon=1e-5, use_fast_variance=False, rngs=R)  # 0.1, not 1 − 0.1
    evals = porting.compare(tm.eval(), fm, _x(4, 5), dtype="float64")
    assert evals.passed and not any("momentum" in n for n in evals.notes)
    trains = porting.compare(tm.train(), fm, _x(4, 5), dtype="float64", train=True)
    assert any("momentum: torch 0.1" in n for n in trains.notes)


# ---------------------------------------------------------------- a user's own kind
class TorchScale(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.gamma = nn.Parameter(torch.linspace(0.5, 1.5, n))

    def forward(self, x):
        return x * self.gamma.flip(0)  # stored reversed, as some checkpoints do


class FlaxScale(nnx.Module):
    def __init__(self, n):
        self.g = nnx.Param(np.ones(n, np.float32))

    def __call__(self, x):
        return x * self.g[...]


class TorchNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc, self.scale = nn.Linear(4, 3), TorchScale(3)

    def forward(self, x):
        return self.scale(self.fc(x))


class FlaxNet(nnx.Module):
    def __init__(self):
        self.fc, self.scale = nnx.Linear(4, 3, rngs=R), FlaxScale(3)

    def __call__(self, x):
        return self.scale(self.fc(x))


def test_user_registered_kind_pairs_and_converts():
    x = _x(2, 4)
    with pytest.raises(porting.PortingError, match="no kind automatic pairing knows"):
        porting.compare(TorchNet().double(), FlaxNet(), x, dtype="float64")
    flip = lambda a, tm=None, fm=None: a[::-1]  # noqa: E731
    kind = porting.Kind("scale", (TorchScale,), (FlaxScale,), (porting.Array("gamma", "g", flip, flip),))
    porting.register_kind(kind)
    try:
        report = porting.compare(TorchNet().double(), FlaxNet(), x, dtype="float64")
        assert report.passed, report.summary()
        assert [p["kind"] for p in report.pairing["layers"]] == ["linear", "scale"]
        # the same kind without its flip converts wrongly, and the comparer says so
        porting.register_kind(porting.Kind("scale", (TorchScale,), (FlaxScale,), (porting.Array("gamma", "g"),)),
                              replace=True)
        assert not porting.compare(TorchNet().double(), FlaxNet(), x, dtype="float64").passed
    finally:
        kinds.unregister("scale")


def test_register_refuses_bad_records():
    with pytest.raises(ValueError, match="names no torch class"):
        porting.register_kind(porting.Kind("x", (), (FlaxScale,)))
    with pytest.raises(ValueError, match="exists already"):
        porting.register_kind(porting.Kind("linear", (nn.Linear,), (nnx.Linear,)))
    with pytest.raises(ValueError, match="flax_names"):
        porting.register_kind(porting.Kind("y", (TorchScale,), (FlaxScale,), to_flax=lambda *a: {},
                                           to_torch=lambda *a: {}))


def test_readme_table_lists_every_stock_kind_with_arrays():
    from pathlib import Path
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    rows = {line.split("|")[1].strip() for line in readme.splitlines() if line.startswith("| ") and "|" in line[2:]}
    missing = [k.name for k in kinds.all_kinds() if k.has_params and k.name not in rows]
    assert not missing, f"README's table of kinds lacks {missing}"


# ---------------------------------------------------------------- weights= for the layers it names
class TorchMix(nn.Module):
    """A layer of no known kind: y = x Wᵀ with W stored (out, in), as torch stores Linear's."""

    def __init__(self, n):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n, n, generator=torch.Generator().manual_seed(3)))

    def forward(self, x):
        return x @ self.weight.T


class FlaxMix(nnx.Module):
    def __init__(self, n):
        self.kernel = nnx.Param(np.zeros((n, n), np.float32))  # (in, out), as Flax stores Linear's

    def __call__(self, x):
        return x @ self.kernel[...]


class TorchMixNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc, self.mix = nn.Linear(4, 3), TorchMix(3)

    def forward(self, x):
        return self.mix(self.fc(x))


class FlaxMixNet(nnx.Module):
    def __init__(self):
        self.dense, self.mixer = nnx.Linear(4, 3, rngs=R), FlaxMix(3)

    def __call__(self, x):
        return self.mixer(self.dense(x))


def test_name_map_with_a_layout_covers_an_unknown_layer_and_the_rest_pairs_itself():
    x = _x(5, 4)
    with pytest.raises(porting.PortingError, match="torch `mix` \\(TorchMix"):
        porting.compare(TorchMixNet().double(), FlaxMixNet(), x, dtype="float64")
    report = porting.compare(TorchMixNet().double(), FlaxMixNet(), x, dtype="float64",
                             weights={"mix.weight": ("mixer.kernel", "T")})
    assert report.passed, report.summary()
    assert report.pairing["strategy"] == "by the given mapping, the rest by execution order"
    assert [p["torch"] for p in report.pairing["layers"]] == ["fc"]
    assert report.pairing["loose_parameters"] == [{"torch": "mix.weight", "flax": ["mixer", "kernel"], "layout": "T"}]
    assert set(report.param_grads) == {"fc.weight", "fc.bias", "mix.weight"}  # its gradient converted back by "T"
    wrong = porting.compare(TorchMixNet().double(), FlaxMixNet(), x, dtype="float64",
                            weights={"mix.weight": ("mixer.kernel", "same")})
    assert not wrong.passed  # a square matrix: only the numbers show the missing transpose


def test_weights_callable_converts_layers_of_no_known_kind():
    def convert(sd):
        return {"dense": {"kernel": sd["fc.weight"].T, "bias": sd["fc.bias"]}, "mixer": {"kernel": sd["mix.weight"].T}}
    report = porting.compare(TorchMixNet().double(), FlaxMixNet(), _x(5, 4), dtype="float64", weights=convert)
    assert report.passed, report.summary()
    assert any("converted by the weights callable" in n and "mix" in n for n in report.notes), report.notes
    bad = porting.compare(TorchMixNet().double(), FlaxMixNet(), _x(5, 4), dtype="float64",
                          weights=lambda sd: {**convert(sd), "mixer": {"kernel": sd["mix.weight"]}})
    assert not bad.passed
