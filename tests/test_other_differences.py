"""Framework differences found while twinning torch's options (docs/traps.md, "Other differences
found along the way"). Each test shows the stock behaviour first, then that both twins follow torch."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import jax_impl as J
import torch_impl as T


def test_flax_batchnorm_on_an_empty_batch_writes_nan_statistics():
    """nnx.BatchNorm averages over zero elements and stores nan; torch leaves the running statistics
    and still counts the batch. The twins do what torch does."""
    stock = nnx.BatchNorm(3, rngs=nnx.Rngs(0))
    stock(jnp.zeros((0, 4, 4, 3), jnp.float32))
    assert np.isnan(np.asarray(stock.mean[...])).all() and np.isnan(np.asarray(stock.var[...])).all()
    ref = torch.nn.BatchNorm2d(3)
    assert ref(torch.zeros(0, 3, 4, 4)).shape == (0, 3, 4, 4)
    assert ref.running_mean.eq(0).all() and ref.running_var.eq(1).all() and ref.num_batches_tracked == 1
    j, t = J.normalization.BatchNorm2d(3), T.normalization.BatchNorm2d(3)
    assert j(jnp.zeros((0, 4, 4, 3), jnp.float32)).shape == (0, 4, 4, 3) and t(torch.zeros(0, 3, 4, 4)).shape == (0, 3, 4, 4)
    for mean, var, count in ((j.mean[...], j.var[...], j.num_batches_tracked[...]),
                             (t.running_mean, t.running_var, t.num_batches_tracked)):
        assert np.array_equal(np.asarray(mean), np.zeros(3)) and np.array_equal(np.asarray(var), np.ones(3))
        assert int(count) == 1


def test_jax_softmax_refuses_a_0d_array_torch_returns_one():
    with pytest.raises(ValueError, match="out of bounds"):
        jax.nn.softmax(jnp.asarray(2.0))
    assert torch.softmax(torch.tensor(2.0), 0).item() == 1.0
    for dim in (0, -1):
        assert float(J.activations.softmax(jnp.asarray(2.0), dim)) == 1.0
        assert T.activations.softmax(torch.tensor(2.0), dim).item() == 1.0
        assert float(J.activations.log_softmax(jnp.asarray(2.0), dim)) == 0.0


def test_torch_mishandles_one_element_tuples_where_the_twins_broadcast_them():
    """torch's MaxPool2d broadcasts kernel_size=(2,), its MaxUnpool2d does not; its Conv2d with a
    padding_mode other than 'zeros' fails on padding=(1,) and pads the height only for 'same' with
    dilation=(1,). Both twins broadcast every one-element tuple as a pair."""
    x = torch.randn(1, 2, 4, 4)
    y, idx = torch.nn.MaxPool2d((2,), return_indices=True)(x)
    with pytest.raises(RuntimeError, match="exactly two elements"):
        torch.nn.MaxUnpool2d((2,))(y, idx)
    assert torch.equal(T.pooling.MaxUnpool2d((2,))(y, idx), torch.nn.MaxUnpool2d(2)(y, idx))
    with pytest.raises(NotImplementedError):
        torch.nn.Conv2d(2, 2, 3, padding=(1,), padding_mode="reflect")(x)
    assert torch.nn.Conv2d(2, 2, 3, padding="same", dilation=(1,), padding_mode="reflect")(x).shape == (1, 2, 4, 2)
    for kw in ({"padding": (1,)}, {"padding": "same", "dilation": (1,)}):
        t = T.conv.Conv2d(2, 2, 3, padding_mode="reflect", **kw)
        j = J.conv.Conv2d(2, 2, 3, padding_mode="reflect", **kw, rngs=nnx.Rngs(0))
        assert t(x).shape == (1, 2, 4, 4) and j(jnp.zeros((1, 4, 4, 2), jnp.float32)).shape == (1, 4, 4, 2)
