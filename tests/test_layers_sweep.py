"""Property-based sweep of Conv2d and pooling configurations (hypothesis).

Each example builds one configuration in both frameworks: either both reject it with a ValueError,
or both accept it with identical output shapes and matching outputs and gradients (input and every
parameter), through the registry's own adapters and conversions, in float64 (so any mismatch is
a difference in semantics, not rounding). The example count comes from the hypothesis profile in
conftest.py ("ci" by default; HYPOTHESIS_PROFILE=long for a longer local run).
"""
import dataclasses
from functools import partial

import numpy as np
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from parity import bridge, registry, runner
from parity.registry import Sample

DTYPE = "float64"  # the runner takes its tolerance from parity.tolerances for this dtype
# Each compared example compiles its own shapes (~0.2 s with one torch thread): with "ci" (40) that
# is 160 Conv2d and 80 examples of each pooling layer, 320 in all: 40 s on 2 CPU cores, within the
# issue's budget of about a minute; "long" (1000) runs 1000 of each.
_N = settings.default.max_examples
CONV_EXAMPLES = min(4 * _N, max(_N, 1000))
POOL_EXAMPLES = min(2 * _N, max(_N, 1000))


def _int_or_pair(draw, lo, hi):
    a = draw(st.integers(lo, hi))
    return a if draw(st.booleans()) else (a, draw(st.integers(lo, hi)))


def _pair(v):
    return v if isinstance(v, tuple) else (v, v)


def _rejected_by(c, sample: Sample) -> dict:
    """Which adapters raise ValueError on this sample (validation runs before anything compiles)."""
    errors = {}
    jax_params = c.params_to_jax(sample.params) if c.params_to_jax else sample.params
    calls = {"torch": lambda: c.torch(bridge.to_torch(sample.params), bridge.to_torch(sample.inputs), **sample.kwargs),
             "jax": lambda: c.jax(bridge.to_jax(jax_params), bridge.to_jax(sample.inputs), **sample.kwargs)}
    for fw, call in calls.items():
        try:
            call()
        except ValueError as e:
            errors[fw] = str(e)
    return errors


def _check(concept_name: str, sample: Sample):
    """Both reject the configuration, or both accept it with matching outputs and gradients."""
    c = registry.get(concept_name)
    res = runner.run_concept(dataclasses.replace(c, samples=lambda rng, dt: [sample]), DTYPE)
    if res.error.startswith("ValueError"):
        errors = _rejected_by(c, sample)
        assert set(errors) == {"torch", "jax"}, f"only {sorted(errors)} rejected {sample.kwargs}: {errors}"
        event("rejected by both")
        return
    event("compared")
    assert res.passed, f"{concept_name} {sample.kwargs}:\n" + "\n".join(res.failures)


@st.composite
def conv_configs(draw):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cin, cout = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    kernel = _int_or_pair(draw, 1, 5)
    stride = _int_or_pair(draw, 1, 3)
    dilation = _int_or_pair(draw, 1, 2)
    padding = draw(st.one_of(st.just("same"), st.just("valid"), st.integers(0, 2),
                             st.tuples(st.integers(0, 2), st.integers(0, 2))))
    if padding == "same" and draw(st.booleans()):
        stride = 1  # 'same' with a stride is a rejection case; keep most 'same' draws valid
    bias = draw(st.booleans())
    n, h, w = draw(st.integers(1, 2)), draw(st.integers(1, 12)), draw(st.integers(1, 12))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    kh, kw = _pair(kernel)
    params = {"weight": rng.standard_normal((cout, cin // groups, kh, kw))}
    if bias:
        params["bias"] = rng.standard_normal(cout)
    kwargs = dict(in_channels=cin, out_channels=cout, kernel_size=kernel, stride=stride, padding=padding,
                  dilation=dilation, groups=groups, bias=bias, dtype=DTYPE)
    return Sample("sweep", {"x": rng.standard_normal((n, cin, h, w))}, params, kwargs)


@st.composite
def pool_configs(draw, kind):
    kernel = _int_or_pair(draw, 1, 5)
    kh, kw = _pair(kernel)
    padding = (draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2)))
    padding = padding[0] if padding[0] == padding[1] and draw(st.booleans()) else padding
    kwargs = dict(kernel_size=kernel, stride=draw(st.one_of(st.none(), st.integers(1, 3),
                                                            st.tuples(st.integers(1, 3), st.integers(1, 3)))),
                  padding=padding, ceil_mode=draw(st.booleans()))
    if kind == "MaxPool2d":
        kwargs["dilation"] = _int_or_pair(draw, 1, 2)
    else:
        kwargs["count_include_pad"] = draw(st.booleans())
    n, c, h, w = draw(st.integers(1, 2)), draw(st.integers(1, 2)), draw(st.integers(1, 12)), draw(st.integers(1, 12))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return Sample("sweep", {"x": rng.standard_normal((n, c, h, w))}, kwargs=kwargs)


def _found(kwargs, shape, params=None):
    """A configuration an earlier sweep found, kept as an explicit example."""
    return Sample("found", {"x": np.random.default_rng(0).standard_normal(shape)}, params or {}, kwargs)


SWEEP = partial(settings, suppress_health_check=[HealthCheck.too_slow])


@SWEEP(max_examples=CONV_EXAMPLES)
@given(conv_configs())
# stride 2, kernel 2, padding 1 on a 1-pixel-high input: XLA:CPU aborted compiling this float64
# input gradient until jax_impl.conv padded explicitly (a registry sample covers it too)
@example(_found(dict(in_channels=3, out_channels=6, kernel_size=2, stride=2, padding=1, dilation=(2, 1),
                     groups=3, bias=False, dtype=DTYPE), (2, 3, 1, 12),
                {"weight": np.random.default_rng(1).standard_normal((6, 1, 2, 2))}))
def test_conv2d_sweep(sample):
    _check("layers.conv2d", sample)


@SWEEP(max_examples=POOL_EXAMPLES)
@given(pool_configs("MaxPool2d"))
# a dilated window that skips the 1-pixel-high input: torch returns -inf and its backward writes out
# of bounds (heap corruption), so both twins must reject it
@example(_found(dict(kernel_size=2, stride=None, padding=(1, 0), ceil_mode=True, dilation=(2, 2)),
                (1, 2, 1, 6)))
def test_max_pool2d_sweep(sample):
    _check("layers.max_pool2d", sample)


@SWEEP(max_examples=POOL_EXAMPLES)
@given(pool_configs("AvgPool2d"))
def test_avg_pool2d_sweep(sample):
    _check("layers.avg_pool2d", sample)
