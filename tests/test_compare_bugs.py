"""Planted porting bugs, one kind at a time, each localised by `parity.compare` to the layer it was
planted in: weight layout (a reshaped kernel, a Flatten→Linear without its row permutation), padding
(nnx.Conv's default 'SAME'), BatchNorm (epsilon; momentum in training mode; Flax's biased running
variance), activation variant (tanh GELU), LayerNorm epsilon, Embedding padding_idx, Dropout rate.
The expected layer comes from where each bug was planted, nothing else."""
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from torch import nn

import jax_impl.conv
import jax_impl.normalization
from parity import convert
from parity.porting import PortingError, compare
from parity.porting.load import abstract_model, load_module

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
rb = load_module(str(EXAMPLES / "resnet_block.py"))
tb = load_module(str(EXAMPLES / "transformer_block.py"))
sc = load_module(str(EXAMPLES / "small_cnn.py"))
RNG = np.random.default_rng(0)
IMAGES = RNG.standard_normal((4, 3, 16, 16)).astype(np.float32)
IDS = RNG.integers(1, 50, (4, 16))
IDS[:, -3:] = 0  # padding at the end of every row


def flax(make):
    model = abstract_model(make)
    assert model is not None
    return model


def where(report):
    d = report.first_divergence
    assert d is not None, report.summary()
    return d.what, d.torch and d.torch.name, d.flax and d.flax.name


# ---------------------------------------------------------------- weight layout
def _my_conversion(sd, reshape_conv2=False, permute_fc1=True):
    """A user's hand-written torch→Flax conversion of the SmallCNN twins (examples/small_cnn.py)."""
    conv2 = convert.conv_torch_to_flax({"weight": sd["conv2.weight"], "bias": sd["conv2.bias"]})
    if reshape_conv2:  # BUG: reshaped instead of transposed (docs/traps.md, trap 3)
        conv2["kernel"] = sd["conv2.weight"].reshape(conv2["kernel"].shape)
    fc1 = {"weight": sd["fc1.weight"], "bias": sd["fc1.bias"]}
    return {"conv1": convert.conv_torch_to_flax({"weight": sd["conv1.weight"], "bias": sd["conv1.bias"]}),
            "conv2": conv2,
            # BUG when not permuted: torch flattens (C, H, W), the NHWC twin (H, W, C) (trap 4)
            "fc1": convert.flatten_linear_torch_to_flax(fc1, (32, 2, 2)) if permute_fc1
            else convert.linear_torch_to_flax(fc1),
            "fc2": convert.linear_torch_to_flax({"weight": sd["fc2.weight"], "bias": sd["fc2.bias"]})}


@pytest.fixture(scope="module")
def cnn():
    torch.manual_seed(0)
    return sc.torch_model(), flax(lambda: sc.flax_model(rngs=nnx.Rngs(0))), \
        RNG.standard_normal((8, 1, 8, 8)).astype(np.float32)


def test_a_correct_hand_written_conversion_passes(cnn):
    t, f, x = cnn
    assert compare(t, f, x, weights=_my_conversion).passed


def test_a_reshaped_conv_kernel_is_found_at_that_conv(cnn):
    t, f, x = cnn
    r = compare(t, f, x, weights=lambda sd: _my_conversion(sd, reshape_conv2=True))
    assert where(r) == ("output", "conv2", "conv2")
    assert r.rows[r.first_divergence.row].inp.ok


def test_a_flatten_linear_without_permuted_rows_is_found_at_that_linear(cnn):
    t, f, x = cnn
    r = compare(t, f, x, weights=lambda sd: _my_conversion(sd, permute_fc1=False))
    assert where(r) == ("output", "fc1", "fc1")


# ---------------------------------------------------------------- padding
class _PaddedStem(rb.FlaxResNetBlock):
    def __init__(self, *, rngs):
        super().__init__(rngs=rngs)
        # BUG: nnx.Conv's default padding 'SAME' where torch's stem pads 1: the same here (3×3,
        # stride 1), so nothing changes; the shortcut's 1×1 stride-2 conv keeps padding 0 either way.
        self.stem_conv = nnx.Conv(3, 16, (3, 3), use_bias=False, rngs=rngs)


class _ValidConv2(rb.FlaxResNetBlock):
    def __init__(self, *, rngs):
        super().__init__(rngs=rngs)
        self.conv2 = nnx.Conv(32, 32, (3, 3), padding="VALID", use_bias=False, rngs=rngs)  # BUG: torch pads 1


def test_same_padding_that_matches_torch_passes():
    torch.manual_seed(0)
    assert compare(rb.torch_model(), flax(lambda: _PaddedStem(rngs=nnx.Rngs(0))), IMAGES).passed


def test_a_padding_that_changes_the_shape_is_named_where_the_flax_model_breaks():
    """A padding that changes the output's shape breaks the residual add after it: no comparison can
    run, and the error names the last layer the Flax model ran and the shape it returned."""
    torch.manual_seed(0)
    with pytest.raises(PortingError) as e:
        compare(rb.torch_model(), flax(lambda: _ValidConv2(rngs=nnx.Rngs(0))), IMAGES)
    msg = str(e.value)
    assert "\n" not in msg and "the Flax model failed" in msg
    assert "the first layer whose output shape differs from torch's is Flax `conv2` (Conv" in msg
    assert "(4, 6, 6, 32), where torch `conv2` gives (4, 32, 8, 8) (NHWC: (4, 8, 8, 32))" in msg


# the padding bug of examples/resnet_block_buggy.py (stride 2 'SAME') is tested in test_compare_examples.py


# ---------------------------------------------------------------- BatchNorm
class _BnEps(rb.FlaxResNetBlock):
    def __init__(self, *, rngs):
        super().__init__(rngs=rngs)
        self.bn2 = nnx.BatchNorm(32, momentum=0.9, epsilon=1e-3, use_fast_variance=False, rngs=rngs)  # BUG


def test_a_batchnorm_epsilon_is_found_at_that_batchnorm():
    torch.manual_seed(0)
    r = compare(rb.torch_model(), flax(lambda: _BnEps(rngs=nnx.Rngs(0))), IMAGES)
    assert where(r) == ("output", "bn2", "bn2")
    assert "eps: torch 1e-05, Flax 0.001" in r.first_divergence.message


class _TorchConvBn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.bn, self.fc = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.Linear(8 * 16 * 16, 5)

    def forward(self, x):
        return self.fc(torch.flatten(torch.relu(self.bn(self.conv(x))), 1))


class _FlaxConvBn(nnx.Module):
    """The same with the project's twins, whose BatchNorm2d takes torch's momentum and stores torch's
    unbiased running variance (jax_impl/normalization.py)."""

    def __init__(self, momentum=0.1, *, rngs):
        self.conv = jax_impl.conv.Conv2d(3, 8, 3, padding=1, rngs=rngs)
        self.bn = jax_impl.normalization.BatchNorm2d(8, momentum=momentum)
        self.fc = nnx.Linear(8 * 16 * 16, 5, rngs=rngs)

    def __call__(self, x):
        return self.fc(jax.nn.relu(self.bn(self.conv(x))).reshape(x.shape[0], -1))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_training_mode_batchnorm_twins_agree_running_statistics_included(dtype):
    torch.manual_seed(0)
    r = compare(_TorchConvBn(), flax(lambda: _FlaxConvBn(rngs=nnx.Rngs(0))), IMAGES, train=True, dtype=dtype)
    assert r.passed, r.summary()
    bn_row = next(row for row in r.rows if row.torch and row.torch.name == "bn")
    assert bn_row.state is not None and bn_row.state.ok  # the running statistics were compared


def test_a_batchnorm_momentum_is_found_in_its_running_statistics():
    torch.manual_seed(0)
    # BUG: Flax's meaning of momentum (0.9) given to a layer that takes torch's (0.1) (trap 11)
    r = compare(_TorchConvBn(), flax(lambda: _FlaxConvBn(0.9, rngs=nnx.Rngs(0))), IMAGES, train=True)
    assert where(r) == ("running statistics", "bn", "bn")
    assert r.rows[r.first_divergence.row].out.ok  # the normalised output itself agrees


def test_stock_nnx_batchnorm_keeps_a_biased_running_variance():
    """Not a planted bug: nnx.BatchNorm stores the biased variance (trap 12); float64 sees it at the
    first BatchNorm of the ResNet example after one training-mode pass."""
    torch.manual_seed(0)
    r = compare(rb.torch_model(), flax(lambda: rb.flax_model(rngs=nnx.Rngs(0))), IMAGES, train=True,
                dtype="float64")
    assert where(r) == ("running statistics", "stem.1", "stem_bn")
    assert "trap 12" in r.first_divergence.message


# ---------------------------------------------------------------- activations, LayerNorm, Embedding, Dropout
def _flax_block(call=None, ln2_default_eps=False, drop1_rate=None):
    class Block(tb.FlaxTransformerBlock):
        def __init__(self, *, rngs):
            super().__init__(rngs=rngs)
            if ln2_default_eps:
                self.ln2 = nnx.LayerNorm(32, rngs=rngs)  # BUG: nnx's epsilon 1e-6, torch's 1e-5 (trap 14)
            if drop1_rate is not None:
                self.drop1 = nnx.Dropout(drop1_rate, rngs=rngs)  # BUG: another rate than torch's 0.1
    if call is not None:
        Block.__call__ = call
    return flax(lambda: Block(rngs=nnx.Rngs(0)))


def _tanh_gelu_call(self, ids):
    e = self.embed(ids)
    e = jnp.where((ids == tb.PAD)[..., None], jax.lax.stop_gradient(e), e)
    x = e + self.pos[:, :ids.shape[1]]
    x = x + self.drop1(self.attn(self.ln1(x)))
    x = x + self.drop2(self.fc2(jax.nn.gelu(self.fc1(self.ln2(x)))))  # BUG: tanh approximation (trap 15)
    return self.head(self.ln_f(x))


def _no_padding_idx_call(self, ids):
    x = self.embed(ids) + self.pos[:, :ids.shape[1]]  # BUG: the padding row gets a gradient
    x = x + self.drop1(self.attn(self.ln1(x)))
    x = x + self.drop2(self.fc2(jax.nn.gelu(self.fc1(self.ln2(x)), approximate=False)))
    return self.head(self.ln_f(x))


def test_a_tanh_gelu_is_found_between_the_two_layers_around_it():
    torch.manual_seed(0)
    r = compare(tb.TorchTransformerBlock(), _flax_block(call=_tanh_gelu_call), IDS)
    d = r.first_divergence
    # fc1 agrees, fc2's input does not: the cause is the code between them, where torch runs `act`
    assert where(r) == ("input", "act", None)
    assert d.before == "fc2" and "`fc1`" in d.after
    assert "GELU" in d.message


def test_a_layernorm_epsilon_is_found_at_that_layernorm_in_float64():
    torch.manual_seed(0)
    r = compare(tb.TorchTransformerBlock(), _flax_block(ln2_default_eps=True), IDS, dtype="float64")
    assert where(r) == ("output", "ln2", "ln2")
    assert "eps: torch 1e-05, Flax 1e-06" in r.first_divergence.message


def test_a_missing_padding_idx_is_found_in_the_embedding_gradient():
    torch.manual_seed(0)
    r = compare(tb.TorchTransformerBlock(), _flax_block(call=_no_padding_idx_call), IDS)
    assert where(r) == ("gradient", "embed", "embed")
    assert all(row.out.ok for row in r.rows if row.out is not None)  # every forward value agrees
    assert not r.param_grads["embed.weight"].ok and all(s.ok for k, s in r.param_grads.items()
                                                          if k != "embed.weight")


def test_a_dropout_rate_is_found_at_that_dropout_in_training_mode():
    torch.manual_seed(0)
    r = compare(tb.TorchTransformerBlock(), _flax_block(drop1_rate=0.2), IDS, train=True)
    assert where(r) == ("output", "drop1", "drop1")
    assert "dropout probability: torch 0.1, Flax 0.2" in r.first_divergence.message
