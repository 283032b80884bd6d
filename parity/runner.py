"""Runs a concept in both frameworks on the same data and compares outputs and gradients.

Returns plain `Result` records; knows nothing about printing (see report.py).
Gradients are vector-Jacobian products with a fixed random cotangent drawn in NumPy: a plain sum
would hide errors whose gradient sums to zero (softmax's does, for every input).

The JAX side of a concept is one jitted program holding every sample side by side, each with its
own static options and its own `value_and_grad`; every array is an argument, as in a user's jitted
step. Compiling is most of a run's time, and one program per concept instead of one per sample
compiles far fewer programs; XLA fuses a sample beside others a little differently, within a few
ulps in float32 (tests/test_runner_one_program.py; the figures: docs/measurements.md, "The runner").
Where the one program cannot be built, the samples run one by one (`run_jax`), so that each
problem is reported against its own sample.
"""
from __future__ import annotations

import math
import time
import traceback
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from functools import partial

import jax
import numpy as np
import torch

from parity import bridge, precision
from parity.concept import np_dtype
from parity.registry import Concept, Sample
from parity.tolerances import HALF, Tolerance, lookup

SEED = 20261123


@dataclass
class Comparison:
    """One compared tensor of one sample."""

    sample: str
    what: str  # "out[0]", "grad[x]", "grad[weight]"
    shape: tuple
    max_abs: float
    max_rel: float
    ok: bool
    problem: str = ""
    exact: bool = False  # integer or bool values: compared for equality, `differ` elements differ
    differ: int = 0


@dataclass
class Result:
    """One concept in one dtype, device and precision mode.

    The error columns aggregate the floating-point comparisons; `n_out`/`n_grad` count them (0: nothing
    was compared, which a report prints as "n/a", not as "bitwise equal"). Integer and bool outputs
    are compared exactly and counted in `exact_out`, with `exact_differ` differing elements.
    """

    concept: str
    group: str
    dtype: str
    device: str
    precision: str
    passed: bool
    out_abs: float = 0.0
    out_rel: float = 0.0
    grad_abs: float = 0.0
    grad_rel: float = 0.0
    n_out: int = 0
    n_grad: int = 0
    exact_out: int = 0
    exact_differ: int = 0
    rtol: float = 0.0
    atol: float = 0.0
    tol_source: str = ""
    n_samples: int = 0
    seconds: float = 0.0
    error: str = ""
    failures: list[str] = field(default_factory=list)
    comparisons: list[dict] = field(default_factory=list)  # every Comparison of every sample, as dicts

    def to_dict(self) -> dict:
        return asdict(self)


def compare(a: np.ndarray, b: np.ndarray, tol: Tolerance, sample: str, what: str) -> Comparison:
    """Compare a JAX result `a` with the torch result `b`; shapes and dtypes must match exactly.

    Non-finite values must sit at the same places with the same kind (nan, +inf, −inf) in both: torch
    is the reference, so a nan torch also returns is agreement, a nan only one side returns is not.
    float16 and bfloat16 arrays compare at their own tolerance (`tolerances.HALF`), whatever `tol` is.
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return Comparison(sample, what, b.shape, np.inf, np.inf, False,
                          f"shape mismatch: jax {a.shape} vs torch {b.shape}")
    if a.dtype != b.dtype:
        return Comparison(sample, what, b.shape, np.inf, np.inf, False,
                          f"dtype mismatch: jax {a.dtype} vs torch {b.dtype}")
    tol = HALF.get(a.dtype.name, tol)  # NumPy's kind of ml_dtypes' bfloat16 is "V", not "f"
    if a.dtype.kind not in "fc" and a.dtype.name not in HALF:
        n = int((a != b).sum())
        return Comparison(sample, what, b.shape, 0.0, 0.0, n == 0,
                          f"{n} of {b.size} elements differ" if n else "", exact=True, differ=n)
    fa, fb = np.isfinite(a), np.isfinite(b)
    if not (fa.all() and fb.all()):
        same = np.array_equal(fa, fb) and np.array_equal(a[~fa], b[~fb], equal_nan=True)
        if not same:
            return Comparison(sample, what, b.shape, np.inf, np.inf, False,
                              f"non-finite values differ: jax has {int((~fa).sum())}, torch {int((~fb).sum())}, "
                              f"not at the same places with the same kind")
        a, b = a[fa], b[fb]
    a64, b64 = a.astype(np.complex128 if a.dtype.kind == "c" else np.float64), \
        b.astype(np.complex128 if b.dtype.kind == "c" else np.float64)
    # |a − b| (and a complex |b|) of finite values near float64's largest overflows to inf, and the
    # relative error is then inf / inf: an error beyond every tolerance, reported as such (inf, not
    # ok), so numpy's overflow and invalid-value warnings would only repeat it on stderr
    with np.errstate(over="ignore", invalid="ignore"):
        diff = np.abs(a64 - b64)
        max_abs = float(diff.max(initial=0.0))
        # relative error where it means something: beside references larger than atol (near zero the
        # atol term decides, and |a − b| / |b| would only report how close to zero b is)
        big = np.abs(b64) > tol.atol
        max_rel = float((diff[big] / np.abs(b64[big])).max(initial=0.0))
        # an overflowed difference never passes (a complex |b| that overflowed too would let it)
        ok = bool(np.all(diff <= tol.atol + tol.rtol * np.abs(b64))) and math.isfinite(max_abs)
    max_rel = math.inf if math.isnan(max_rel) else max_rel  # inf / inf: an overflowed difference
    problem = "" if ok else (f"max abs err {max_abs:.3g}, max rel err {max_rel:.3g} "
                             f"> rtol {tol.rtol:g} / atol {tol.atol:g}")
    return Comparison(sample, what, b.shape, max_abs, max_rel, ok, problem)


def _as_tuple(x):
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def _cotangents(outs: tuple[np.ndarray, ...], seed: int) -> tuple[np.ndarray, ...]:
    """N(0, 1) cotangents in each output's dtype (bfloat16 included: parity/bridge.py carries it)."""
    rng = np.random.default_rng(seed)
    return tuple(rng.standard_normal(np.shape(o)).astype(np.asarray(o).dtype) for o in outs)


def run_torch(concept: Concept, s: Sample, device: str, cts=None, ct_seed: int | None = None):
    """Outputs and gradients of the torch adapter, as NumPy.

    Gradients are taken for the cotangents `cts`, or for fresh ones drawn from `ct_seed` once the
    output shapes are known (returned as the third item); with neither, outputs only.
    """
    params = bridge.to_torch(s.params, device, requires_grad=concept.differentiable)
    grad_names = set(concept.grad_inputs) if concept.differentiable else set()
    inputs = {k: bridge.to_torch({k: v}, device, requires_grad=k in grad_names)[k]
              for k, v in s.inputs.items()}
    outs = _as_tuple(concept.torch(params, inputs, **s.kwargs))
    np_outs = bridge.to_numpy(outs)
    if cts is None and ct_seed is not None:
        cts = _cotangents(np_outs, ct_seed)
    if cts is None or not concept.differentiable:
        return np_outs, {}, None
    wrt = {f"grad[{k}]": inputs[k] for k in concept.grad_inputs}
    wrt.update({f"grad[{k}]": v for k, v in params.items()})
    if not wrt:  # nothing to differentiate in this sample
        return np_outs, {}, cts
    dev = precision.torch_device(device)
    scalar = sum((o * bridge.torch_tensor(c, dev)).sum() for o, c in zip(outs, cts))
    grads = torch.autograd.grad(scalar, list(wrt.values()), allow_unused=True)
    # allow_unused: a parameter that does not reach the output has gradient zero, as in JAX
    return np_outs, {k: bridge.to_numpy(torch.zeros_like(t) if g is None else g)
                     for (k, t), g in zip(wrt.items(), grads)}, cts


def run_jax(concept: Concept, s: Sample, device: str, cts=None):
    """Outputs (and, given cotangents, gradients) of the jitted JAX adapter, as NumPy.

    With cotangents, outputs and gradients come from one jitted program (`jax.value_and_grad` with
    the outputs as auxiliary data): the forward pass is the same computation, and each sample
    compiles one XLA program instead of two (compiling is most of a report's time). Gradients are
    None where the outputs' shapes differ from the cotangents' (torch's outputs)."""
    if cts is not None and concept.differentiable and concept.jit:
        try:
            return _jax_outputs_and_grads(concept, s, device, cts)
        except _ShapesDiffer:  # found while tracing: nothing was compiled
            pass
    params, _, inputs = _jax_arrays(concept, s, device, grad=False)
    fwd = partial(concept.jax, **s.kwargs)
    fwd = jax.jit(fwd) if concept.jit else fwd
    outs = _as_tuple(fwd(params, inputs))
    np_outs = bridge.to_numpy(outs)
    if cts is None or not concept.differentiable:
        return np_outs, {}
    if [np.shape(o) for o in np_outs] != [np.shape(c) for c in cts]:
        return np_outs, None  # torch's cotangents do not fit: the output shapes already differ
    return _jax_outputs_and_grads(concept, s, device, cts, np_outs)


class _ShapesDiffer(Exception):
    """The JAX outputs' shapes differ from the cotangents' (torch's outputs')."""


def _jax_arrays(concept: Concept, s: Sample, device: str, grad: bool):
    """A sample's JAX parameters (Flax layout), the inputs to differentiate (none unless `grad`), and
    the other inputs, all on `device`."""
    params = bridge.to_jax(concept.params_to_jax(s.params) if concept.params_to_jax else dict(s.params), device)
    inputs = bridge.to_jax(dict(s.inputs), device)
    diff = {k: inputs[k] for k in concept.grad_inputs} if grad else {}
    return params, diff, {k: v for k, v in inputs.items() if k not in diff}


def _value_and_grad(concept: Concept, s: Sample):
    """f(params, diff, cotangents, rest) -> ((Σ outputs·cotangents, outputs), (grad params, grad diff)),
    traceable. Every array is an argument, as in a user's jitted step (none is folded as a constant)."""
    def scalar(p, d, c, r):
        o = _as_tuple(concept.jax(p, {**r, **d}, **s.kwargs))
        if [tuple(oi.shape) for oi in o] != [tuple(ci.shape) for ci in c]:
            raise _ShapesDiffer  # torch's cotangents do not fit (they would broadcast)
        return sum((oi * ci).sum() for oi, ci in zip(o, c)), o

    return jax.value_and_grad(scalar, argnums=(0, 1), has_aux=True)


def _grads_to_numpy(concept: Concept, gp, gi) -> dict[str, np.ndarray]:
    """Parameter gradients back in torch's layout, and the input gradients, named as torch's are."""
    gp = jax.tree.map(np.asarray, gp)
    if concept.grads_to_torch:
        gp = concept.grads_to_torch(gp)
    grads = {f"grad[{k}]": np.asarray(v) for k, v in gi.items()}
    grads.update({f"grad[{k}]": np.asarray(v) for k, v in gp.items()})
    return grads


def _jax_outputs_and_grads(concept: Concept, s: Sample, device: str, cts, np_outs=None):
    """Outputs and the gradients of Σ outputs·cotangents for the parameters and `grad_inputs`, in one
    jitted program (the outputs `np_outs` given: computed already, by an adapter that is not jitted)."""
    params, diff, rest = _jax_arrays(concept, s, device, grad=True)
    (_, outs), (gp, gi) = jax.jit(_value_and_grad(concept, s))(params, diff, bridge.to_jax(cts, device), rest)
    return (bridge.to_numpy(outs) if np_outs is None else np_outs), _grads_to_numpy(concept, gp, gi)


def _jax_all_samples(concept: Concept, samples, cts_list, device: str):
    """Outputs and gradients of every sample of a jitted concept in ONE jitted program, or None where
    that cannot be (an adapter that is not jitted, output shapes that differ from torch's, an error
    while tracing or running): the caller then runs the samples one by one (`run_jax`), which
    reports each problem against its own sample.

    Each sample keeps its own computation: its own static options, its own arrays as arguments, its
    own `value_and_grad` of Σ outputs·cotangents; the program only puts them side by side, so XLA
    compiles once per concept instead of once per sample (compiling is most of a run's time)."""
    if not concept.jit or not samples:
        return None
    grad = [cts is not None and concept.differentiable for cts in cts_list]
    args = [(*_jax_arrays(concept, s, device, g), bridge.to_jax(cts, device) if g else None)
            for s, cts, g in zip(samples, cts_list, grad)]

    def program(all_args):
        out = []
        for s, (p, d, r, c) in zip(samples, all_args):
            if c is None:
                out.append((_as_tuple(concept.jax(p, {**r, **d}, **s.kwargs)), None))
            else:
                (_, o), g = _value_and_grad(concept, s)(p, d, c, r)
                out.append((o, g))
        return out

    try:
        results = jax.block_until_ready(jax.jit(program)(args))
    except Exception:  # noqa: BLE001 (the one-by-one run raises it again, against its sample)
        return None
    return [(bridge.to_numpy(outs), {} if g is None else _grads_to_numpy(concept, *g)) for outs, g in results]


def run_tolerance(dtype: str, device: str, mode: str) -> tuple[Tolerance, Tolerance]:
    """(the tolerance a run in `dtype` compares with, the one its row shows).

    Floating arrays that are not float16/bfloat16 compare at float32's entry in every run but a
    float64 or complex128 one (a float16 run's float32 running statistics, a complex64 run's real
    parts); `compare` itself switches to `tolerances.HALF` for float16 and bfloat16 arrays, and
    compares integer and bool arrays exactly. The row shows the half entry in a float16/bfloat16 run."""
    base = lookup("float64" if dtype in ("float64", "complex128") else "float32", device, mode)
    return base, HALF.get(dtype, base)


def run_concept(concept: Concept, dtype: str = "float32", device: str = "cpu",
                mode: str = "strict", seed: int = SEED, batch: bool = True) -> Result:
    """Run every sample of a concept in `dtype` (one it declares) in both frameworks and compare;
    never raises.

    A concept that compares nothing fails: no samples, or (for a differentiable concept) no gradient.
    A dtype the concept does not declare fails too, saying so.
    `batch`: the JAX side as one program for all samples (see the module's docstring); False
    compiles one program per sample.
    """
    tol, shown = run_tolerance(dtype, device, mode)
    res = Result(concept.name, concept.group, dtype, device, mode, passed=False,
                 rtol=shown.rtol, atol=shown.atol, tol_source=shown.source)
    t0 = time.perf_counter()
    try:
        concept = concept.at(dtype)
        with precision.policy(mode):
            samples = concept.samples(np.random.default_rng(seed), np_dtype(dtype))
            comps: list[Comparison] = []
            torch_runs = [run_torch(concept, s, device, ct_seed=seed + i) for i, s in enumerate(samples)]
            jax_runs = (_jax_all_samples(concept, samples, [r[2] for r in torch_runs], device)
                        if batch else None)
            for i, s in enumerate(samples):
                t_out, t_grads, cts = torch_runs[i]
                j_out, j_grads = jax_runs[i] if jax_runs else run_jax(concept, s, device, cts)
                if len(j_out) != len(t_out):
                    raise AssertionError(f"{s.label}: jax returns {len(j_out)} outputs, torch {len(t_out)}")
                comps += [compare(a, b, tol, s.label, f"out[{k}]") for k, (a, b) in enumerate(zip(j_out, t_out))]
                if j_grads is None:
                    comps.append(Comparison(s.label, "grad[*]", (), np.inf, np.inf, False,
                                            "gradients not compared: the output shapes differ"))
                    continue
                if set(j_grads) != set(t_grads):
                    raise AssertionError(f"{s.label}: gradient names differ: jax {sorted(j_grads)} "
                                         f"vs torch {sorted(t_grads)}")
                comps += [compare(j_grads[k], t_grads[k], tol, s.label, k) for k in t_grads]
        res.n_samples = len(samples)
        outs = [c for c in comps if c.what.startswith("out") and not c.exact]
        grads = [c for c in comps if c.what.startswith("grad")]
        exact = [c for c in comps if c.exact]
        res.n_out, res.n_grad, res.exact_out = len(outs), len(grads), len(exact)
        res.exact_differ = sum(c.differ for c in exact)
        res.out_abs = max((c.max_abs for c in outs), default=0.0)
        res.out_rel = max((c.max_rel for c in outs), default=0.0)
        res.grad_abs = max((c.max_abs for c in grads), default=0.0)
        res.grad_rel = max((c.max_rel for c in grads), default=0.0)
        res.failures = [f"{c.sample} {c.what} {c.shape}: {c.problem}" for c in comps if not c.ok]
        res.comparisons = [asdict(c) for c in comps]
        if not samples:
            res.failures.append("no samples: the sample generator returned none, so nothing was compared")
        elif concept.differentiable and (concept.grad_inputs or any(s.params for s in samples)) and not grads:
            res.failures.append("no gradient was compared, though the concept is differentiable")
        res.passed = not res.failures
    except Exception as e:  # a crash inside a concept is a failure, reported with its message
        res.error = f"{type(e).__name__}: {e}"
        res.failures = [res.error, traceback.format_exc(limit=-3)]
        res.passed = False
    res.seconds = time.perf_counter() - t0
    return res


def runs(concepts, dtypes) -> list[tuple[Concept, str]]:
    """(concept, dtype) for every concept in every dtype of `dtypes` it declares: dtype-major, each
    dtype once, in the order given."""
    return [(c, dtype) for dtype in dict.fromkeys(dtypes) for c in concepts if dtype in c.dtypes]


def run_all(concepts, dtypes=("float32",), device: str = "cpu", mode: str = "strict") -> Iterator[Result]:
    """Run every concept in each of `dtypes` it declares (see `runs`), yielding each result as it
    finishes: a caller can show progress and keep what finished if interrupted."""
    for c, dtype in runs(concepts, dtypes):
        yield run_concept(c, dtype, device, mode)


def finite_differences(concept: Concept, s: Sample, framework: str) -> None:
    """Check one framework's gradients against central finite differences in float64 on the CPU.

    Uses `torch.autograd.gradcheck` and `jax.test_util.check_grads` with their own float64
    tolerances; raises AssertionError (or the library's error) on a mismatch.
    """
    if framework == "torch":
        params = bridge.to_torch(s.params, "cpu", requires_grad=True)
        inputs = bridge.to_torch(dict(s.inputs), "cpu")
        names = list(concept.grad_inputs) + list(params)
        for k in concept.grad_inputs:
            inputs[k].requires_grad_(True)
        leaves = [inputs[k] for k in concept.grad_inputs] + list(params.values())

        def f(*xs):
            d = dict(zip(names, xs))
            p = {k: d[k] for k in params}
            x = {**inputs, **{k: d[k] for k in concept.grad_inputs}}
            return _as_tuple(concept.torch(p, x, **s.kwargs))

        torch.autograd.gradcheck(f, tuple(leaves))  # its float64 defaults: eps 1e-6, atol 1e-5, rtol 1e-3
    elif framework == "jax":
        from jax.test_util import check_grads
        jp = concept.params_to_jax(s.params) if concept.params_to_jax else dict(s.params)
        params = bridge.to_jax(jp)
        inputs = bridge.to_jax(dict(s.inputs))
        diff_in = {k: inputs[k] for k in concept.grad_inputs}
        rest = {k: v for k, v in inputs.items() if k not in diff_in}

        def g(p, d):
            return _as_tuple(concept.jax(p, {**rest, **d}, **s.kwargs))

        check_grads(g, (params, diff_in), order=1, modes=("rev",))  # its float64 defaults
    else:
        raise ValueError(f"framework must be 'jax' or 'torch', got {framework!r}")
