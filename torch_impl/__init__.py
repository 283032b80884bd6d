"""The PyTorch twin: torch.nn modules, NCHW layouts, torch.optim optimisers."""
from torch_impl import activations, autograd, layers, losses, tensors

__all__ = ["activations", "autograd", "layers", "losses", "tensors"]
