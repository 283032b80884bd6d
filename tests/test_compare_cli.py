"""`parity compare FILE.py:TORCH FILE.py:FLAX`: exit 0 when the port computes the same thing, 1 when
it does not (naming the first divergent layer), 2 for bad input (one line, no traceback)."""
import json
from pathlib import Path

import pytest

from parity.cli import main

ROOT = Path(__file__).resolve().parents[1]
EX = ROOT / "examples"
CNN = [f"{EX}/small_cnn.py:torch_model", f"{EX}/small_cnn.py:flax_model", "--input-shape", "8,1,8,8"]


def test_a_port_that_agrees_exits_0_and_writes_json(tmp_path, capsys):
    path = tmp_path / "out" / "compare.json"
    assert main(["compare", *CNN, "--dtype", "float64", "--steps", "2", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "flax_model(rngs=nnx.Rngs(0))" in out  # the factory takes rngs: said, and given
    assert "built abstractly" in out
    assert "conv1 (Conv2d)" in out and "SAME — 7 layers" in out
    assert "2 steps, float64" in out  # --steps: the training comparison ran too
    data = json.loads(path.read_text())
    assert data["passed"] is True and [r["dtype"] for r in data["compare"]] == ["float64"]
    assert data["compare"][0]["layers_compared"] == 7 and data["training"][0]["steps"] == 2
    assert not list(path.parent.glob(".*.tmp"))


def test_the_buggy_example_exits_1_naming_conv1(capsys):
    code = main(["compare", f"{EX}/resnet_block.py:torch_model", f"{EX}/resnet_block_buggy.py:flax_model",
                 "--input-shape", "2,3,16,16"])
    out = capsys.readouterr().out
    assert code == 1
    line = next(ln for ln in out.splitlines() if "FIRST DIVERGENCE" in ln)
    assert "conv1 (Conv2d)" in line and "conv1 (Conv)" in line
    assert "DIFFERENT — the output of torch `conv1`" in out


@pytest.mark.parametrize("argv, text", [
    (["compare", f"{EX}/nope.py:A", f"{EX}/small_cnn.py:flax_model", "--input-shape", "1,1,8,8"], "no such file"),
    (["compare", f"{EX}/small_cnn.py:Nope", f"{EX}/small_cnn.py:flax_model", "--input-shape", "1,1,8,8"],
     "no 'Nope' in it (defined there: flax_model, torch_model)"),
    (["compare", f"{EX}/small_cnn.py", f"{EX}/small_cnn.py:flax_model", "--input-shape", "1,1,8,8"],
     "expected FILE.py:NAME"),
    ([*CNN[:2], "--input-shape", "8,x,8"], "--input-shape '8,x,8': expected comma-separated positive integers"),
    ([*CNN[:2], "--input-shape", "8,8,8"], "the torch model failed on inputs of shape (8, 8, 8)"),
    ([f"{EX}/resnet_block.py:torch_model", f"{EX}/small_cnn.py:flax_model", "--input-shape", "2,3,8,8"],
     "the Flax model failed"),
    ([*CNN, "--args", "[1]"], "--args: expected a JSON object"),
    ([*CNN, "--args", '{"hidden": 5}'], "unexpected keyword argument 'hidden'"),
])
def test_bad_input_exits_2_with_one_line(argv, text, capsys):
    argv = argv if argv[0] == "compare" else ["compare", *argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert text in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_layers_that_cannot_be_paired_exit_2(tmp_path, capsys):
    a = tmp_path / "a.py"
    a.write_text("import torch\nfrom torch import nn\n"
                 "def model():\n    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))\n")
    b = tmp_path / "b.py"
    b.write_text("from flax import nnx\n"
                 "class One(nnx.Module):\n"
                 "    def __init__(self, *, rngs):\n        self.fc = nnx.Linear(4, 2, rngs=rngs)\n"
                 "    def __call__(self, x):\n        return self.fc(x)\n")
    assert main(["compare", f"{a}:model", f"{b}:One", "--input-shape", "5,4"]) == 2
    err = capsys.readouterr().err
    assert "cannot pair the layers" in err and len(err.strip().splitlines()) == 1
