"""Both Trainers predict in eval mode: Dropout is the identity and BatchNorm uses its running statistics.

A small model with BatchNorm2d and Dropout(p=0.5) gets the same weights in both twins; their
predictions must then agree, and the JAX prediction must be the model's eval-mode output.
"""
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import jax_impl as J
import torch_impl as T


class JaxNet(nnx.Module):
    """BatchNorm → Dropout → global average pool → Linear on NHWC input."""

    def __init__(self, *, rngs):
        self.bn = J.normalization.BatchNorm2d(3, dtype=jnp.float64)
        self.drop = J.layers.Dropout(0.5, rngs=rngs)
        self.pool, self.flatten = J.pooling.AdaptiveAvgPool2d(1), J.layers.Flatten()
        self.fc = J.layers.Linear(3, 4, dtype=jnp.float64, rngs=rngs)

    def __call__(self, x):
        return self.fc(self.flatten(self.pool(self.drop(self.bn(x)))))


class TorchNet(torch.nn.Module):
    """The same model on NCHW input."""

    def __init__(self):
        super().__init__()
        self.bn = T.normalization.BatchNorm2d(3, dtype=torch.float64)
        self.drop = T.layers.Dropout(0.5)
        self.pool, self.flatten = T.pooling.AdaptiveAvgPool2d(1), T.layers.Flatten()
        self.fc = T.layers.Linear(3, 4, dtype=torch.float64)

    def forward(self, x):
        return self.fc(self.flatten(self.pool(self.drop(self.bn(x)))))


def _twins():
    """The two models with identical weights and non-trivial running statistics, and an input."""
    rng = np.random.default_rng(0)
    w = {"weight": rng.uniform(0.5, 1.5, 3), "bias": rng.standard_normal(3),
         "running_mean": rng.standard_normal(3), "running_var": rng.uniform(0.5, 2.0, 3),
         "fc_weight": rng.standard_normal((4, 3)), "fc_bias": rng.standard_normal(4)}
    tm = TorchNet()
    with torch.no_grad():
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(tm.bn, name).copy_(torch.from_numpy(w[name]))
        tm.fc.weight.copy_(torch.from_numpy(w["fc_weight"]))
        tm.fc.bias.copy_(torch.from_numpy(w["fc_bias"]))
    jm = JaxNet(rngs=nnx.Rngs(0))
    jm.bn.scale[...], jm.bn.bias[...] = jnp.asarray(w["weight"]), jnp.asarray(w["bias"])
    jm.bn.mean[...], jm.bn.var[...] = jnp.asarray(w["running_mean"]), jnp.asarray(w["running_var"])
    jm.fc.kernel[...], jm.fc.bias[...] = jnp.asarray(w["fc_weight"].T), jnp.asarray(w["fc_bias"])
    x = rng.standard_normal((8, 3, 5, 5))
    return jm, tm, x


def _trainers():
    jm, tm, x = _twins()
    jt = J.train.Trainer(jm, J.optim.sgd(lr=0.1), J.losses.cross_entropy)
    tt = T.train.Trainer(tm, T.optim.sgd(lr=0.1), T.losses.cross_entropy)
    return jm, tm, jt, tt, jnp.asarray(x.transpose(0, 2, 3, 1)), torch.from_numpy(x)


def test_both_twins_predict_alike_from_identical_weights():
    _, tm, jt, tt, jx, tx = _trainers()
    got, want = np.asarray(jt.predict(jx)), tt.predict(tx).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    # torch's own eval-mode forward pass, as a reference independent of the Trainers
    with torch.no_grad():
        np.testing.assert_allclose(want, tm.eval()(tx).numpy(), rtol=0, atol=0)
    assert jt.accuracy(jx, jnp.arange(8) % 4) == tt.accuracy(tx, torch.arange(8) % 4)


def test_jax_predict_is_the_eval_mode_output_and_compiles_once():
    jm, _, jt, _, jx, _ = _trainers()
    first, second = np.asarray(jt.predict(jx)), np.asarray(jt.predict(jx))
    np.testing.assert_array_equal(first, second)
    assert jt._predict._cache_size() == 1, "predict compiled again on a second call"
    model = jt.model
    model.eval()
    np.testing.assert_allclose(first, np.asarray(model(jx)), rtol=1e-12, atol=1e-12)
    model.train()  # the training-mode output drops units and normalises with the batch's statistics
    assert not np.allclose(first, np.asarray(model(jx)))


def test_training_mode_is_kept_for_steps_and_the_callers_model():
    """Predicting does not leave either model in eval mode; a step still updates running statistics."""
    jm, tm, jt, tt, jx, tx = _trainers()
    y = jnp.arange(8) % 4
    jt.predict(jx), tt.predict(tx)
    assert tm.training and tm.drop.training and tm.bn.training
    assert not jm.drop.deterministic and not jm.bn.use_running_average  # the caller's module, untouched
    trained = jt.model
    assert not trained.drop.deterministic and not trained.bn.use_running_average
    before = np.asarray(jt.model.bn.mean[...])
    jt.step(jx, y)
    assert int(jt.model.bn.num_batches_tracked[...]) == 1
    assert not np.allclose(np.asarray(jt.model.bn.mean[...]), before)


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_jax_trainer_trains_in_training_mode_whatever_the_callers_mode(mode):
    """As torch's Trainer calls `model.train()`, the JAX Trainer steps in training mode even for a
    model handed over in eval mode (and leaves that model's mode alone)."""
    jm, _, _, _, jx, _ = _trainers()
    getattr(jm, mode)()
    jt = J.train.Trainer(jm, J.optim.sgd(lr=0.1), J.losses.cross_entropy)
    jt.step(jx, jnp.arange(8) % 4)
    assert int(jt.model.bn.num_batches_tracked[...]) == 1
    assert jm.drop.deterministic == (mode == "eval")
