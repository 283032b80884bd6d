"""A model that casts to float32 itself (Hugging Face's RMSNorm and softmax upcasts) hides a port's
errors from a float64 comparison: both sides round to float32 at the casts. parity/port/widen.py widens
those casts on both sides for the float64 check. Shown here: the casts' rounding as written, its absence
widened, and a planted porting error that only the widened check can tell from rounding."""
import numpy as np
import pytest
import torch
from flax import nnx  # noqa: F401 — the generated constructor call names nnx
from torch import nn

from parity.port import widen
from parity.port.generate import GeneratedPort, generate, load_generated
from parity.porting import compare


class UpcastNorm(nn.Module):
    """Hugging Face's RMSNorm: computed in float32 whatever the input's dtype."""

    def __init__(self, d):
        super().__init__()
        self.weight = nn.Parameter(torch.linspace(0.5, 1.5, d))
        self.eps = 1e-6

    def forward(self, h):
        dt = h.dtype
        h32 = h.to(torch.float32)
        var = h32.pow(2).mean(-1, keepdim=True)
        return self.weight * (h32 * torch.rsqrt(var + self.eps)).to(dt)


class UpcastAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(8, 8)
        self.norm = UpcastNorm(8)

    def forward(self, x):
        x = self.lin(x)
        a = torch.softmax(x @ x.transpose(-1, -2), dim=-1, dtype=torch.float32).to(x.dtype)
        return self.norm(a @ x)


X = np.random.default_rng(0).standard_normal((2, 5, 8)).astype(np.float32)


def _ported(source_edit=None):
    torch.manual_seed(0)
    model = UpcastAttention().eval()
    port = generate(model, X)
    assert port.complete, [p.line() for p in port.problems]
    if source_edit:
        port = GeneratedPort(**{**vars(port), "source": source_edit(port.source)})
    module = load_generated(port, "port_upcast")
    return model, eval(port.build, vars(module)), module, port


def _worst64(model, flax_model, module, widened: bool, weights):
    """The float64 comparison's worst output error, and how many torch calls were widened."""
    if not widened:
        r = compare(model, flax_model, X, dtype="float64", weights=weights)
        return max(s.max_abs for s in r.outputs), 0
    with widen.float32_as_float64(module) as casts:
        r = compare(model, flax_model, X, dtype="float64", weights=weights)
    return max(s.max_abs for s in r.outputs), casts.widened


def test_the_models_own_float32_casts_limit_float64_as_written_and_not_widened():
    model, flax_model, module, port = _ported()
    as_written, _ = _worst64(model, flax_model, module, False, port.weights)
    widened, casts = _worst64(model, flax_model, module, True, port.weights)
    assert as_written > 1e-10, as_written  # float32 rounding at the casts (torch's and XLA's float32 ops differ)
    assert widened <= 1e-13, widened       # float64 throughout: float64 rounding (2^-52 ≈ 2.2e-16) only
    assert casts > 0  # the norm's .to(torch.float32) and the softmax's dtype=, in each forward the comparer runs


def test_a_planted_port_error_below_float32_rounding_shows_only_widened():
    """eps 1e-6 written as 1.1e-6. Measured: as written, the wrong port's float64 output error is 8.7e-7
    and the right port's 1.8e-7 (float32 rounding at the casts): no float64 bar separates them; widened,
    the right port is at 8.9e-16 and the wrong one at 8.3e-7."""
    model, flax_model, module, port = _ported(lambda s: s.replace("+ 1e-06", "+ 1.1e-06"))
    assert "1.1e-06" in port.source
    right = _ported()
    as_written, _ = _worst64(model, flax_model, module, False, port.weights)
    right_as_written, _ = _worst64(right[0], right[1], right[2], False, right[3].weights)
    widened, _ = _worst64(model, flax_model, module, True, port.weights)
    # as written, the wrong port and the right one are within float32 rounding of each other ...
    assert as_written < 10 * right_as_written, (as_written, right_as_written)
    # ... widened, the wrong one is a thousand times beyond float64's 1e-10 bar
    assert widened > 1e-10, widened


def test_the_widening_is_undone_on_exit_even_after_an_error():
    _, _, module, _ = _ported()
    jnp_before, default = module.jnp, torch.get_default_dtype()
    with pytest.raises(RuntimeError, match="inside"):
        with widen.float32_as_float64(module):
            assert torch.ones(1).to(torch.float32).dtype == torch.float64
            assert module.jnp.float32 is module.jnp.float64
            raise RuntimeError("inside")
    assert module.jnp is jnp_before and torch.get_default_dtype() is default
    assert torch.ones(1).to(torch.float32).dtype == torch.float32


def test_a_module_whose_jnp_is_not_jax_numpy_is_refused_by_name():
    import types
    not_a_port = types.ModuleType("not_a_port")
    not_a_port.jnp = np
    with pytest.raises(ValueError, match="port_module"), widen.float32_as_float64(not_a_port):
        pass


def test_a_port_of_layers_only_widens_torch_alone():
    """A port that calls no jnp function (its file imports no jax.numpy) is widened on torch's side."""
    import types
    with widen.float32_as_float64(types.ModuleType("layers_only")) as casts:
        assert torch.ones(2).float().dtype == torch.float64
    assert casts.widened == 1 and torch.ones(2).float().dtype == torch.float32
