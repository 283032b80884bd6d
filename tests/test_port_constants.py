"""A torch buffer in the port: a formula where one makes it bit for bit (a causal mask, position ids,
a filled table), the values written out where none does, and a named problem for a large array no
formula makes. Expected values are torch's buffers themselves."""
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx  # noqa: F401 — the generated constructor call names nnx
from torch import nn

from parity.port.constants import LITERAL_LIMIT, array_source
from parity.port.generate import generate, load_generated
from parity.porting import compare


@pytest.mark.parametrize("arr", [
    np.tril(np.ones((1, 1, 300, 300), bool)),        # GPT-Neo's causal mask: 90,000 values, one line
    np.triu(np.ones((7, 7), np.float32)),
    np.tril(np.ones((1, 1, 64, 64), bool)) ^ np.tril(np.ones((1, 1, 64, 64), bool), -8),  # GPT-Neo's local window
    np.tril(np.ones((6, 9), np.float32), 2),
    np.arange(512, dtype=np.int64).reshape(1, 512),  # Hugging Face's position_ids buffer
    np.full((4, 3), -1e9, np.float32),
    np.zeros((2, 2), np.int32),
    np.array([0.5, -0.0, np.nan, -np.inf], np.float32),  # written out, non-finite values included
])
def test_every_source_remakes_the_array_bit_for_bit(arr):
    dt = {np.dtype(bool): "jnp.bool_", np.dtype(np.float32): "jnp.float32", np.dtype(np.int64): "jnp.int64",
          np.dtype(np.int32): "jnp.int32"}[arr.dtype]
    src = array_source(arr, dt)
    assert len(src) < 200
    got = np.asarray(eval(src, {"jnp": jnp}))
    assert got.dtype == arr.dtype and got.shape == arr.shape
    np.testing.assert_array_equal(got, arr)  # NaN equal to NaN; -0.0 kept by the literal


def test_a_large_array_no_formula_makes_is_refused():
    arr = np.random.default_rng(0).standard_normal(LITERAL_LIMIT + 1).astype(np.float32)
    assert array_source(arr, "jnp.float32") is None


class CausalMix(nn.Module):
    """GPT-Neo's pattern: a causal mask far larger than the sequence, sliced to it."""

    def __init__(self, max_pos=256):
        super().__init__()
        self.lin = nn.Linear(8, 8)
        self.register_buffer("bias", torch.tril(torch.ones(max_pos, max_pos, dtype=torch.bool)).view(
            1, max_pos, max_pos), persistent=False)
        self.register_buffer("position_ids", torch.arange(max_pos).expand((1, -1)), persistent=False)

    def forward(self, x):
        n = x.shape[1]
        s = self.lin(x) @ x.transpose(-1, -2)
        s = torch.where(self.bias[:, :n, :n], s, torch.tensor(-1e9, dtype=s.dtype))
        return torch.softmax(s, -1) @ x + self.position_ids[:, :n, None]


def test_a_model_with_a_large_causal_mask_ports_in_a_few_lines_and_computes_the_same():
    torch.manual_seed(0)
    model = CausalMix().eval()
    x = np.random.default_rng(0).standard_normal((2, 6, 8)).astype(np.float32)
    port = generate(model, x)
    assert port.complete, [p.line() for p in port.problems]
    assert "jnp.tril(jnp.ones((1, 256, 256), dtype=jnp.bool_))" in port.source
    assert "jnp.arange(256, dtype=jnp.int64).reshape((1, 256))" in port.source
    assert port.source.count("\n") < 80
    flax_model = eval(port.build, vars(load_generated(port, "port_causal_mix")))
    for dtype in ("float64", "float32"):
        r = compare(model, flax_model, x, dtype=dtype)
        assert r.passed, r.summary()
