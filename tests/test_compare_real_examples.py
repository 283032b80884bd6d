"""`parity.compare` on the real-model-style examples (examples/unet_decoder.py, audio_conv1d.py,
gpt_block.py, resnet50.py: transformers' own ResNetModel at depth 50, vit.py: nn.MultiheadAttention ⇄
nnx.MultiHeadAttention with a class token and position embedding outside any layer, and
lstm_tagger.py: a bidirectional nn.LSTM ⇄ nnx.Bidirectional): each correct port agrees
in float64 and in float32 (the scaled rule) with every parametrised layer paired, and each planted
porting bug is named in float64 at the layer it was planted in, on both sides, with the Flax layer's
line in the example; those large enough for float32 are named there too. Run with -s to see rows, the worst layer output
error and the wall time of each comparison (printed, never asserted)."""
import contextlib
import os
import time
from pathlib import Path

import pytest
import torch
from flax import nnx

from parity.porting import compare, kinds
from parity.porting.load import abstract_model, load_target
from parity.tolerances import lookup

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
DTYPES = ("float64", "float32")

# example → (layout of its Flax model's inputs, (what, torch layer, Flax layer) of the planted bug,
#            text the divergence message must carry)
CASES = {
    "unet_decoder": ("nhwc", ("output", "blocks.0.up", "blocks.0.up"),
                     "padding: torch padding=(1, 1), output_padding=(1, 1) is Flax padding=((1, 2), (1, 2)), "
                     "given 'SAME'"),
    "audio_conv1d": ("nchw", ("output", "conv_layers.0.activation", "conv_layers.0.activation"), "its input agrees"),
    "gpt_block": ("nhwc", ("output", "layers.1.mlp_norm", "layers.1.mlp_norm"), "eps: torch 1e-06, Flax 1e-05"),
    "resnet50": ("nhwc", ("output", "encoder.stages.2.layers.3.layer.1.normalization",
                          "encoder.stages.2.layers.3.layer.1.normalization"), "eps: torch 1e-05, Flax 0.001"),
    "vit": ("nhwc", ("output", "blocks.1.mlp.act", "blocks.1.mlp.act"), "its input agrees"),
    "lstm_tagger": ("nhwc", ("output", "lstm", "lstm"),
                    "nnx.Bidirectional merge_fn=backward_first: torch concatenates [forward, backward]"),
}
# bugs large enough for float32: GPT's RMSNorm epsilon 1e-5 for 1e-6 moves its output by about 4e-6
# relative, within float32 rounding of a two-block model, and is left to float64; the ViT's tanh GELU
# (2.4e-4 max abs) and the tagger's merge order (0.67) are far beyond float32's
FLOAT32_BUGS = ("unet_decoder", "audio_conv1d", "resnet50", "vit", "lstm_tagger")
# parameters outside any layer (paired by name, copied unchanged) each example has; none where not named
LOOSE = {"vit": {"cls_token", "pos_embed"}}

NAMES = list(CASES)


@contextlib.contextmanager
def _in_root():
    """Source locations are reported relative to the working directory: make it the repository's."""
    before = os.getcwd()
    os.chdir(ROOT)
    try:
        yield
    finally:
        os.chdir(before)


def _parametrised_layers(model: torch.nn.Module) -> int:
    """torch's layers with parameters, as pairing sees them: modules of a known kind, not counting those
    inside another (nn.MultiheadAttention's out_proj is the attention layer's). A module holding
    parameters of its own and of no kind (a ViT's class token) is no layer: its parameters are loose."""
    layers = [n for n, m in model.named_modules() if kinds.torch_kind(m) is not None]
    inside = {n for n in layers if any(n.startswith(o + ".") for o in layers if o)}
    return sum(next(m.parameters(recurse=False), None) is not None
               for n, m in model.named_modules() if n in set(layers) - inside)


def _loose(model: torch.nn.Module) -> set:
    """torch's parameters held outside any layer of a known kind."""
    layers = [n for n, m in model.named_modules() if kinds.torch_kind(m) is not None]
    return {p for p, _ in model.named_parameters() if not any(p.startswith(n + ".") for n in layers)}


_CACHE: dict = {}


def run(name: str, dtype: str, buggy: bool = False, rule: str | None = None):
    """(report, torch model, wall seconds) of one comparison, computed once per session."""
    key = (name, dtype, buggy, rule)
    if key not in _CACHE:
        layout = CASES[name][0]
        torch_model = load_target(f"{EXAMPLES / name}.py:torch_model")()
        make = load_target(f"{EXAMPLES / name}.py:flax_model")
        flax_model = abstract_model(lambda: make(buggy, rngs=nnx.Rngs(0)))  # its weights come from torch
        assert flax_model is not None
        x = load_target(f"{EXAMPLES / name}.py:example_input")()
        with _in_root():
            t0 = time.perf_counter()
            report = compare(torch_model, flax_model, x, dtype=dtype, layout=layout, rule=rule)
            seconds = time.perf_counter() - t0
        print(f"\n{name}{' (buggy)' if buggy else ''} {dtype}: {len(report.rows)} rows, "
              f"{len(report.pairing['layers'])} parametrised layers paired, worst layer output max abs "
              f"{report.worst_layer_error():.3g}, {seconds:.2f} s wall")
        _CACHE[key] = (report, torch_model, seconds)
    return _CACHE[key]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES)
def test_the_correct_port_computes_the_same(name, dtype):
    report, torch_model, _ = run(name, dtype)
    assert report.passed, report.summary()
    assert report.tolerance == lookup(dtype, "cpu", "strict")
    assert len(report.pairing["layers"]) == _parametrised_layers(torch_model)
    assert set(report.param_grads) == {k for k, _ in torch_model.named_parameters()}  # every gradient compared
    loose = {p["torch"]: tuple(p["flax"]) for p in report.pairing["loose_parameters"]}
    assert set(loose) == _loose(torch_model) == LOOSE.get(name, set())
    assert all(f == (t,) for t, f in loose.items())  # paired by name, the same on both sides


# every bug in float64; in float32 those of FLOAT32_BUGS (the others are of float32 rounding's size)
BUG_CASES = [(n, d) for n in NAMES for d in DTYPES if d == "float64" or n in FLOAT32_BUGS]


@pytest.mark.parametrize("name, dtype", BUG_CASES)
def test_the_planted_bug_is_named_where_it_was_planted(name, dtype):
    report, _, _ = run(name, dtype, buggy=True)
    assert not report.passed
    d = report.first_divergence
    what, torch_name, flax_name = CASES[name][1]
    assert (d.what, d.torch.name, d.flax.name) == (what, torch_name, flax_name), report.summary()
    assert d.flax.defined.startswith(f"examples/{name}.py:"), d.flax.defined
    line = int(d.flax.defined.rsplit(":", 1)[1])
    attr = flax_name.rsplit(".", 1)[-1]  # a top-level layer has no dot
    assert f"self.{attr} =" in (EXAMPLES / f"{name}.py").read_text().splitlines()[line - 1]
    assert CASES[name][2] in d.message, d.message
    row = report.rows[d.row]
    assert row.inp.ok and not row.out.ok  # the layer itself parts: its input agrees
    assert all(r.out.ok for r in report.rows[:d.row] if r.out is not None)


def test_resnet50_float32_passes_the_scaled_rule_where_a_fixed_atol_is_a_coin_toss():
    """At depth 50 both sides' float32 rounding grows to the size of a fixed atol of 1e-5 at BatchNorms
    deep inside, though the port is correct (float64 agrees to 2e-14): the fixed rule's verdict is
    chance; the scaled rule (no worse than torch's own float32, parity/porting/verdict.py) passes it,
    with margin."""
    fixed, _, _ = run("resnet50", "float32", rule="fixed")
    scaled, _, _ = run("resnet50", "float32")
    # float32 rounding alone reaches the fixed atol's size (measured 1.1e-5 to 1.4e-5 against 1e-5, so the
    # fixed rule fails or passes this correct port by chance), while float64 agrees to 2e-14
    assert fixed.worst_layer_error() > 0.5 * fixed.tolerance.atol, fixed.summary()
    assert scaled.passed and scaled.rule == "scaled", scaled.summary()
    usage = max(sc.port_err / sc.bound for sc in scaled.scaled_verdicts())
    print(f"\nresnet50 float32: fixed rule {'passes' if fixed.passed else 'fails'}; scaled rule passes, "
          f"worst tensor at {usage:.2f} of its bound, at most {scaled.worst_ratio():.3g}× torch's own error")
    assert usage < 1
