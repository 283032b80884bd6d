"""dtype behaviour is part of parity: for every op × input dtype both twins return the same result
dtype, or both refuse with the same DtypeError (a TypeError and a ValueError) naming the op, the
parameter and the dtype. torch 2.13's CPU kernels are the rule (shape_rules.dtypes); MATRIX pins what
was measured, and every refusal is checked against plain torch, which refuses too.

Values: the registry's concepts compare float16, bfloat16, integer, bool and complex results in the
dtypes each declares (parity/concepts/dtypes.py); the integer → float32 results are compared here.
"""
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from flax import nnx

import jax_impl as J
import torch_impl as T
from parity import bridge, registry, runner
from parity.concept import np_dtype
from parity.concepts.dtypes import VARIANTS
from parity.tolerances import HALF, lookup
from shape_rules.dtypes import DtypeError, promote_types, result_type

DTYPES = ("float16", "bfloat16", "int32", "int64", "bool", "complex64")
rng = np.random.default_rng(0)
X2, Y2, Z2 = rng.standard_normal((3, 4)), rng.standard_normal((4, 5)), rng.standard_normal((3, 4))
X4 = rng.standard_normal((2, 3, 4, 4))
W, B = rng.standard_normal((4, 1)), rng.standard_normal((1,))
LOGITS, LABELS = rng.standard_normal((4, 3)), np.array([0, 2, 1, 1])
MASK = rng.random((3, 4)) > 0.5


def _values(a, dt):
    """NumPy values for dtype `dt`: rounded for integers, a sign test for bool, a complex part added."""
    a = np.asarray(a)
    if dt == "bool":
        return a > 0
    if dt.startswith("complex"):
        return (a + 0.5j * (a[..., ::-1] if a.ndim else a)).astype(dt)
    if dt.startswith("uint"):
        return np.round(np.abs(a) * 2).astype(dt)
    if dt.startswith("int"):
        return np.round(a * 2).astype(dt)
    return a.astype(np.float32)  # float16/bfloat16: cast in the framework


class Side:
    """One twin: its package, dtypes, arrays (4-D ones in its own layout) and layer constructors."""

    def __init__(self, name):
        self.name, self.L = name, (J if name == "jax" else T)

    def dtype(self, dt):
        return getattr(jnp if self.name == "jax" else torch, dt)

    def arr(self, a, dt):
        v = _values(a, dt)
        if self.name == "jax":
            return jnp.asarray(v).astype(dt)
        return torch.tensor(v).to(self.dtype(dt))

    def arr4(self, a, dt):
        x = self.arr(a, dt)
        return x.transpose(0, 2, 3, 1) if self.name == "jax" else x

    def make(self, path, *args, **kw):
        module, cls = path.split(".")
        if self.name == "jax" and cls in ("Linear", "Conv2d"):
            kw["rngs"] = nnx.Rngs(0)
        if self.name == "jax" and cls == "Dropout" and kw.pop("draw", False):
            kw["rngs"] = nnx.Rngs(dropout=0)
        kw.pop("draw", None)
        if "dtype" in kw:
            kw["dtype"] = self.dtype(kw["dtype"])
        return getattr(getattr(self.L, module), cls)(*args, **kw)


def _bn(s, dt, layer, training):
    m = s.make("normalization.BatchNorm2d", 3, dtype=layer or dt)
    if not training:
        m.eval()
    y = m(s.arr4(X4, dt))
    stats = (m.mean[...], m.var[...]) if s.name == "jax" else (m.running_mean, m.running_var)
    return (y, *stats)


def _dropout(s, dt, p, training=True, mask=False, draw=False):
    m = s.make("layers.Dropout", p, draw=draw)
    if not training:
        m.eval()
    return m(s.arr(X2, dt), (jnp.asarray(MASK) if s.name == "jax" else torch.tensor(MASK)) if mask else None)


# case -> (twin call (side, dtype), plain torch's own op (dtype) or None where the twin is torch's own)
CASES = {
    "tensors.matmul": (lambda s, dt: s.L.tensors.matmul(s.arr(X2, dt), s.arr(Y2, dt)), None),
    "tensors.mm": (lambda s, dt: s.L.tensors.mm(s.arr(X2, dt), s.arr(Y2, dt)), None),
    "tensors.mul": (lambda s, dt: s.L.tensors.mul(s.arr(X2, dt), s.arr(Z2, dt)), None),
    "tensors.reshape": (lambda s, dt: s.L.tensors.reshape(s.arr(X2, dt), (-1,)), None),
    "tensors.flatten_batch": (lambda s, dt: s.L.tensors.flatten_batch(s.arr4(X4, dt)), None),
    "tensors.zeros": (lambda s, dt: s.L.tensors.zeros((2, 3), s.dtype(dt)), None),
    "tensors.ones": (lambda s, dt: s.L.tensors.ones((2, 3), s.dtype(dt)), None),
    "tensors.eye": (lambda s, dt: s.L.tensors.eye(3, s.dtype(dt)), None),
    "activations.relu": (lambda s, dt: s.L.activations.relu(s.arr(X2, dt)), None),
    "activations.sigmoid": (lambda s, dt: s.L.activations.sigmoid(s.arr(X2, dt)), None),
    "activations.log_sigmoid": (lambda s, dt: s.L.activations.log_sigmoid(s.arr(X2, dt)),
                                lambda t: F.logsigmoid(t.arr(X2, t.dt))),
    "activations.tanh": (lambda s, dt: s.L.activations.tanh(s.arr(X2, dt)), None),
    "activations.softmax": (lambda s, dt: s.L.activations.softmax(s.arr(X2, dt)),
                            lambda t: torch.softmax(t.arr(X2, t.dt), -1)),
    "activations.log_softmax": (lambda s, dt: s.L.activations.log_softmax(s.arr(X2, dt)),
                                lambda t: torch.log_softmax(t.arr(X2, t.dt), -1)),
    "activations.gelu": (lambda s, dt: s.L.activations.gelu(s.arr(X2, dt)), None),
    "activations.gelu(tanh)": (lambda s, dt: s.L.activations.gelu(s.arr(X2, dt), "tanh"), None),
    "layers.neuron": (lambda s, dt: s.L.layers.neuron(s.arr(X2, dt), s.arr(W, dt), s.arr(B, dt)), None),
    "layers.Linear(dtype=D)": (lambda s, dt: s.make("layers.Linear", 4, 2, dtype=dt)(s.arr(X2, dt)),
                               lambda t: torch.nn.Linear(4, 2, dtype=t.dtype(t.dt))(t.arr(X2, t.dt))),
    "layers.Linear(float32) on D": (lambda s, dt: s.make("layers.Linear", 4, 2)(s.arr(X2, dt)),
                                    lambda t: torch.nn.Linear(4, 2)(t.arr(X2, t.dt))),
    "layers.Flatten": (lambda s, dt: s.make("layers.Flatten")(s.arr4(X4, dt)), None),
    "layers.Dropout eval": (lambda s, dt: _dropout(s, dt, 0.5, training=False), None),
    "layers.Dropout p=0": (lambda s, dt: _dropout(s, dt, 0.0), None),
    "layers.Dropout p=1": (lambda s, dt: _dropout(s, dt, 1.0), None),
    "layers.Dropout p=0.5, mask": (lambda s, dt: _dropout(s, dt, 0.5, mask=True),
                                   lambda t: F.dropout(t.arr(X2, t.dt), 0.5, True)),
    "layers.Dropout p=0.5, drawn": (lambda s, dt: _dropout(s, dt, 0.5, draw=True), None),
    "conv.Conv2d(dtype=D)": (lambda s, dt: s.make("conv.Conv2d", 3, 2, 3, padding=1, dtype=dt)(s.arr4(X4, dt)),
                             lambda t: torch.nn.Conv2d(3, 2, 3, padding=1, dtype=t.dtype(t.dt))(t.arr(X4, t.dt))),
    "conv.Conv2d(float32) on D": (lambda s, dt: s.make("conv.Conv2d", 3, 2, 3, padding=1)(s.arr4(X4, dt)),
                                  lambda t: torch.nn.Conv2d(3, 2, 3, padding=1)(t.arr(X4, t.dt))),
    "pooling.MaxPool2d": (lambda s, dt: s.make("pooling.MaxPool2d", 3, 2, 1)(s.arr4(X4, dt)), None),
    "pooling.AvgPool2d": (lambda s, dt: s.make("pooling.AvgPool2d", 3, 2, 1)(s.arr4(X4, dt)), None),
    "pooling.AdaptiveAvgPool2d": (lambda s, dt: s.make("pooling.AdaptiveAvgPool2d", 3)(s.arr4(X4, dt)), None),
    "normalization.BatchNorm2d(dtype=D) train": (
        lambda s, dt: _bn(s, dt, None, True),
        lambda t: torch.nn.BatchNorm2d(3, dtype=t.dtype(t.dt))(t.arr(X4, t.dt))),
    "normalization.BatchNorm2d(dtype=D) eval": (lambda s, dt: _bn(s, dt, None, False), None),
    "normalization.BatchNorm2d(float32) on D, train": (lambda s, dt: _bn(s, dt, "float32", True), None),
    "normalization.BatchNorm2d(float32) on D, eval": (lambda s, dt: _bn(s, dt, "float32", False), None),
    "losses.mse_loss": (lambda s, dt: s.L.losses.mse_loss(s.arr(X2, dt), s.arr(Z2, dt)), None),
    "losses.mse_loss(none)": (lambda s, dt: s.L.losses.mse_loss(s.arr(X2, dt), s.arr(Z2, dt), "none"), None),
    "losses.cross_entropy, logits D": (
        lambda s, dt: s.L.losses.cross_entropy(s.arr(LOGITS, dt), s.arr(LABELS / 2, "int64")), None),
    "losses.cross_entropy, labels D": (  # LABELS / 2 rounds back to LABELS as integers
        lambda s, dt: s.L.losses.cross_entropy(s.arr(LOGITS, "float32"), s.arr(LABELS / 2, dt)),
        lambda t: F.cross_entropy(t.arr(LOGITS, "float32"), t.arr(LABELS / 2, t.dt))),
}

# What torch's twin returns (the dtype of each output) or "refuse", measured on torch 2.13, CPU.
# Where the twin is plain torch (None in CASES) this is torch's own behaviour; where torch's twin is
# written out (log_sigmoid, softmax, log_softmax) or adds a hook (Dropout's mask), it follows torch's own
# op: those refuse integers and complex (the written-out forms would have returned float32 or complex).
R = "refuse"
MATRIX = {
    #                                   float16    bfloat16    int32      int64      bool       complex64
    "tensors.matmul":                  ("float16", "bfloat16", "int32",   "int64",   R,         "complex64"),
    "tensors.mm":                      ("float16", "bfloat16", "int32",   "int64",   R,         "complex64"),
    "tensors.mul":                     ("float16", "bfloat16", "int32",   "int64",   "bool",    "complex64"),
    "tensors.reshape":                 ("float16", "bfloat16", "int32",   "int64",   "bool",    "complex64"),
    "tensors.flatten_batch":           ("float16", "bfloat16", "int32",   "int64",   "bool",    "complex64"),
    "tensors.zeros":                   ("float16", "bfloat16", "int32",   "int64",   "bool",    "complex64"),
    "tensors.ones":                    ("float16", "bfloat16", "int32",   "int64",   "bool",    "complex64"),
    "tensors.eye":                     ("float16", "bfloat16", "int32",   "int64",   "bool",    "complex64"),
    "activations.relu":                ("float16", "bfloat16", "int32",   "int64",   R,         R),
    "activations.sigmoid":             ("float16", "bfloat16", "float32", "float32", "float32", "complex64"),
    "activations.log_sigmoid":         ("float16", "bfloat16", R,         R,         R,         R),
    "activations.tanh":                ("float16", "bfloat16", "float32", "float32", "float32", "complex64"),
    "activations.softmax":             ("float16", "bfloat16", R,         R,         R,         R),
    "activations.log_softmax":         ("float16", "bfloat16", R,         R,         R,         R),
    "activations.gelu":                ("float16", "bfloat16", R,         R,         R,         R),
    "activations.gelu(tanh)":          ("float16", "bfloat16", R,         R,         R,         R),
    "layers.neuron":                   ("float16", "bfloat16", "float32", "float32", R,         "complex64"),
    "layers.Linear(dtype=D)":          ("float16", "bfloat16", R,         R,         R,         "complex64"),
    "layers.Linear(float32) on D":     (R,         R,          R,         R,         R,         R),
    "layers.Flatten":                  ("float16", "bfloat16", "int32",   "int64",   "bool",    "complex64"),
    "layers.Dropout eval":             ("float16", "bfloat16", "int32",   "int64",   "bool",    "complex64"),
    "layers.Dropout p=0":              ("float16", "bfloat16", "int32",   "int64",   "bool",    "complex64"),
    "layers.Dropout p=1":              ("float16", "bfloat16", "int32",   "int64",   "bool",    "complex64"),
    "layers.Dropout p=0.5, mask":      ("float16", "bfloat16", R,         R,         R,         R),
    "layers.Dropout p=0.5, drawn":     ("float16", "bfloat16", R,         R,         R,         R),
    "conv.Conv2d(dtype=D)":            ("float16", "bfloat16", R,         R,         R,         "complex64"),
    "conv.Conv2d(float32) on D":       (R,         R,          R,         R,         R,         R),
    "pooling.MaxPool2d":               ("float16", "bfloat16", "int32",   "int64",   R,         R),
    "pooling.AvgPool2d":               ("float16", "bfloat16", R,         "int64",   R,         R),
    "pooling.AdaptiveAvgPool2d":       ("float16", "bfloat16", R,         R,         R,         R),
    "normalization.BatchNorm2d(dtype=D) train": (("float16",) * 3, ("bfloat16",) * 3, R, R, R, R),
    "normalization.BatchNorm2d(dtype=D) eval": (("float16",) * 3, ("bfloat16",) * 3, R, R, R, R),
    "normalization.BatchNorm2d(float32) on D, train": (("float16", "float32", "float32"),
                                                       ("bfloat16", "float32", "float32"), R, R, R, R),
    "normalization.BatchNorm2d(float32) on D, eval": (("float16", "float32", "float32"),
                                                      ("bfloat16", "float32", "float32"), R, R, R, R),
    "losses.mse_loss":                 ("float16", "bfloat16", R,         R,         R,         R),
    "losses.mse_loss(none)":           ("float16", "bfloat16", R,         R,         R,         R),
    "losses.cross_entropy, logits D":  ("float16", "bfloat16", R,         R,         R,         R),
    "losses.cross_entropy, labels D":  (R,         R,          "float32", "float32", R,         R),
}
# Where the twins compute what plain torch refuses, by decision (the twins' rule, documented in
# shape_rules.dtypes): class indices of any integer width (torch's kernel wants int64 or uint8).
TWINS_ACCEPT = {("losses.cross_entropy, labels D", "int32")}

JAX, TORCH = Side("jax"), Side("torch")


def _run(fn):
    """('ok', dtype names) or ('refuse', the exception)."""
    try:
        out = fn()
    except (TypeError, ValueError, RuntimeError, NotImplementedError) as e:
        return R, e
    outs = out if isinstance(out, tuple) else (out,)
    return "ok", tuple(str(o.dtype).removeprefix("torch.") for o in outs)


def _expected(case, dt):
    want = MATRIX[case][DTYPES.index(dt)]
    return want if want == R else (want,) if isinstance(want, str) else tuple(want)


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("case", list(CASES))
def test_both_twins_compute_the_same_dtype_or_refuse_alike(case, dt):
    twin_call, _ = CASES[case]
    t_kind, t_res = _run(lambda: twin_call(TORCH, dt))
    j_kind, j_res = _run(lambda: twin_call(JAX, dt))
    want = _expected(case, dt)
    assert (t_res if t_kind == "ok" else R) == want, f"torch's twin: {t_res!r}, the matrix says {want!r}"
    if want == R:
        for side, kind, e in (("torch", t_kind, t_res), ("jax", j_kind, j_res)):
            assert kind == R, f"{side} computes what torch refuses: {e!r}"
            assert isinstance(e, DtypeError), f"{side}: {type(e).__name__}: {e}"
            assert isinstance(e, TypeError) and isinstance(e, ValueError)
            assert dt in str(e), f"{side}'s message does not name {dt}: {e}"
        assert str(j_res) == str(t_res), f"messages differ:\n jax:   {j_res}\n torch: {t_res}"
        assert str(t_res).split(":")[0] in case, f"the message does not name the op: {t_res}"
    else:
        assert j_kind == "ok", f"jax refuses what torch computes: {type(j_res).__name__}: {j_res}"
        assert j_res == t_res, f"result dtypes differ: jax {j_res}, torch {t_res}"


class _Plain:
    """Plain torch for the reference calls: the torch side with a fixed dtype."""

    def __init__(self, dt):
        self.dt = dt

    arr, dtype = TORCH.arr, TORCH.dtype


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("case", [c for c, (_, plain) in CASES.items() if plain is not None])
def test_every_refusal_is_torchs_own(case, dt):
    """Where torch's twin writes an op out or wraps it, plain torch's op decides: it refuses exactly
    where both twins refuse (bar the documented TWINS_ACCEPT)."""
    _, plain = CASES[case]
    kind, res = _run(lambda: plain(_Plain(dt)))
    want = R if _expected(case, dt) == R else "ok"
    if (case, dt) in TWINS_ACCEPT:
        assert kind == R, f"plain torch now accepts {dt} here: drop it from TWINS_ACCEPT"
    else:
        assert kind == want, f"plain torch: {res!r}; the twins: {want}"


# Mixed operand dtypes: torch's matmul family never mixes; mul and mse_loss promote by torch's rules.
MIXED = {
    "tensors.matmul": lambda s, a, b: s.L.tensors.matmul(s.arr(X2, a), s.arr(Y2, b)),
    "tensors.mm": lambda s, a, b: s.L.tensors.mm(s.arr(X2, a), s.arr(Y2, b)),
    "layers.neuron x, w": lambda s, a, b: s.L.layers.neuron(s.arr(X2, a), s.arr(W, b), s.arr(B, a)),
    "layers.neuron b": lambda s, a, b: s.L.layers.neuron(s.arr(X2, a), s.arr(W, a), s.arr(B, b)),
    "layers.neuron 0-d b": lambda s, a, b: s.L.layers.neuron(s.arr(X2, a), s.arr(W, a), s.arr(B[0], b)),
    "tensors.mul": lambda s, a, b: s.L.tensors.mul(s.arr(X2, a), s.arr(Z2, b)),
    "tensors.mul 0-d": lambda s, a, b: s.L.tensors.mul(s.arr(X2, a), s.arr(Z2[0, 0], b)),
    "losses.mse_loss": lambda s, a, b: s.L.losses.mse_loss(s.arr(X2, a), s.arr(Z2, b)),
}
PAIRS = [("float32", "float16"), ("float16", "float32"), ("float32", "float64"), ("float16", "bfloat16"),
         ("int32", "int64"), ("int32", "float32"), ("float32", "int64"), ("bool", "int32"),
         ("float32", "complex64"), ("float16", "complex64"), ("int64", "bool")]


@pytest.mark.parametrize("a,b", PAIRS, ids=[f"{a}-{b}" for a, b in PAIRS])
@pytest.mark.parametrize("case", list(MIXED))
def test_mixed_dtypes_promote_or_refuse_alike(case, a, b):
    t_kind, t_res = _run(lambda: MIXED[case](TORCH, a, b))
    j_kind, j_res = _run(lambda: MIXED[case](JAX, a, b))
    assert (j_kind, str(j_res)) == (t_kind, str(t_res)), f"jax {j_kind} {j_res}; torch {t_kind} {t_res}"
    if t_kind == R:
        assert isinstance(t_res, DtypeError) and (a in str(t_res) or b in str(t_res)), t_res


def test_python_scalars_promote_as_in_torch():
    """A Python float is float32 to torch (jnp under x64: float64); a Python complex is complex64."""
    for a, s in (("int32", 2), ("int32", 2.5), ("int64", 1.5j), ("float16", 2.5), ("bool", True), ("bool", 3)):
        t = T.tensors.mul(TORCH.arr(X2, a), s)
        j = J.tensors.mul(JAX.arr(X2, a), s)
        assert str(j.dtype) == str(t.dtype).removeprefix("torch."), (a, s, j.dtype, t.dtype)
    for side in (JAX, TORCH):
        with pytest.raises(DtypeError, match="complex32"):
            side.L.tensors.mul(side.arr(X2, "float16"), 1.5j)


def test_promotion_rules_match_torch():
    names = ["bool", "uint8", "int8", "int16", "int32", "int64", "float16", "bfloat16", "float32", "float64",
             "complex64", "complex128"]
    for a in names:
        for b in names:
            assert promote_types(a, b) == str(torch.promote_types(getattr(torch, a), getattr(torch, b)))[6:]
            for na, nb in ((1, 0), (0, 1), (0, 0), (1, 1)):
                want = str(torch.result_type(torch.zeros((2,) * na, dtype=getattr(torch, a)),
                                             torch.zeros((2,) * nb, dtype=getattr(torch, b))))[6:]
                if want == "complex32":
                    with pytest.raises(DtypeError):
                        result_type("op", (a, na, False), (b, nb, False))
                else:
                    assert result_type("op", (a, na, False), (b, nb, False)) == want, (a, na, b, nb)


# ---------------------------------------------------------------- values the registry cannot compare
@pytest.mark.parametrize("dt", ["int32", "int64", "uint8", "bool"])
@pytest.mark.parametrize("op", ["sigmoid", "tanh", "neuron"])
def test_integer_input_gives_float32_values(op, dt):
    """sigmoid and tanh of integers (and the neuron's integer x·w + b) are float32 values in both:
    not float64, as jnp would give for int64 under x64."""
    def call(s):
        if op == "neuron":
            return s.L.layers.neuron(s.arr(X2 / 2, dt), s.arr(W / 2, dt), s.arr(B / 2, dt))
        return getattr(s.L.activations, op)(s.arr(X2, dt))
    if op == "neuron" and dt == "bool":
        pytest.skip("bool has no matmul in torch: refused, checked above")
    j, t = np.asarray(call(JAX)), call(TORCH).numpy()
    c = runner.compare(j, t, lookup("float32", "cpu"), f"{op} {dt}", "out")
    assert c.ok, c.problem


def test_bfloat16_runs_are_registered_and_pass():
    """Every op the twins compute in float16 runs in bfloat16 too, as a row of its own concept (parity/bridge.py
    carries bfloat16 into torch through float32): bfloat16 arrays, outputs and gradients at bfloat16's
    tolerance, which the row shows."""
    f16 = {v.owner for v in VARIANTS if "float16" in v.dtypes}
    bf16 = {v.owner for v in VARIANTS if "bfloat16" in v.dtypes}
    assert bf16 and bf16 == f16
    for n in sorted(bf16):
        c = registry.get(n)
        assert "bfloat16" in c.dtypes
        samples = c.at("bfloat16").samples(np.random.default_rng(runner.SEED), np_dtype("bfloat16"))
        assert any(np.asarray(a).dtype == np_dtype("bfloat16") for s in samples for a in s.inputs.values()) \
            or n == "tensors.creation", n
        r = runner.run_concept(c, "bfloat16", "cpu")
        assert r.passed and r.n_out > 0 and r.dtype == "bfloat16", (n, r.failures)
        assert (r.rtol, r.atol) == (HALF["bfloat16"].rtol, HALF["bfloat16"].atol)


def test_the_bridge_carries_bfloat16_both_ways_exactly():
    bf = np.dtype(ml_dtypes.bfloat16)
    a = (np.arange(-8, 8, dtype=np.float32) * 0.3371).astype(bf)
    t = bridge.to_torch({"a": a}, requires_grad=True)["a"]
    assert t.dtype == torch.bfloat16 and t.requires_grad
    assert np.array_equal(t.detach().float().numpy(), a.astype(np.float32))
    back = bridge.to_numpy(t)
    assert back.dtype == bf and np.array_equal(back.astype(np.float32), a.astype(np.float32))


def test_compare_picks_the_half_tolerance_by_dtype():
    """float16 and bfloat16 arrays compare at their own entry, even in a float64 run."""
    f64 = lookup("float64", "cpu")
    b = np.array([1.0, 2.0], np.float16)
    a = b + np.float16(2 * 2.0 ** -11)  # one float16 ulp at 1 and at 2 (the second rounds back)
    assert runner.compare(a, b, f64, "s", "out").ok
    assert not runner.compare(b + np.float16(0.05), b, f64, "s", "out").ok
    bf = np.dtype(ml_dtypes.bfloat16)
    c = runner.compare(a.astype(bf), b.astype(bf), f64, "s", "out")
    assert c.ok and not c.exact  # NumPy's kind of bfloat16 is "V": compared as a float all the same
    assert HALF["float16"].rtol == 8 * 2.0 ** -11 and HALF["bfloat16"].rtol == 8 * 2.0 ** -8


# ---------------------------------------------------------------- x64
X64_OFF = """
import warnings, numpy as np, jax
import jax_impl as J
from flax import nnx
assert not jax.config.jax_enable_x64
calls = [lambda: J.activations.relu(np.ones(3, np.float32)), lambda: J.tensors.matmul(np.ones((2, 2)), np.ones((2, 2))),
         lambda: J.activations.relu(np.ones(3)), lambda: J.tensors.zeros((2,), "float64"),
         lambda: J.layers.Linear(2, 2, dtype="float64", rngs=nnx.Rngs(0))]
seen = []
for i, call in enumerate(calls):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        call()
    seen += [(i, str(x.message), x.filename) for x in w if "jax_enable_x64 is off" in str(x.message)]
print(repr(seen))
"""


def test_x64_off_warns_once_per_process():
    """With x64 off a float64 NumPy input (or dtype='float64') computes in float32: the JAX twin says so,
    once per process, naming the setting; float32 input does not warn."""
    r = subprocess.run([sys.executable, "-c", X64_OFF], capture_output=True, text=True, check=True,
                       env={"JAX_ENABLE_X64": "0", "PATH": ""}, cwd=Path(__file__).resolve().parents[1])
    seen = eval(r.stdout.strip().splitlines()[-1])  # noqa: S307  (our own repr of a list of tuples)
    assert [i for i, _, _ in seen] == [1], seen  # the first float64 call warns, and nothing after it
    _, message, filename = seen[0]
    assert message == ("jax_enable_x64 is off: float64 input computes in float32; enable it with "
                       "jax.config.update('jax_enable_x64', True)")
    assert filename == "<string>"  # points at the caller, not inside jax_impl


def test_x64_on_does_not_warn(recwarn):
    """parity.precision switches x64 on: float64 NumPy input is float64, and nothing warns."""
    assert jax.config.jax_enable_x64
    assert J.activations.relu(np.ones(3)).dtype == jnp.float64
    J.checks.check_x64(np.ones(3), dtype="float64")
    assert not [w for w in recwarn if "jax_enable_x64" in str(w.message)]
    assert T.checks.check_x64(np.ones(3), dtype="float64") is None and T.checks.x64_checked(len) is len
