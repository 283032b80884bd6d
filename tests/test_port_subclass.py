"""`parity port` on subclasses of a layer kind's torch class whose own forward computes something else
(parity/port/subclass.py): a channels-first LayerNorm, a learned positional embedding that takes the
attention mask, a scaled word embedding with a padding row. Such an instance is traced into, its
parameters keep torch's names and are listed in the port's weights mapping, so the comparer pairs
them by name and not as the parent kind; an override that computes the parent's value on the call
stays the kind's Flax layer. Every expected value is torch's: `compare` runs the torch model and
judges the port against it (float64 within 1e-10, float32 by the scaled rule, every gradient)."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from flax import nnx
from test_port_generate import check_source
from torch import nn

from parity.port.generate import generate, load_generated
from parity.porting import compare

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class FormatLayerNorm(nn.LayerNorm):
    """ConvNeXt's pattern: a LayerNorm over channels, which sit second with data_format="channels_first"."""

    def __init__(self, n, data_format="channels_last"):
        super().__init__(n, eps=1e-6)
        self.data_format = data_format

    def forward(self, x):
        if self.data_format == "channels_first":
            return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return super().forward(x)


class ConvNeXtish(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 2, stride=2)
        self.norm_cf = FormatLayerNorm(8, "channels_first")
        self.norm_cl = FormatLayerNorm(8)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        h = self.norm_cf(self.stem(x))
        h = self.norm_cl(h.permute(0, 2, 3, 1))
        return self.head(h.mean(dim=(1, 2)))


class OffsetPositions(nn.Embedding):
    """OPT's pattern: positions from the attention mask's cumulative sum, looked up 2 rows further on."""

    def __init__(self, n, dim):
        self.offset = 2
        super().__init__(n + self.offset, dim)

    def forward(self, attention_mask, cache_length: int = 0):
        positions = (torch.cumsum(attention_mask, dim=1) * attention_mask - 1).long()[:, cache_length:]
        return super().forward(positions + self.offset)


class ScaledEmbedding(nn.Embedding):
    """Gemma's pattern: the looked-up rows scaled by a constant buffer; row 0 is padding."""

    def __init__(self, n, dim, scale):
        super().__init__(n, dim, padding_idx=0)
        self.scale = nn.Buffer(torch.tensor(scale), persistent=False)

    def forward(self, ids):
        return super().forward(ids) * self.scale.to(self.weight.dtype)


class Decoderish(nn.Module):
    def __init__(self):
        super().__init__()
        self.tokens = ScaledEmbedding(20, 8, 8 ** 0.5)
        self.positions = OffsetPositions(16, 8)
        self.norm = nn.LayerNorm(8)
        self.out = nn.Linear(8, 3)

    def forward(self, ids):
        mask = (ids != 0).long()
        return self.out(self.norm(self.tokens(ids) + self.positions(mask, cache_length=0)))


class PlainOverride(nn.LayerNorm):
    """An override that computes LayerNorm's own function: still a LayerNorm."""

    def forward(self, x):
        return super().forward(x)


def _port(model, x):
    port = generate(model, x)
    assert port.complete, [p.line() for p in port.problems]
    flax_model = eval(port.build, load_generated(port, "port_subclass").__dict__)
    assert isinstance(flax_model, nnx.Module)
    return port, flax_model


def _proves(model, flax_model, x, port, float32_softmax=False):
    """`float32_softmax`: the model's own code takes softmax in float32 (Hugging Face's eager attention), so
    float64 gradients carry float32 rounding through it and are held to the float64 rule, not to 1e-10."""
    for dtype in ("float64", "float32"):
        r = compare(model, flax_model, x, dtype=dtype, weights=port.weights or "torch->flax")
        assert r.passed, r.summary() + "\n" + port.source
        if dtype == "float64":
            worst = max([row.out.max_abs for row in r.rows if row.out is not None] + [s.max_abs for s in r.outputs]
                        + ([] if float32_softmax else [s.max_abs for s in r.param_grads.values()]))
            assert worst <= 1e-10, r.summary()
            assert set(r.param_grads) >= set(port.weights)  # the traced layers' gradients were compared too
    return r


def _compared_as_kind(report, name) -> bool:
    return any(row.torch is not None and row.torch.name == name and row.compared for row in report.rows)


def test_channels_first_layernorm_is_traced_and_channels_last_stays_a_layernorm(tmp_path):
    torch.manual_seed(0)
    model = ConvNeXtish().eval()
    with torch.no_grad():  # weights off their initial ones and biases, so that a dropped one shows
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    # 12×12 images: a 6×6 map (a 4×4 one, whose 4 divides the head's 8 inputs, makes the comparer take the
    # head for a Linear reading a flattened map, parity/porting/pairing.py `_flatten_of`, and permute its rows)
    x = np.random.default_rng(0).standard_normal((2, 3, 12, 12)).astype(np.float32)
    port, flax_model = _port(model, x)
    check_source(port, tmp_path)
    assert port.weights == {"norm_cf.weight": "norm_cf.weight", "norm_cf.bias": "norm_cf.bias"}
    assert "nnx.LayerNorm(" in port.source  # norm_cl: LayerNorm's function on its call, the kind's layer
    assert isinstance(flax_model.norm_cl, nnx.LayerNorm) and not isinstance(flax_model.norm_cf, nnx.LayerNorm)
    r = _proves(model, flax_model, x, port)
    assert not _compared_as_kind(r, "norm_cf") and _compared_as_kind(r, "norm_cl")


def test_positional_and_scaled_embeddings_are_traced(tmp_path):
    torch.manual_seed(0)
    model = Decoderish().eval()
    ids = np.array([[3, 5, 7, 0, 0], [1, 2, 0, 4, 9]])  # padding (0) included: its row gets no gradient
    port, flax_model = _port(model, ids)
    check_source(port, tmp_path)
    assert set(port.weights) == {"tokens.weight", "positions.weight"}
    assert "nnx.Embed(" not in port.source
    r = _proves(model, flax_model, ids, port)
    assert not _compared_as_kind(r, "tokens") and not _compared_as_kind(r, "positions")


def test_padding_row_gets_no_gradient_through_functional_embedding():
    """F.embedding(..., padding_idx=) in a kind-less forward: torch never updates the padding row;
    the port's row 1 gradient is zero as torch's is (compare checks every parameter gradient)."""

    class Lookup(nn.Module):
        def __init__(self):
            super().__init__()
            self.table = nn.Parameter(torch.randn(6, 4))

        def forward(self, ids):
            return F.embedding(ids, self.table, padding_idx=-5) * 2.0

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.lookup = Lookup()
            self.out = nn.Linear(4, 2)

        def forward(self, ids):
            return self.out(self.lookup(ids))

    torch.manual_seed(0)
    model = Net().eval()
    ids = np.array([[1, 2, 1, 5], [0, 1, 3, 4]])
    port, flax_model = _port(model, ids)
    assert "== 1)" in port.source  # padding_idx=-5 of 6 rows is row 1
    _proves(model, flax_model, ids, port)
    with torch.no_grad():
        model.out.weight.add_(1.0)
    model.zero_grad()
    model(torch.as_tensor(ids)).sum().backward()
    assert torch.count_nonzero(model.lookup.table.grad[1]) == 0  # what the port must reproduce


def test_an_override_computing_the_parents_function_stays_the_kind():
    torch.manual_seed(0)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.norm, self.b = nn.Linear(4, 6), PlainOverride(6), nn.Linear(6, 2)

        def forward(self, x):
            return self.b(self.norm(self.a(x)))

    model = Net().eval()
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    port, flax_model = _port(model, x)
    assert port.weights == {} and "nnx.LayerNorm(" in port.source
    _proves(model, flax_model, x, port)


@pytest.mark.slow
def test_hugging_face_opt_ports_and_proves():
    """OPT's learned positional embedding (an nn.Embedding taking the attention mask), tiny config. Its
    float64 gradients reach 5.7e-9 through the attention's softmax(dtype=torch.float32); with that cast
    removed from the torch code (and so from the port) they measured 5.3e-15."""
    pytest.importorskip("transformers")
    import importlib.util
    import sys
    path = os.path.join(ROOT, "examples", "transformers_zoo.py")
    spec = importlib.util.spec_from_file_location("_port_subclass_zoo", path)
    zoo = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = zoo  # dataclasses look their module up there
    spec.loader.exec_module(zoo)
    model, inputs = zoo.ARCHITECTURES["opt"].build()
    x = inputs[0].numpy()
    port, flax_model = _port(model, x)
    assert any("embed_positions" in k for k in port.weights)
    _proves(model, flax_model, x, port, float32_softmax=True)
