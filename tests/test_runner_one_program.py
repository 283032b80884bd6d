"""The runner compiles one XLA program per concept (every sample side by side) and falls back to one
program per sample where that cannot be; both give the same comparisons."""
import jax
import jax.monitoring
import numpy as np
import pytest

from parity import registry, runner
from parity.concept import Concept, Sample

_compiles = {"on": False, "n": 0}


def _count(event: str, seconds: float, **_) -> None:
    if _compiles["on"] and event == "/jax/core/compile/backend_compile_duration":
        _compiles["n"] += 1


jax.monitoring.register_event_duration_secs_listener(_count)  # stays registered: counts only when on


def _compiles_during(fn):
    _compiles.update(on=True, n=0)
    try:
        out = fn()
    finally:
        _compiles["on"] = False
    return out, _compiles["n"]


def test_a_concept_compiles_one_program_for_all_its_samples():
    c = registry.get("activations.softmax")
    n = len(c.samples(np.random.default_rng(runner.SEED), np.dtype("float32")))
    assert n > 3
    one, k_one = _compiles_during(lambda: runner.run_concept(c, "float32"))
    each, k_each = _compiles_during(lambda: runner.run_concept(c, "float32", batch=False))
    assert one.passed and each.passed
    assert [(x["sample"], x["what"], x["ok"]) for x in one.comparisons] == \
           [(x["sample"], x["what"], x["ok"]) for x in each.comparisons]
    assert k_one == 1, f"{k_one} programs compiled for {n} samples"
    assert k_each == n  # the per-sample path: one program (outputs and gradients) per sample


# XLA fuses a sample differently when it sits beside others: measured on every float32 concept,
# 1260 of 1302 output and gradient tensors are bitwise equal and the rest differ by at most 2 float32
# ulps of the tensor's largest value (1.4e-7 relative). 4 ulps bound it with room, far below any
# parity tolerance (1e-5 and up).
ULPS = 4


@pytest.mark.parametrize("name", ["losses.cross_entropy", "layers.batchnorm2d", "layers.conv2d",
                                  "activations.log_softmax"])
def test_one_program_gives_the_numbers_of_one_program_per_sample(name):
    c = registry.get(name)
    samples = c.samples(np.random.default_rng(runner.SEED), np.dtype("float32"))
    torch_runs = [runner.run_torch(c, s, "cpu", ct_seed=runner.SEED + i) for i, s in enumerate(samples)]
    together = runner._jax_all_samples(c, samples, [r[2] for r in torch_runs], "cpu")
    assert together is not None and len(together) == len(samples)
    for s, (t_out, t_grads, cts), (outs, grads) in zip(samples, torch_runs, together):
        alone_outs, alone_grads = runner.run_jax(c, s, "cpu", cts)
        assert set(grads) == set(alone_grads) == set(t_grads)
        pairs = list(zip(outs, alone_outs)) + [(grads[k], alone_grads[k]) for k in alone_grads]
        for got, want in pairs:
            got, want = np.asarray(got), np.asarray(want)
            assert got.shape == want.shape and got.dtype == want.dtype
            if want.dtype.kind != "f":
                np.testing.assert_array_equal(got, want)
                continue
            scale = np.max(np.abs(want[np.isfinite(want)]), initial=np.finfo(want.dtype).tiny)
            np.testing.assert_allclose(got, want, rtol=0, atol=ULPS * np.finfo(want.dtype).eps * scale,
                                       err_msg=f"{name} {s.label}")


def _shape_concept():
    """Two samples; in the second the JAX twin drops the last element (a porting bug)."""
    def jax_fn(p, x, drop=False):
        y = jax.numpy.tanh(x["x"])
        return y[:-1] if drop else y

    def torch_fn(p, x, drop=False):
        return x["x"].tanh()

    return Concept(name="t.shapes", group="t", summary="", grad_inputs=("x",), covers=(),
                   samples=lambda rng, dt: [Sample("good", {"x": rng.standard_normal(5).astype(dt)}),
                                            Sample("bad", {"x": rng.standard_normal(5).astype(dt)},
                                                   kwargs={"drop": True})],
                   jax=jax_fn, torch=torch_fn)


def test_a_sample_that_breaks_the_one_program_is_reported_on_its_own():
    """The one program cannot be traced (a sample's JAX output shape is not torch's): the runner
    runs the samples one by one, so the good sample is compared in full and the bad one is named."""
    c = _shape_concept()
    assert runner._jax_all_samples(c, c.samples(np.random.default_rng(0), np.dtype("float32")),
                                   [np.zeros(5, np.float32)] * 2, "cpu") is None
    r = runner.run_concept(c, "float32")
    assert not r.passed
    by = {(x["sample"], x["what"]): x for x in r.comparisons}
    assert by[("good", "out[0]")]["ok"] and by[("good", "grad[x]")]["ok"]
    assert "shape mismatch" in by[("bad", "out[0]")]["problem"]
    assert "output shapes differ" in by[("bad", "grad[*]")]["problem"]
