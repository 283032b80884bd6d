"""Tied weights in `parity port` (parity/port/ties.py): one torch module reachable at two paths (T5's
`shared` and `encoder.embed_tokens`) is one Flax module at both paths, paired by either name, trained
once; a Parameter shared by two different modules (an LM head tied to the embedding) is reported as
not ported. Expected values come from torch: its outputs, its summed gradient, its names."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from torch import nn

from parity.port import port, ties
from parity.port.generate import generate, load_generated
from parity.porting import pair_models

IDS = np.random.default_rng(0).integers(0, 11, (2, 5))


class Encoder(nn.Module):
    def __init__(self, embed_tokens):
        super().__init__()
        self.embed_tokens = embed_tokens
        self.lin = nn.Linear(8, 8)

    def forward(self, ids):
        return torch.tanh(self.lin(self.embed_tokens(ids)))


class SharedEmbedding(nn.Module):
    """T5's pattern: `shared` is also the encoder's `embed_tokens`; both uses feed the output. With
    `two_modules`, as transformers 5 ties T5: two nn.Embedding objects holding one Parameter."""

    def __init__(self, tie_head: bool = False, two_modules: bool = False):
        super().__init__()
        self.shared = nn.Embedding(11, 8)
        self.encoder = Encoder(nn.Embedding(11, 8) if two_modules else self.shared)
        if two_modules:
            self.encoder.embed_tokens.weight = self.shared.weight
        self.head = nn.Linear(8, 11, bias=False)
        if tie_head:
            self.head.weight = self.shared.weight

    def forward(self, ids):
        return self.head(self.encoder(ids) + self.shared(ids))


def _model(tie_head=False, two_modules=False):
    torch.manual_seed(0)
    return SharedEmbedding(tie_head, two_modules)


@pytest.fixture(scope="module")
def ported(tmp_path_factory):
    return port(_model(), (IDS,), tmp_path_factory.mktemp("tied"), steps=4, timing=False)


def test_a_module_at_two_paths_is_found_once_with_torch_name_first():
    m = _model()
    assert ties.module_ties(m) == [("shared", ["encoder.embed_tokens"])]
    assert ties.parameter_ties(m) == []
    assert ties.parameter_ties(_model(tie_head=True)) == [["shared.weight", "head.weight"]]


def test_modules_sharing_a_parameter_but_set_differently_are_not_merged():
    m = _model(two_modules=True)
    m.encoder.embed_tokens.padding_idx = 0  # another function of the same array
    assert ties.merge_alike(m) == []
    assert ties.merge_alike(_model(two_modules=True)) == [("shared", "encoder.embed_tokens")]


def test_attribute_source_follows_sequential_and_module_list():
    m = nn.Module()
    m.seq = nn.Sequential(nn.Linear(2, 2), nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 2)]))
    assert ties.attribute_source(m, "seq.1.0") == "self.seq.layers[1][0]"


def test_the_port_holds_one_module_at_both_paths():
    gen = generate(_model(), (torch.as_tensor(IDS),))
    assert gen.complete, gen.problems
    assert "self.encoder.embed_tokens = self.shared" in gen.source
    flax_model = eval(gen.build, vars(load_generated(gen)))  # the generated constructor
    assert flax_model.encoder.embed_tokens is flax_model.shared
    assert len(jax.tree.leaves(nnx.state(flax_model, nnx.Param))) == len(list(_model().parameters())) == 4


def test_the_tied_port_is_proven(ported):
    assert ported.complete and ported.passed, ported.summary()
    p = ported.proof
    assert p["float32"]["passed"] and p["training"]["passed"] and p["training"]["steps"] == 4
    assert p["float64"]["passed"] and p["float64"]["worst_layer"] <= 1e-10
    assert p["float64"]["worst_gradient"] <= 1e-10 and p["float64"]["gradients"] == 4  # torch's 4 parameters
    w = p["weights"]
    assert w["ok"] and w["bit_exact"] == w["arrays"] == 5 and not w["not_in_port"]  # both state-dict names


def test_pairing_by_name_through_the_alias_and_torch_summed_gradient():
    m = _model().double()
    gen = generate(_model(), (torch.as_tensor(IDS),))
    x64 = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        flax_model = eval(gen.build, vars(load_generated(gen)))  # the generated constructor
        nnx.update(flax_model, jax.tree.map(lambda a: a.astype(jnp.float64), nnx.state(flax_model, nnx.Param)))
        for _, layer in nnx.iter_modules(flax_model):  # computing in float64, as built in float64
            if getattr(layer, "dtype", None) is not None:
                layer.dtype = jnp.float64
        pairing = pair_models(m, flax_model, (IDS,))
        assert pairing.strategy == "by name"
        assert {p.torch.name: p.flax.name for p in pairing.pairs}["shared"] in ("shared", "encoder.embed_tokens")
        pairing.load_flax(flax_model, {k: v.detach().numpy() for k, v in m.state_dict().items()})
        ids = torch.as_tensor(IDS)
        out = m(ids)
        out.square().sum().backward()
        grads = nnx.grad(lambda f: jnp.sum(f(jnp.asarray(IDS)) ** 2))(flax_model)
        # float64 both: only the summation order of the matmuls differs (values of size ~1)
        np.testing.assert_allclose(np.asarray(flax_model(jnp.asarray(IDS))), out.detach().numpy(), rtol=0, atol=1e-12)
        # torch's one weight gets the gradient of both uses; so does the port's one array
        # NNX names the shared module by its first path in sorted attribute order
        np.testing.assert_allclose(np.asarray(grads.encoder.embed_tokens.embedding[...]), m.shared.weight.grad.numpy(),
                                   rtol=0, atol=1e-12)
    finally:
        jax.config.update("jax_enable_x64", x64)


def test_a_parameter_tied_across_two_layers_is_reported_not_ported():
    gen = generate(_model(tie_head=True), (torch.as_tensor(IDS),))
    assert not gen.complete
    assert any("tied parameter `shared.weight` = `head.weight`" in p.what for p in gen.problems)
    assert "raise NotImplementedError" in gen.source


def test_two_modules_sharing_their_parameter_are_ported_as_one_and_proven(tmp_path):
    m = _model(two_modules=True)
    assert m.shared is not m.encoder.embed_tokens
    assert ties.parameter_ties(m) == [["shared.weight", "encoder.embed_tokens.weight"]]
    r = port(m, (IDS,), tmp_path, steps=3, timing=False)
    assert m.shared is not m.encoder.embed_tokens  # the caller's model is left as it was
    assert r.complete and r.passed, r.summary()
    assert r.proof["float64"]["worst_layer"] <= 1e-10 and r.proof["float64"]["worst_gradient"] <= 1e-10
    assert "encoder.embed_tokens is shared" in (tmp_path / "PROOF.md").read_text()


def test_the_weights_file_loads_into_a_fresh_port_and_computes_torch_outputs(ported):
    import importlib.util

    def load(name, file):
        spec = importlib.util.spec_from_file_location(name, file)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    model = getattr(load("tied_port", ported.file), ported.root_class)(rngs=nnx.Rngs(1))
    load("load_weights", ported.out_dir / "load_weights.py").load_weights(
        model, str(ported.out_dir / "weights.safetensors"))
    assert model.encoder.embed_tokens is model.shared  # loading keeps the one module
    with torch.no_grad():
        want = _model()(torch.as_tensor(IDS)).numpy()
    # float32 on both sides: float32 rounding (6e-8 relative) of a few chained ops, far below a wrong or
    # untied weight, which differs by the weights' size (~1)
    np.testing.assert_allclose(np.asarray(model(jnp.asarray(IDS))), want, rtol=1e-5, atol=1e-6)


class Scale(nn.Module):
    """A layer of no kind: the port writes it with torch's parameter name (GeneratedPort.weights)."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.linspace(0.5, 1.5, 8))

    def forward(self, x):
        return x * self.weight


class TiedScale(nn.Module):
    def __init__(self):
        super().__init__()
        self.z_scale = Scale()
        self.block = nn.Sequential(nn.Linear(8, 8), self.z_scale)

    def forward(self, x):
        return self.z_scale(self.block(x))


def test_a_tied_layer_of_no_kind_is_mapped_at_the_path_nnx_names_it(tmp_path):
    torch.manual_seed(0)
    x = np.random.default_rng(1).standard_normal((3, 8)).astype(np.float32)
    gen = generate(TiedScale(), (torch.as_tensor(x),))
    assert gen.weights == {"z_scale.weight": "block.layers.1.weight"}  # NNX: `block` sorts before `z_scale`
    r = port(TiedScale(), (x,), tmp_path, steps=3, timing=False)
    assert r.passed, r.summary()
    assert r.proof["float64"]["worst_layer"] <= 1e-10 and r.proof["float64"]["worst_gradient"] <= 1e-10
