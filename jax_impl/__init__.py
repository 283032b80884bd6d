"""The JAX / Flax NNX twin: every concept jitted, NHWC layouts, optax optimisers."""
from jax_impl import (activations, autograd, conv, layers, losses, models, normalization, optim, pooling,
                      tensors, train)

__all__ = ["activations", "autograd", "conv", "layers", "losses", "models", "normalization",
           "optim", "pooling", "tensors", "train"]
