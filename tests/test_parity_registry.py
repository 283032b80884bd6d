"""Generic tests generated from the registry: a concept is tested by being registered."""
import jax
import numpy as np
import pytest

from conftest import DEVICES, DTYPES
from parity import bridge, registry, runner
from parity.tolerances import lookup

CONCEPTS = registry.all_concepts()
IDS = [c.name for c in CONCEPTS]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("concept", CONCEPTS, ids=IDS)
def test_parity(concept, dtype, device):
    """Outputs and gradients (inputs and every parameter) agree between JAX and PyTorch."""
    r = runner.run_concept(concept, dtype, device)
    assert r.passed, f"{concept.name} [{dtype}, {device}] failed parity:\n" + "\n".join(r.failures)
    assert r.n_samples > 0


# torch.autograd.gradcheck builds the whole numerical Jacobian (one pair of evaluations per input
# element; JAX's check_grads probes random directions only), so only samples with at most this
# many differentiable elements are checked; parity covers the rest.
FD_MAX_ELEMENTS = 600


def _fd_size(c, s):
    return sum(np.size(s.inputs[k]) for k in c.grad_inputs) + sum(np.size(v) for v in s.params.values())


FD_CASES = [(c, s, fw) for c in CONCEPTS if c.differentiable
            for s in c.samples(np.random.default_rng(runner.SEED), np.dtype("float64"))
            if s.fd_ok and _fd_size(c, s) <= FD_MAX_ELEMENTS
            for fw in ("jax", "torch")]


@pytest.mark.parametrize("concept,sample,framework", FD_CASES,
                         ids=[f"{c.name}-{s.label}-{fw}" for c, s, fw in FD_CASES])
def test_finite_differences(concept, sample, framework):
    """Each framework's gradients match central finite differences in float64."""
    runner.finite_differences(concept, sample, framework)


@pytest.mark.parametrize("concept", [c for c in CONCEPTS if c.jit], ids=[c.name for c in CONCEPTS if c.jit])
def test_jit_matches_eager_and_compiles_once(concept):
    """The jitted JAX adapter equals its op-by-op run, and a second call does not recompile."""
    tol = lookup("float32", "cpu")
    for s in concept.samples(np.random.default_rng(runner.SEED), np.dtype("float32")):
        params = bridge.to_jax(concept.params_to_jax(s.params) if concept.params_to_jax else dict(s.params))
        inputs = bridge.to_jax(dict(s.inputs))
        fn = jax.jit(lambda p, x, _s=s: concept.jax(p, x, **_s.kwargs))
        jitted = runner._as_tuple(fn(params, inputs))
        runner._as_tuple(fn(params, inputs))
        assert fn._cache_size() == 1, f"{concept.name} {s.label}: recompiled on a second call"
        with jax.disable_jit():
            eager = runner._as_tuple(concept.jax(params, inputs, **s.kwargs))
        for a, b in zip(jitted, eager):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol.rtol, atol=tol.atol,
                                       err_msg=f"{concept.name} {s.label}: jit differs from eager")
