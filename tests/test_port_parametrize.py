"""Parametrised torch modules in `parity port` (parity/port/parametrized.py): a layer under
torch.nn.utils.parametrize (weight_norm as wav2vec2's positional convolution has it, or a user's own
parametrisation) holds the parametrisation's originals, not its weight; the port computes the weight
from them in its forward, holds them as Params under torch's names, and trains them as torch does.
Expected values come from torch (its functions, or the proof's torch runs), never from the port."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm

from parity.port import parametrized as P
from parity.port import port
from parity.port.generate import generate
from parity.porting import PortingError, compare, kinds

RNG = np.random.default_rng(0)


def _helper(name):
    env = {"jax": jax, "jnp": jnp}
    exec(P.HELPERS[name], env)  # noqa: S102 — the helper's source, as the port file holds it
    return env[name]


@pytest.mark.parametrize("shape,dim", [((8, 4, 5), 2), ((8, 4, 5), 0), ((8, 4, 5), 1), ((6, 3, 3, 3), -1),
                                       ((5, 7), 0)])
def test_the_weight_norm_helper_is_torchs_weight_norm_in_float64(shape, dim):
    """dim 0 and the last dim take torch's fused kernel, a middle dim its composite form; dim -1
    (weight_norm(dim=None)) is the norm over the whole tensor, not over the last axis."""
    v = torch.as_tensor(RNG.standard_normal(shape))
    g_shape = [1] * len(shape) if dim == -1 else [shape[d] if d == dim % len(shape) else 1 for d in range(len(shape))]
    g = torch.as_tensor(RNG.uniform(0.5, 2.0, g_shape))
    want = torch._weight_norm(v, g, dim).numpy()
    got = np.asarray(_helper("weight_norm")(jnp.asarray(v.numpy()), jnp.asarray(g.numpy()), dim))
    # float64 on both sides, only the order of the norm's sum differs: a few ulp of values below 10
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-13)


@pytest.mark.parametrize("fn,x_shape,w_shape,kw", [
    (F.conv1d, (2, 8, 11), (8, 4, 5), {"padding": 2, "groups": 2}),  # wav2vec2's: grouped, padded
    (F.conv1d, (2, 4, 13), (6, 4, 4), {"stride": 2}),
    (F.conv1d, (2, 4, 9), (4, 4, 4), {"padding": "same", "dilation": 3}),  # odd total: extra on the right
    (F.conv2d, (2, 3, 7, 6), (4, 3, 3, 2), {"padding": (1, 0), "stride": (2, 1), "dilation": (1, 2)}),
    (F.conv2d, (1, 2, 5, 5), (2, 2, 3, 3), {"padding": "valid"}),
])
def test_the_conv_helper_is_torchs_functional_conv_in_float64(fn, x_shape, w_shape, kw):
    x, w = torch.as_tensor(RNG.standard_normal(x_shape)), torch.as_tensor(RNG.standard_normal(w_shape))
    b = torch.as_tensor(RNG.standard_normal(w_shape[0]))
    want = fn(x, w, b, **kw).numpy()
    n = len(w_shape) - 2

    def tup(v):
        return tuple(v) if isinstance(v, tuple) else (v,) * n
    pad = kw.get("padding", 0)
    got = _helper("torch_conv")(jnp.asarray(x.numpy()), jnp.asarray(w.numpy()), jnp.asarray(b.numpy()),
                                tup(kw.get("stride", 1)), pad if isinstance(pad, str) else tup(pad),
                                tup(kw.get("dilation", 1)), kw.get("groups", 1))
    # float64 on both sides: the order of each output's sum of products (up to ~100 terms of size ~1)
    # differs between XLA and torch, ~100 · 2.2e-16 at most
    np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=1e-12)


class PositionalConv(nn.Module):
    """wav2vec2's positional convolution in small: weight_norm(dim=2) on a grouped, padded Conv1d."""

    def __init__(self):
        super().__init__()
        self.conv = weight_norm(nn.Conv1d(8, 8, 5, padding=2, groups=2), name="weight", dim=2)
        self.out = nn.Linear(8, 3)

    def forward(self, x):
        return self.out(F.gelu(self.conv(x)).transpose(1, 2))


def test_a_weight_normed_grouped_conv_ports_and_is_proven_with_g_and_v_trained(tmp_path):
    torch.manual_seed(0)
    model = PositionalConv()
    x = RNG.standard_normal((2, 8, 11)).astype(np.float32)
    gen = generate(model, torch.as_tensor(x))
    assert gen.complete, [p.line() for p in gen.problems]
    assert "self.parametrizations = nnx.Dict(" in gen.source and "weight_norm(" in gen.source
    assert {"conv.parametrizations.weight.original0", "conv.parametrizations.weight.original1",
            "conv.bias"} <= set(gen.weights)
    r = port(model, (x,), tmp_path, steps=20, timing=False)
    assert r.passed, r.summary()
    assert r.proof["float64"]["worst_layer"] <= 1e-10 and r.proof["float64"]["worst_gradient"] <= 1e-10
    assert r.proof["float64"]["gradients"] == 6  # g, v, the conv's bias, the Linear's two, the input
    assert r.proof["training"]["passed"] and r.proof["training"]["steps"] == 20
    assert r.proof["weights"]["ok"]


class Symmetric(nn.Module):
    """A user's parametrisation: the weight is the symmetric matrix made of the original's upper triangle."""

    def forward(self, X):
        return X.triu() + X.triu(1).transpose(-1, -2)


def test_a_users_own_parametrisation_inside_a_sequential_is_traced_and_proven(tmp_path):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            sym = nn.Linear(6, 6)
            parametrize.register_parametrization(sym, "weight", Symmetric())
            self.body = nn.Sequential(sym, nn.Tanh(), weight_norm(nn.Linear(6, 2)))

        def forward(self, x):
            return self.body(x)

    torch.manual_seed(0)
    r = port(Net(), (RNG.standard_normal((4, 6)).astype(np.float32),), tmp_path, steps=20, timing=False)
    assert r.passed, r.summary()
    src = r.file.read_text()
    assert "jnp.triu(self.parametrizations.weight.original[...]" in src


def test_a_parametrised_module_with_layers_of_its_own_keeps_them_layers(tmp_path):
    """weight_norm on a parameter of a module that also holds a Linear: the Linear stays a layer the
    comparer pairs; the originals are named in the weights mapping."""
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(5, 4))
            self.lin = nn.Linear(4, 4)

        def forward(self, x):
            return self.lin(x) @ self.w.T

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = weight_norm(Block(), name="w", dim=0)

        def forward(self, x):
            return self.block(x)

    torch.manual_seed(0)
    r = port(Net(), (RNG.standard_normal((3, 4)).astype(np.float32),), tmp_path, steps=20, timing=False)
    assert r.passed, r.summary()
    assert r.proof["float32"]["layers"] >= 1  # the Linear, compared as a layer


def test_a_parametrisation_holding_its_own_parameter_is_a_named_problem(tmp_path):
    class Scale(nn.Module):
        def __init__(self):
            super().__init__()
            self.s = nn.Parameter(torch.ones(()))

        def forward(self, X):
            return X * self.s

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 4)
            parametrize.register_parametrization(self.lin, "weight", Scale())

        def forward(self, x):
            return self.lin(x)

    gen = generate(Net(), torch.zeros(2, 4))
    assert not gen.complete
    assert any("holds arrays of its own (0.s)" in p.why for p in gen.problems), [p.line() for p in gen.problems]


def test_the_comparer_takes_a_parametrised_layer_for_no_kind_and_says_why():
    """Its arrays are the originals, not the conv kind's weight: no KeyError from the kind's
    conversion, but the refusal pairing gives any layer of no known kind, naming the originals."""
    from flax import nnx

    conv = weight_norm(nn.Conv1d(4, 4, 3, padding=1))
    assert kinds.torch_kind(conv) is None and kinds.torch_kind(nn.Conv1d(4, 4, 3)) == "conv"

    class Torch(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = conv

        def forward(self, x):
            return self.conv(x)

    class Flax(nnx.Module):
        def __init__(self, rngs):
            self.conv = nnx.Conv(4, 4, (3,), padding=((1, 1),), rngs=rngs)

        def __call__(self, x):
            return self.conv(x.transpose(0, 2, 1)).transpose(0, 2, 1)

    with pytest.raises(PortingError, match=r"parametrised \(torch.nn.utils.parametrize\): it holds "
                                           r"parametrizations.weight.original0, parametrizations.weight.original1"):
        compare(Torch(), Flax(nnx.Rngs(0)), RNG.standard_normal((2, 4, 9)).astype(np.float32))
