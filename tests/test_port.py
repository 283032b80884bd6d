"""`parity port` end to end: the files it writes, the weights' round trip, the proof, the command's exit
codes, and an incomplete port that says so. The generated source itself is tested in
tests/test_port_generate.py; here the question is whether what lands in the folder is what it claims."""
import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from parity.port import port
from parity.port import weights as port_weights
from parity.porting import PortingError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "resnet_block.py"


def _resnet_block():
    from parity.porting.load import load_module
    torch.manual_seed(0)
    return load_module(str(EXAMPLE)).torch_model()


X = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)


@pytest.fixture(scope="module")
def ported(tmp_path_factory):
    out = tmp_path_factory.mktemp("port")
    return port(_resnet_block(), (X,), out, steps=4, timing=True), out


def test_the_folder_holds_the_port_its_weights_and_its_proof(ported):
    r, out = ported
    assert r.complete and r.passed, r.summary()
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([r.file.name, "weights.safetensors", "load_weights.py", "PROOF.md", "proof.json"])
    imported = set()
    for node in ast.walk(ast.parse(r.file.read_text())):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module.split(".")[0])
    assert imported <= {"jax", "flax", "optax", "functools", "math", "typing", "__future__"}, imported
    proof = json.loads((out / "proof.json").read_text())
    assert proof["passed"] is True
    assert proof["proof"]["float32"]["rule"] == "scaled" and proof["proof"]["float64"]["passed"]
    assert proof["proof"]["training"]["passed"] and proof["proof"]["training"]["steps"] == 4
    md = (out / "PROOF.md").read_text()
    assert md.startswith("# Proof") and "**PROVEN.**" in md and "JAX jit step ÷ torch eager step" in md


def test_the_weights_file_loads_into_a_fresh_port_and_goes_back_to_torch_bit_for_bit(ported, tmp_path):
    r, out = ported
    import importlib.util

    from flax import nnx
    spec = importlib.util.spec_from_file_location("ported_block", r.file)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    loader_spec = importlib.util.spec_from_file_location("load_weights", out / "load_weights.py")
    loader = importlib.util.module_from_spec(loader_spec)
    loader_spec.loader.exec_module(loader)
    model = getattr(mod, r.root_class)(rngs=nnx.Rngs(1))  # other random weights than the file's
    loader.load_weights(model, str(out / "weights.safetensors"))
    torch_model = _resnet_block().eval()
    # the loaded port computes torch's outputs (eval mode: running statistics)
    model.eval()
    got = np.asarray(model(X.transpose(0, 2, 3, 1)))
    with torch.no_grad():
        want = torch_model.double()(torch.as_tensor(X, dtype=torch.float64)).numpy()
    got = got.transpose(0, 3, 1, 2) if got.ndim == 4 else got
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)  # float32 port against float64 torch
    # and back: every torch array bit-exact
    flat = port_weights.load(out / "weights.safetensors")
    _, pairing = port_weights.to_flax(_resnet_block(), model, (X,))
    rt = port_weights.round_trip(_resnet_block(), flat, pairing, model)
    assert rt["ok"] and not rt["mismatched"], rt
    assert rt["bit_exact"] == rt["arrays"] - len(rt["not_in_port"])


def test_a_call_that_cannot_be_ported_is_named_and_nothing_is_claimed(tmp_path):
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return torch.special.bessel_j0(self.fc(x))  # no mapping for it

    torch.manual_seed(0)
    r = port(Odd(), (np.ones((2, 4), np.float32),), tmp_path, steps=2)
    assert not r.complete and not r.passed
    assert any("bessel_j0" in p["what"] for p in r.problems), r.problems
    assert any("test_port.py" in p["where"] for p in r.problems), r.problems
    src = r.file.read_text()
    assert "NotImplementedError" in src and "INCOMPLETE" in src
    assert not (tmp_path / "weights.safetensors").exists()
    md = (tmp_path / "PROOF.md").read_text()
    assert "INCOMPLETE PORT" in md and "NOT PROVEN" in md


def test_bad_arguments_are_refused_by_name(tmp_path):
    with pytest.raises(PortingError, match="torch_model"):
        port("not a model", (X,), tmp_path)
    with pytest.raises(PortingError, match="steps"):
        port(_resnet_block(), (X,), tmp_path, steps=-1)
    with pytest.raises(PortingError, match=r"example_inputs\[0\]"):
        port(_resnet_block(), ("text",), tmp_path)


def _cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "parity.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


def test_the_command_ports_and_proves_with_exit_0(tmp_path):
    r = _cli("port", f"{EXAMPLE}:torch_model", "--input-shape", "2,3,8,8", "--out", str(tmp_path / "p"),
             "--steps", "2", "--no-timing")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PROVEN" in r.stdout and (tmp_path / "p" / "PROOF.md").exists()


@pytest.mark.parametrize("args, message", [
    (["--input-shape", "2,x"], "--input-shape"),
    (["--input-shape", "2,3,8,8", "--steps", "-1"], "--steps"),
    (["--input-shape", "2,3,8,8", "--input-int", "0"], "--input-int"),
])
def test_the_command_refuses_bad_input_with_exit_2(tmp_path, args, message):
    r = _cli("port", f"{EXAMPLE}:torch_model", *args, "--out", str(tmp_path / "p"))
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert not (tmp_path / "p").exists()


def test_an_embeddings_padding_row_gets_no_gradient_in_the_port_either(tmp_path):
    """torch's padding_idx row is never updated; nnx.Embed has no padding_idx, so the port stops that
    row's gradient at the call. Training on batches holding the padding id then agrees (without the
    stop, the Flax side moves row 0 at the first batch containing a 0)."""
    class Tagger(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(20, 8, padding_idx=0)
            self.out = nn.Linear(8, 3)

        def forward(self, ids):
            return self.out(self.embed(ids))

    torch.manual_seed(0)
    ids = np.random.default_rng(0).integers(0, 20, (4, 6))
    ids[0, 0] = 0
    r = port(Tagger(), (ids,), tmp_path, steps=6, timing=False)
    assert "jax.lax.stop_gradient" in r.file.read_text()
    assert r.passed, r.summary() + str(r.proof.get("training"))


def test_a_frozen_torch_parameter_is_no_nnx_param_and_training_leaves_it(tmp_path):
    """torch's requires_grad=False (Whisper's sinusoidal position table): the port holds it as a plain
    nnx.Variable, so the optax step, which moves Params only, leaves it as torch's optimiser does."""
    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.positions = nn.Embedding(6, 4)
            self.positions.requires_grad_(False)
            self.proj = nn.Linear(4, 4)

        def forward(self, x):
            return self.proj(x + self.positions(torch.arange(x.shape[1])))

    torch.manual_seed(0)
    r = port(Encoder(), (np.random.default_rng(0).standard_normal((2, 6, 4)).astype(np.float32),), tmp_path,
             steps=4, timing=False)
    assert "frozen(" in r.file.read_text()
    assert r.passed, r.summary() + str(r.proof.get("training"))
