"""`parity port` where a module's forward reads a sub-module's parameter or buffer directly (a
`get_attr` on a dotted path: parity/port/attrs.py), and where transformers' `can_return_tuple` calls
`.to_tuple()` on what a call returned (a tuple already). Each port must be complete and prove
against torch with `parity.porting.compare` (which runs the torch model for the expected values):
float32 under the default rule, float64 with every layer and output within 1e-10."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from flax import nnx
from torch import nn

from parity.port.generate import generate, load_generated
from parity.porting import compare


def _prove(torch_model, x, name):
    port = generate(torch_model, x)
    assert port.complete, [p.line() for p in port.problems]
    mod = load_generated(port, f"port_attrs_{name}")
    flax_model = getattr(mod, port.root_class)(rngs=nnx.Rngs(0))
    for dtype in ("float64", "float32"):
        r = compare(torch_model, flax_model, x, dtype=dtype, weights=port.weights or "torch->flax")
        assert r.passed, r.summary() + "\n" + port.source
        if dtype == "float64":
            assert r.worst_layer_error() <= 1e-10, r.summary()
            assert max(s.max_abs for s in r.outputs) <= 1e-10, r.summary()
            grads = list(r.param_grads.values()) + list(r.input_grads.values())
            assert grads and max(s.max_abs for s in grads) <= 1e-10, r.summary()
    return port


# ---------------------------------------------------------------- a kind-less child's table and index
class BiasTable(nn.Module):
    """A learned table and a fixed index into it, as Swin's relative position bias holds them."""

    def __init__(self, rows=7, heads=2, n=4):
        super().__init__()
        self.table = nn.Parameter(torch.randn(rows, heads))
        self.register_buffer("index", torch.randint(0, rows, (n * n,), generator=torch.Generator().manual_seed(0)),
                             persistent=False)

    def forward(self):
        return self.table[self.index].view(4, 4, -1).permute(2, 0, 1)


class TableReader(nn.Module):
    """Reads its child's parameter and buffer itself (the child is also called, with no argument)."""

    def __init__(self):
        super().__init__()
        self.q = nn.Linear(8, 8)
        self.bias = BiasTable()

    def forward(self, x):  # x: (N, 4, 8)
        h = self.q(x).view(x.shape[0], 4, 2, 4).transpose(1, 2)
        scores = h @ h.transpose(-1, -2)
        bias = self.bias.table[self.bias.index].view(4, 4, -1).permute(2, 0, 1)
        return torch.softmax(scores + bias + self.bias(), dim=-1)


def test_a_childs_parameter_and_buffer_read_by_the_parent(tmp_path):
    torch.manual_seed(0)
    port = _prove(TableReader().eval(), torch.randn(2, 4, 8), "table")
    assert "self.bias.table[...][self.bias.index[...]]" in port.source


# ---------------------------------------------------------------- a kind layer's array, read for its dtype or as data
class DtypeOfConv(nn.Module):
    """Casts its input to a Conv2d's weight dtype before calling it (Dinov2's patch embedding)."""

    def __init__(self):
        super().__init__()
        self.projection = nn.Conv2d(3, 8, 4, stride=4)

    def forward(self, x):
        return self.projection(x.to(self.projection.weight.dtype)).flatten(2).transpose(1, 2)


def test_a_conv_weight_read_for_its_dtype_needs_no_transpose(tmp_path):
    torch.manual_seed(0)
    port = _prove(DtypeOfConv().eval(), torch.randn(2, 3, 8, 8), "dtype")
    assert "self.projection.kernel[...].dtype" in port.source
    assert "jnp.transpose(self.projection.kernel" not in port.source


class WeightsAsData(nn.Module):
    """Reads a Linear's, a Conv2d's and an Embedding's weights as arrays, in torch's layouts."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(6, 4)
        self.conv = nn.Conv2d(3, 6, (3, 2))
        self.emb = nn.Embedding(5, 6)

    def forward(self, x):  # x: (N, 6)
        tied = F.linear(x, self.proj.weight)  # (N, 4): torch's (out, in) weight
        per_out = self.conv.weight.sum(dim=(1, 2))  # (6, 2): O then kW
        rows = x @ self.emb.weight.T  # (N, 5)
        return torch.cat([tied, x @ per_out, rows, self.proj(x)], dim=-1)


def test_kind_layers_weights_read_as_data_in_torchs_layout(tmp_path):
    torch.manual_seed(0)
    m = WeightsAsData().eval()
    port = _prove(m, torch.randn(3, 6), "data")
    assert "self.proj.kernel[...].T" in port.source
    assert "jnp.transpose(self.conv.kernel[...], (3, 2, 0, 1))" in port.source


# ---------------------------------------------------------------- ModelOutput.to_tuple on a tuple
class Inner(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        return (self.lin(x), x.mean(-1))


class CanReturnTuple(nn.Module):
    """transformers' `can_return_tuple`: `.to_tuple()` unless the call returned a tuple, which the
    trace cannot see (the check runs on a proxy)."""

    def __init__(self):
        super().__init__()
        self.inner = Inner()

    def forward(self, x):
        out = self.inner(x)
        if not isinstance(out, tuple):
            out = out.to_tuple()
        return out[0] * 2 + out[1].unsqueeze(-1)


def test_to_tuple_on_a_tuple_keeps_the_tuple(tmp_path):
    torch.manual_seed(0)
    _prove(CanReturnTuple().eval(), torch.randn(2, 3, 4), "to_tuple")


# ---------------------------------------------------------------- torch.roll (Swin's shifted windows)
class Rolled(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(5, 5)

    def forward(self, x):  # x: (N, 4, 6, 5)
        shifted = torch.roll(self.lin(x), shifts=(-2, 1), dims=(1, 2))
        return shifted.roll(3) + torch.roll(x, 2, 1)  # the flattened tensor, then one dim


def test_roll_over_dims_and_flattened(tmp_path):
    torch.manual_seed(0)
    port = _prove(Rolled().eval(), torch.randn(2, 4, 6, 5), "roll")
    assert "jnp.roll(" in port.source


# ---------------------------------------------------------------- a Hugging Face model (tiny config)
def test_hf_dinov2_is_complete_and_proves():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.Dinov2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                                    image_size=16, patch_size=8, num_channels=3, attn_implementation="eager")
    torch.manual_seed(0)

    class First(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = transformers.Dinov2Model(cfg)

        def forward(self, x):
            return self.model(x)[0]

    x = torch.randn(2, 3, 16, 16)
    port = _prove(First().float().eval(), x, "dinov2")
    assert "self.projection.kernel[...].dtype" in port.source
