"""The JAX / Flax NNX twin: every concept jitted, NHWC layouts, optax optimisers."""
from jax_impl import activations, autograd, layers, losses, tensors

__all__ = ["activations", "autograd", "layers", "losses", "tensors"]
