"""`parity.compare` on the example ports in examples/: each pair agrees in float32 and float64, layer
by layer, in outputs and in every gradient; the example with a deliberate porting bug is caught at
exactly the layer it was planted in; the report's table and JSON say so."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from flax import nnx
from rich.console import Console

from parity.porting import compare
from parity.porting.core import EVAL_NOTE
from parity.porting.load import abstract_model, load_target
from parity.tolerances import lookup

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
DTYPES = ("float32", "float64")


def load(spec: str):
    return load_target(f"{EXAMPLES / spec}")


def flax(make):
    """A Flax model built abstractly (no random initialiser runs): its weights come from torch."""
    model = abstract_model(make)
    assert model is not None
    return model


def token_ids(rng, n=4, t=16, vocab=50, pad=3):
    """Token ids with the last `pad` positions of every row padding (id 0), as a padded batch has."""
    ids = rng.integers(1, vocab, (n, t))
    ids[:, t - pad:] = 0
    return ids


def build(name: str):
    """(torch model, Flax model, inputs, layers compared) of one example; torch's init seeded."""
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    if name == "resnet":
        return (load("resnet_block.py:torch_model")(),
                flax(lambda: load("resnet_block.py:flax_model")(rngs=nnx.Rngs(0))),
                rng.standard_normal((4, 3, 16, 16)).astype(np.float32), 9)
    if name == "transformer":
        return (load("transformer_block.py:TorchTransformerBlock")(),
                flax(lambda: load("transformer_block.py:FlaxTransformerBlock")(rngs=nnx.Rngs(0))), token_ids(rng), 13)
    if name == "cnn":
        return (load("small_cnn.py:torch_model")(), flax(lambda: load("small_cnn.py:flax_model")(rngs=nnx.Rngs(0))),
                rng.standard_normal((8, 1, 8, 8)).astype(np.float32), 7)
    raise KeyError(name)


@pytest.fixture(scope="module")
def reports():
    out = {}
    for name in ("resnet", "transformer", "cnn"):
        t, f, x, n_layers = build(name)
        for dtype in DTYPES:
            out[name, dtype] = (compare(t, f, x, dtype=dtype), n_layers, [k for k, _ in t.named_parameters()])
    return out


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["resnet", "transformer", "cnn"])
def test_every_example_pair_computes_the_same(reports, name, dtype):
    r, n_layers, param_names = reports[name, dtype]
    assert r.passed, r.summary()
    assert r.layers_compared == n_layers
    tol = lookup(dtype, "cpu", "strict")
    assert r.tolerance == tol
    assert r.worst_layer_error() <= tol.atol  # every layer output, not only the last
    assert len(r.param_grads) > 0 and all(s.ok for s in r.param_grads.values())
    assert set(r.param_grads) == set(param_names)  # every parameter's gradient was compared


def test_reports_say_which_mode_and_layout_rule_ran(reports):
    r = reports["resnet", "float32"][0]
    assert EVAL_NOTE in r.notes and not r.train
    assert "input 0 (4, 3, 16, 16): NCHW → NHWC for Flax" in r.notes
    assert r.input_grads["input 0"].ok  # the input gradient came back to NCHW and agrees
    r = reports["transformer", "float32"][0]
    assert "input 0 (4, 16) int64: as given to both" in r.notes
    assert not r.input_grads  # token ids have no gradient
    assert any("padding_idx=0" in n for n in r.notes)  # the trap is named, and the port handles it


def test_pairing_strategies_and_the_flatten_rows(reports):
    assert reports["resnet", "float32"][0].pairing["strategy"] == "by execution order"  # names differ
    assert reports["cnn", "float32"][0].pairing["strategy"] == "by name"
    fc1 = next(p for p in reports["cnn", "float32"][0].pairing["layers"] if p["torch"] == "fc1")
    assert fc1["flatten_chw"] == [32, 4, 1]  # 32 maps of 2×2, rows reordered (docs/traps.md, trap 4)
    cnn = reports["cnn", "float32"][0]
    pool_rows = [r for r in cnn.rows if r.torch and r.torch.name == "pool"]
    assert [r.call for r in pool_rows] == [0, 1]  # one module called twice: one row per call
    assert all(r.out.ok for r in pool_rows)


@pytest.fixture(scope="module")
def buggy():
    torch.manual_seed(0)
    t = load("resnet_block.py:torch_model")()
    f = flax(lambda: load("resnet_block_buggy.py:flax_model")(rngs=nnx.Rngs(0)))
    x = np.random.default_rng(0).standard_normal((4, 3, 16, 16)).astype(np.float32)
    return compare(t, f, x)


def test_the_example_with_a_porting_bug_is_caught_at_that_layer(buggy):
    d = buggy.first_divergence
    assert not buggy.passed
    assert (d.what, d.torch.name, d.flax.name) == ("output", "conv1", "conv1")
    assert d.flax.defined.startswith("examples/resnet_block_buggy.py:") or "resnet_block_buggy.py:" in d.flax.defined
    assert "padding (low, high) per axis: torch ((1, 1), (1, 1)), Flax padding='SAME', i.e. ((0, 1), (0, 1))" \
        in d.message
    row = buggy.rows[d.row]
    assert row.inp.ok and not row.out.ok  # its input agrees: the layer itself parts
    earlier = [r for r in buggy.rows[:d.row] if r.out is not None]
    assert earlier and all(r.out.ok for r in earlier)


def test_table_highlights_the_first_divergence_and_json_is_strict(buggy, tmp_path):
    console = Console(record=True, width=220)
    console.print(buggy.table())
    text = console.export_text()
    line = next(ln for ln in text.splitlines() if "FIRST DIVERGENCE" in ln)
    assert "conv1 (Conv2d)" in line and "conv1 (Conv)" in line
    path = tmp_path / "report.json"
    buggy.write_json(path)

    def no_constants(name):
        raise AssertionError(f"non-standard JSON constant {name}")
    data = json.loads(path.read_text(), parse_constant=no_constants)
    assert data["passed"] is False
    assert data["first_divergence"]["torch"]["name"] == "conv1"
    assert len(data["rows"]) == len(buggy.rows)
