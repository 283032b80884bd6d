"""torch.nn.Linear ⇄ nnx.Einsum: the kernel's axes read from the einsum string (parity/porting/
einsum_layout.py), exact both ways, and the comparer pairing the two."""
import numpy as np
import pytest
import torch
from flax import nnx

from parity.porting import compare, einsum_layout

CASES = [  # einsum string, kernel shape, bias shape, torch (in, out)
    ("btd,dnh->btnh", (6, 2, 3), (2, 3), (6, 6)),
    ("btd,nhd->btnh", (2, 3, 6), (2, 3), (6, 6)),  # output features before the contracted axis
    ("bti,io->bto", (5, 4), (4,), (5, 4)),
    ("...nh,nhd->...d", (2, 3, 4), (4,), (6, 4)),  # heads merged back (an attention output projection)
]


@pytest.mark.parametrize("spec, kshape, bshape, io", CASES, ids=[c[0] for c in CASES])
def test_the_conversion_is_exact_both_ways_and_computes_the_linear(spec, kshape, bshape, io):
    rng = np.random.default_rng(0)
    m = nnx.Einsum(spec, kshape, bshape, param_dtype=np.float64, rngs=nnx.Rngs(0))
    w = rng.standard_normal((io[1], io[0]))
    b = rng.standard_normal(io[1])
    k = einsum_layout.kernel_to_flax(w, m)
    assert k.shape == kshape
    np.testing.assert_array_equal(einsum_layout.kernel_to_torch(k, m), w)
    m.kernel.set_value(k)
    m.bias.set_value(einsum_layout.bias_to_flax(b, m))
    x_shape = (2, 3, 6) if spec.startswith("btd") else (2, 3, 5) if spec.startswith("bti") else (2, 3, 2, 3)
    x = rng.standard_normal(x_shape)
    got = np.asarray(m(x))
    want = x.reshape(2, 3, -1) @ w.T + b
    np.testing.assert_allclose(got.reshape(want.shape), want, rtol=1e-13, atol=1e-13)  # float64 rounding


@pytest.mark.parametrize("spec", ["bd,bd->b", "btd,tdo->bto", "bd,do->bo,x"])
def test_an_einsum_that_is_no_linear_is_refused(spec):
    with pytest.raises(einsum_layout.NotLinear):
        einsum_layout.axes(spec)


def test_the_comparer_pairs_a_torch_linear_with_an_nnx_einsum():
    class T(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv = torch.nn.Linear(6, 6)

        def forward(self, x):
            return self.qkv(x)

    class F(nnx.Module):
        def __init__(self, rngs):
            self.qkv = nnx.Einsum("btd,dnh->btnh", (6, 2, 3), (2, 3), rngs=rngs)

        def __call__(self, x):  # heads split by the Einsum, merged again as the model's output
            return self.qkv(x).reshape(*x.shape[:-1], -1)

    torch.manual_seed(0)
    x = np.random.default_rng(0).standard_normal((2, 3, 6))
    r = compare(T(), F(nnx.Rngs(0)), x, dtype="float64")
    assert r.passed, r.summary()
    assert set(r.param_grads) == {"qkv.weight", "qkv.bias"} and r.layers_compared == 1
