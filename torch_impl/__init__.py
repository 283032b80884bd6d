"""The PyTorch twin: torch.nn modules, NCHW layouts, torch.optim optimisers."""
from torch_impl import (activations, autograd, checks, conv, layers, losses, models, normalization, optim,
                        pooling, tensors, train)

__all__ = ["activations", "autograd", "checks", "conv", "layers", "losses", "models", "normalization",
           "optim", "pooling", "tensors", "train"]
