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
sc = load_module(str(EXAMPLES / "small_cnn.py"))
RNG = np.random.default_rng(0)
IMAGES = RNG.standard_normal((4, 3, 16, 16)).astype(np.float32)


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
class _ValidConv2(rb.FlaxResNetBlock):
    def __init__(self, *, rngs):
        super().__init__(rngs=rngs)
        self.conv2 = nnx.Conv(32, 32, (3, 3), padding="VALID", use_bias=False, rngs=rngs)  # BUG: torch pads 1


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
class _TorchConvBn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.bn, self.fc = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.Linear(8 * 16 * 16, 5)

    def forward(self, x):
        return self.fc(torch.flatten(torch.relu(self.bn(self.conv(x))), 1))


class _FlaxConvBn(nnx.Module):
    """The same with the project's twins, whose BatchNorm2d takes torch's momentum and stores torch's
    unbiased running variance (jax_impl/normalization.py), or with stock nnx layers (`stock`)."""

    def __init__(self, momentum=0.1, stock=False, eps=1e-5, *, rngs):
        if stock:
            self.conv = nnx.Conv(3, 8, (3, 3), padding=((1, 1), (1, 1)), rngs=rngs)
            self.bn = nnx.BatchNorm(8, momentum=1 - momentum, epsilon=eps, use_fast_variance=False, rngs=rngs)
        else:
            self.conv = jax_impl.conv.Conv2d(3, 8, 3, padding=1, rngs=rngs)
            self.bn = jax_impl.normalization.BatchNorm2d(8, eps=eps, momentum=momentum)
        self.fc = nnx.Linear(8 * 16 * 16, 5, rngs=rngs)

    def __call__(self, x):
        return self.fc(jax.nn.relu(self.bn(self.conv(x))).reshape(x.shape[0], -1))


def _torch_conv_bn():
    torch.manual_seed(0)
    return rb.with_trained_statistics(_TorchConvBn())


def test_a_batchnorm_epsilon_is_found_at_that_batchnorm():
    r = compare(_torch_conv_bn(), flax(lambda: _FlaxConvBn(stock=True, eps=1e-3, rngs=nnx.Rngs(0))), IMAGES)
    assert where(r) == ("output", "bn", "bn")
    assert "eps: torch 1e-05, Flax 0.001" in r.first_divergence.message


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_training_mode_batchnorm_twins_agree_running_statistics_included(dtype):
    r = compare(_torch_conv_bn(), flax(lambda: _FlaxConvBn(rngs=nnx.Rngs(0))), IMAGES, train=True, dtype=dtype)
    assert r.passed, r.summary()
    bn_row = next(row for row in r.rows if row.torch and row.torch.name == "bn")
    assert bn_row.state is not None and bn_row.state.ok  # the running statistics were compared


def test_a_batchnorm_momentum_is_found_in_its_running_statistics():
    # BUG: Flax's meaning of momentum (0.9) given to a layer that takes torch's (0.1) (trap 11)
    r = compare(_torch_conv_bn(), flax(lambda: _FlaxConvBn(0.9, rngs=nnx.Rngs(0))), IMAGES, train=True)
    assert where(r) == ("running statistics", "bn", "bn")
    assert r.rows[r.first_divergence.row].out.ok  # the normalised output itself agrees


def test_stock_nnx_batchnorm_keeps_a_biased_running_variance():
    """Not a planted bug: nnx.BatchNorm stores the biased variance (trap 12), which float64 sees after
    one training-mode pass; its normalised output agrees."""
    r = compare(_torch_conv_bn(), flax(lambda: _FlaxConvBn(stock=True, rngs=nnx.Rngs(0))), IMAGES, train=True,
                dtype="float64")
    assert where(r) == ("running statistics", "bn", "bn")
    assert "trap 12" in r.first_divergence.message
    assert r.rows[r.first_divergence.row].out.ok


def test_an_accepted_known_difference_is_measured_and_listed_and_the_rest_still_judged():
    """accept=["batchnorm_biased_variance"]: stock nnx.BatchNorm's running variance is measured and
    listed, not failed; its running mean, outputs and gradients are still judged, so a planted
    momentum (which moves the mean too) still fails."""
    r = compare(_torch_conv_bn(), flax(lambda: _FlaxConvBn(stock=True, rngs=nnx.Rngs(0))), IMAGES, train=True,
                dtype="float64", accept=["batchnorm_biased_variance"])
    assert r.passed, r.summary()
    (a,) = r.accepted
    assert (a["difference"], a["torch"], a["array"]) == ("batchnorm_biased_variance", "bn", "running_var")
    assert a["max_rel"] > 1e-5 and not a["within_tolerance"]  # measured 6.6e-5 (n/(n−1), n = 1024): real
    assert any(n.startswith("accepted batchnorm_biased_variance at torch `bn`") for n in r.notes)
    bad = compare(_torch_conv_bn(), flax(lambda: _FlaxConvBn(0.9, stock=True, rngs=nnx.Rngs(0))), IMAGES,
                  train=True, dtype="float64", accept=["batchnorm_biased_variance"])
    assert where(bad) == ("running statistics", "bn", "bn")
    with pytest.raises(PortingError, match="no known difference 'bn_variance'; known: batchnorm_biased_variance"):
        compare(_torch_conv_bn(), flax(lambda: _FlaxConvBn(rngs=nnx.Rngs(0))), IMAGES, accept=["bn_variance"])


# ---------------------------------------------------------------- activations, LayerNorm, Embedding, Dropout
class _TorchMLP(nn.Module):
    """Embedding → LayerNorm → Linear → GELU → Dropout → Linear, the MLP half of the transformer example."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(20, 16, padding_idx=0)
        self.ln = nn.LayerNorm(16)
        self.fc1, self.act, self.drop, self.fc2 = nn.Linear(16, 32), nn.GELU(), nn.Dropout(0.1), nn.Linear(32, 16)

    def forward(self, ids):
        return self.fc2(self.drop(self.act(self.fc1(self.ln(self.embed(ids))))))


class _FlaxMLP(nnx.Module):
    def __init__(self, ln_eps=1e-5, rate=0.1, tanh_gelu=False, padding_idx=True, *, rngs):
        self.embed = nnx.Embed(20, 16, rngs=rngs)
        self.ln = nnx.LayerNorm(16, epsilon=ln_eps, rngs=rngs)
        self.fc1, self.drop, self.fc2 = nnx.Linear(16, 32, rngs=rngs), nnx.Dropout(rate), nnx.Linear(32, 16, rngs=rngs)
        self.tanh_gelu, self.padding_idx = tanh_gelu, padding_idx

    def __call__(self, ids):
        e = self.embed(ids)
        if self.padding_idx:  # torch's padding_idx: no gradient into the padding row
            e = jnp.where((ids == 0)[..., None], jax.lax.stop_gradient(e), e)
        return self.fc2(self.drop(jax.nn.gelu(self.fc1(self.ln(e)), approximate=self.tanh_gelu)))


MLP_IDS = RNG.integers(1, 20, (4, 8))
MLP_IDS[:, -2:] = 0


def _torch_mlp():
    torch.manual_seed(0)
    return _TorchMLP()


@pytest.mark.parametrize("train", [False, True])
def test_the_small_mlp_port_agrees(train):
    r = compare(_torch_mlp(), flax(lambda: _FlaxMLP(rngs=nnx.Rngs(0))), MLP_IDS, train=train, dtype="float64")
    assert r.passed, r.summary()


def test_a_tanh_gelu_is_found_between_the_two_layers_around_it():
    # BUG: jax.nn.gelu's default tanh approximation, where torch's nn.GELU is exact (trap 15)
    r = compare(_torch_mlp(), flax(lambda: _FlaxMLP(tanh_gelu=True, rngs=nnx.Rngs(0))), MLP_IDS)
    d = r.first_divergence
    # fc1 agrees, the input of the next paired layer (the Dropout, the identity in eval mode) does
    # not: the cause is the code between them, where torch runs one layer, `act`, and Flax none
    assert where(r) == ("input", "act", None)
    assert d.before == "drop" and "`fc1`" in d.after
    assert "`act` (GELU" in d.message and "Flax runs no layer there" in d.message


def test_a_layernorm_epsilon_is_found_at_that_layernorm_in_float64():
    # BUG: nnx.LayerNorm's default epsilon 1e-6, torch's 1e-5 (trap 14)
    r = compare(_torch_mlp(), flax(lambda: _FlaxMLP(ln_eps=1e-6, rngs=nnx.Rngs(0))), MLP_IDS, dtype="float64")
    assert where(r) == ("output", "ln", "ln")
    assert "eps: torch 1e-05, Flax 1e-06" in r.first_divergence.message


def test_a_missing_padding_idx_is_found_in_the_embedding_gradient():
    # BUG: the padding row gets a gradient in Flax, never in torch
    r = compare(_torch_mlp(), flax(lambda: _FlaxMLP(padding_idx=False, rngs=nnx.Rngs(0))), MLP_IDS)
    assert where(r) == ("gradient", "embed", "embed")
    assert all(row.out.ok for row in r.rows if row.out is not None)  # every forward value agrees
    assert [k for k, s in r.param_grads.items() if not s.ok] == ["embed.weight"]


def test_a_dropout_rate_is_found_at_that_dropout_in_training_mode():
    # BUG: another rate than torch's; the masks are shared, the survivors' scale differs
    r = compare(_torch_mlp(), flax(lambda: _FlaxMLP(rate=0.2, rngs=nnx.Rngs(0))), MLP_IDS, train=True)
    assert where(r) == ("output", "drop", "drop")
    assert "dropout probability: torch 0.1, Flax 0.2" in r.first_divergence.message


def test_assert_models_close_raises_with_the_summary_for_a_test_suite():
    from parity.porting import assert_models_close
    report = assert_models_close(_torch_mlp(), flax(lambda: _FlaxMLP(rngs=nnx.Rngs(0))), MLP_IDS)
    assert report.passed
    with pytest.raises(AssertionError) as e:
        assert_models_close(_torch_mlp(), flax(lambda: _FlaxMLP(ln_eps=1e-6, rngs=nnx.Rngs(0))), MLP_IDS,
                            dtype="float64")
    assert "DIFFERENT — the output of torch `ln`" in str(e.value)
    assert "row 2: torch `ln` ⇄ Flax `ln`" in str(e.value)


def test_a_port_computing_float64_in_a_float32_run_fails_the_scaled_rule_too():
    """A Flax model that promotes to float64 (a dtype-less jnp.ones with x64 on, as in nnx.avg_pool(count_include_pad=False)) gives float32 values
    rounded from float64: close enough for the scaled rule, but not the computation torch ran. The
    dtype mismatch fails the comparison (it passed before, its error shown as inf)."""
    class TorchScale(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 4)

        def forward(self, x):
            return self.lin(x) * 0.5

    class FlaxScale(nnx.Module):
        def __init__(self, rngs=nnx.Rngs(0)):
            self.lin = nnx.Linear(4, 4, rngs=rngs)

        def __call__(self, x):
            return self.lin(x) * (jnp.ones(x.shape[:-1] + (4,)) * 0.5)  # float64 under x64 (not weakly typed)

    x = RNG.standard_normal((3, 4)).astype(np.float32)
    r = compare(TorchScale(), FlaxScale(), x, dtype="float32")
    assert not r.passed, r.summary()
    assert any("dtype mismatch: jax float64 vs torch float32" in s.problem for s in r.outputs), r.outputs
