"""Generic tests generated from the registry: a concept is tested by being registered."""
import jax
import numpy as np
import pytest

from conftest import DEVICES
from parity import bridge, registry, runner
from parity.concept import Variant, np_dtype
from parity.names import CONCEPT_DTYPES
from parity.tolerances import lookup

CONCEPTS = registry.all_concepts()
RUNS = [(c, dt) for c in CONCEPTS for dt in c.dtypes]  # every concept in every dtype it declares
RUN_IDS = [f"{c.name}-{dt}" for c, dt in RUNS]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("concept,dtype", RUNS, ids=RUN_IDS)
def test_parity(concept, dtype, device):
    """Outputs and gradients (inputs and every parameter) agree between JAX and PyTorch."""
    r = runner.run_concept(concept, dtype, device)
    assert r.passed, f"{concept.name} [{dtype}, {device}] failed parity:\n" + "\n".join(r.failures)
    assert r.n_samples > 0 and r.dtype == dtype


def test_dtypes_are_declared_once_each_and_known():
    for c in CONCEPTS:
        assert c.dtypes and len(set(c.dtypes)) == len(c.dtypes) and set(c.dtypes) <= set(CONCEPT_DTYPES), c.name


def test_a_variant_adds_dtypes_and_replaces_only_its_fields():
    relu = registry.get("activations.relu")
    int32 = relu.at("int32")
    assert not int32.differentiable and relu.differentiable and int32.dtypes == ("int32", "int64", "uint8", "int16",
                                                                                  "int8")
    assert relu.at("float32") is relu  # the concept's own samples and adapters
    with pytest.raises(ValueError, match="does not run in complex64"):
        relu.at("complex64")
    with pytest.raises(ValueError, match="already"):
        relu.with_variant(Variant("activations.relu", ("float32",), relu.samples))


@pytest.mark.parametrize("concept,dtype", RUNS, ids=RUN_IDS)
def test_samples_are_in_the_dtype_of_their_row(concept, dtype):
    """A row's samples hold arrays of the row's dtype, or ask for it by name: its label is the dtype that
    ran (a sample beside them may hold another, as numpy_roundtrip's integer one)."""
    def has(s):
        arrays = [*s.inputs.values(), *s.params.values()]
        return any(np.asarray(a).dtype == np_dtype(dtype) for a in arrays) or dtype in s.kwargs.values()
    samples = concept.at(dtype).samples(np.random.default_rng(runner.SEED), np_dtype(dtype))
    assert samples and any(has(s) for s in samples), (concept.name, dtype)


# torch.autograd.gradcheck builds the whole numerical Jacobian (one pair of evaluations per input
# element; JAX's check_grads probes random directions only), so only samples with at most this
# many differentiable elements are checked; parity covers the rest.
FD_MAX_ELEMENTS = 600


def _fd_size(c, s):
    return sum(np.size(s.inputs[k]) for k in c.grad_inputs) + sum(np.size(v) for v in s.params.values())


FD_CASES = [(c, s, fw) for c in (c.at("float64") for c in CONCEPTS if "float64" in c.dtypes) if c.differentiable
            for s in c.samples(np.random.default_rng(runner.SEED), np.dtype("float64"))
            if s.fd_ok and _fd_size(c, s) <= FD_MAX_ELEMENTS
            for fw in ("jax", "torch")]


@pytest.mark.parametrize("concept,sample,framework", FD_CASES,
                         ids=[f"{c.name}-{s.label}-{fw}" for c, s, fw in FD_CASES])
def test_finite_differences(concept, sample, framework):
    """Each framework's gradients match central finite differences in float64."""
    runner.finite_differences(concept, sample, framework)


JIT_RUNS = [(c, dt) for c, dt in RUNS if c.at(dt).jit and dt not in ("float64", "complex128")]


@pytest.mark.parametrize("concept,dtype", JIT_RUNS, ids=[f"{c.name}-{dt}" for c, dt in JIT_RUNS])
def test_jit_matches_eager_and_compiles_once(concept, dtype):
    """The jitted JAX adapter equals its op-by-op run, and a second call does not recompile (every
    dtype but the float64 ones, compared at float32's tolerance)."""
    tol = lookup("float32", "cpu")
    concept = concept.at(dtype)
    for s in concept.samples(np.random.default_rng(runner.SEED), np_dtype(dtype)):
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
