"""The JAX / Flax NNX twin: every concept jitted, NHWC layouts, optax optimisers."""
from jax_impl import (activations, autograd, checks, conv, layers, losses, models, normalization, optim,
                      pooling, tensors, train)

__all__ = ["activations", "autograd", "checks", "conv", "layers", "losses", "models", "normalization",
           "optim", "pooling", "tensors", "train"]
