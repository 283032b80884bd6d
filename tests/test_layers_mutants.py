"""Deliberately wrong implementations must fail the registered parity check.

Each test swaps one JAX leaf (or one conversion) for a plausible mistake and asserts that
`parity.runner.run_concept` on the concept's own samples reports a failure, so a passing check
means something. The torch side is the reference and stays as it is; that the unmutated concepts
pass is tests/test_parity_registry.py's job.
"""
import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import pytest

import jax_impl as J
from parity import convert, registry, runner

DTYPE = "float64"  # differences of semantics, not of rounding, are what these mistakes introduce


def _fails(concept, why: str):
    res = runner.run_concept(concept, DTYPE)
    assert not res.passed, f"mutant '{why}' passed {concept.name}: the samples cannot see it"
    return res


def test_mutant_conv_kernel_flipped(monkeypatch):
    """A true convolution (kernel flipped in both spatial axes) instead of torch's cross-correlation."""
    right = J.conv._conv2d
    flipped = partial(jax.jit, static_argnames=("stride", "padding", "dilation", "groups"))(
        lambda x, kernel, bias, stride, padding, dilation, groups:
        right(x, kernel[::-1, ::-1], bias, stride, padding, dilation, groups))
    monkeypatch.setattr(J.conv, "_conv2d", flipped)
    res = _fails(registry.get("layers.conv2d"), "kernel flipped")
    assert not res.error and any("out[0]" in f for f in res.failures)


def test_mutant_ceil_mode_ignored(monkeypatch):
    """Pooling that always uses the floor output size, as Flax's pooling does."""
    right = J.pooling.pool_out_size  # shape_rules.pool_out_size, as the JAX leaf sees it
    monkeypatch.setattr(J.pooling, "pool_out_size", lambda layer, axis, n, k, s, p, d, ceil_mode:
                        right(layer, axis, n, k, s, p, d, False))
    for name in ("layers.max_pool2d", "layers.avg_pool2d"):
        res = _fails(registry.get(name), "ceil_mode ignored")
        # caught by the output shapes (torch's ceil_mode adds a row or column), or by the mutant
        # refusing an input on which torch's ceil_mode still fits one window and the floor fits none
        by_shape = not res.error and any("out[0]" in f and "shape mismatch" in f for f in res.failures)
        by_refusal = res.error.startswith("ValueError") and "output size would be 0" in res.error
        assert by_shape or by_refusal, res.failures


def test_mutant_count_include_pad_swapped(monkeypatch):
    """AvgPool2d dividing by the other divisor (count_include_pad read the wrong way round)."""
    right = J.pooling.AvgPool2d.__call__

    def swapped(self, x):
        self.count_include_pad = not self.count_include_pad
        try:
            return right(self, x)
        finally:
            self.count_include_pad = not self.count_include_pad

    monkeypatch.setattr(J.pooling.AvgPool2d, "__call__", swapped)
    res = _fails(registry.get("layers.avg_pool2d"), "count_include_pad swapped")
    assert not res.error


def test_mutant_batchnorm_momentum_not_converted(monkeypatch):
    """torch's momentum 0.1 read in Flax's convention (the weight of the OLD value, docs/traps.md,
    trap 11): the running statistics move by 0.9 of the batch instead of 0.1."""
    right = J.normalization._batch_norm_train

    @partial(jax.jit, static_argnames=("eps", "momentum"))
    def flax_meaning(x, scale, bias, mean, var, count, eps, momentum):
        return right(x, scale, bias, mean, var, count, eps, None if momentum is None else 1 - momentum)
    monkeypatch.setattr(J.normalization, "_batch_norm_train", flax_meaning)
    res = _fails(registry.get("layers.batchnorm2d"), "BN momentum not converted")
    assert not res.error and all("out[1]" in f or "out[2]" in f for f in res.failures)  # running stats only


def test_mutant_batchnorm_biased_running_variance(monkeypatch):
    """Flax's running update: the biased batch variance instead of torch's unbiased one (docs/traps.md, trap 12)."""
    right = J.normalization._batch_norm_train

    @partial(jax.jit, static_argnames=("eps", "momentum"))
    def biased(x, scale, bias, mean, var, count, eps, momentum):
        y, new_mean, new_var, count = right(x, scale, bias, mean, var, count, eps, momentum)
        if var is None or momentum is None:  # no running statistics, or the cumulative average: as is
            return y, new_mean, new_var, count
        n = x.shape[0] * x.shape[1] * x.shape[2]
        unbiased = (new_var - (1 - momentum) * var) / momentum
        return y, new_mean, (1 - momentum) * var + momentum * unbiased * (n - 1) / n, count
    monkeypatch.setattr(J.normalization, "_batch_norm_train", biased)
    res = _fails(registry.get("layers.batchnorm2d"), "biased running variance")
    assert not res.error and all("out[2]" in f for f in res.failures)


def test_mutant_max_pool_zero_padding(monkeypatch):
    """Max pooling padded with zeros (jnp.pad's default) instead of −inf (docs/traps.md, trap 9)."""
    right = J.pooling._max_pool2d

    @partial(jax.jit, static_argnames=("kernel", "stride", "pads", "dilation", "out"))
    def zero_padded(x, kernel, stride, pads, dilation, out):
        x = jnp.pad(x, ((0, 0), *pads, (0, 0)))
        return right(x, kernel, stride, ((0, 0), (0, 0)), dilation, out)
    monkeypatch.setattr(J.pooling, "_max_pool2d", zero_padded)
    assert not _fails(registry.get("layers.max_pool2d"), "zero padding").error


def test_mutant_dropout_survivors_not_scaled(monkeypatch):
    """Dropout that zeroes with the mask but forgets the 1/(1 − p) scale."""
    monkeypatch.setattr(J.layers, "_masked", jax.jit(lambda x, mask, scale: x * mask.astype(x.dtype)))
    assert not _fails(registry.get("layers.dropout"), "survivors not scaled").error


@pytest.mark.parametrize("wrong", ["plain linear conversion", "conv kh/kw swapped"])
def test_mutant_wrong_weight_conversion(wrong):
    """A conversion that transposes but forgets the flatten order, or mixes up the kernel axes."""
    if wrong == "plain linear conversion":
        c = dataclasses.replace(registry.get("layers.flatten_linear"), params_to_jax=convert.linear_torch_to_flax,
                                grads_to_torch=convert.linear_flax_to_torch)
    else:
        def swapped(sd):  # OIHW → WHIO instead of HWIO
            p = convert.conv_torch_to_flax(sd)
            return {**p, "kernel": p["kernel"].transpose(1, 0, 2, 3)}

        def square_kernels(rng, dt):  # a non-square swap changes shapes; square ones show the values
            return [s for s in conv.samples(rng, dt) if s.params["weight"].shape[2] == s.params["weight"].shape[3]]
        conv = registry.get("layers.conv2d")
        c = dataclasses.replace(conv, params_to_jax=swapped, samples=square_kernels)
    res = _fails(c, wrong)
    assert not res.error and any("out[0]" in f and "max abs err" in f for f in res.failures)
