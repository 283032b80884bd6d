"""A ResNet-style block, written once with stock `torch.nn` and once with stock `flax.nnx`.

Compare the two (the weights are converted from torch into the Flax model):

    parity compare examples/resnet_block.py:torch_model examples/resnet_block.py:flax_model \
        --input-shape 8,3,32,32

What the port has to get right, and where it does:

* layout: Flax convolutions take NHWC and an HWIO kernel (docs/traps.md, trap 3); the comparer
  transposes the input and converts the kernels, the model itself just works in NHWC;
* padding: nnx.Conv pads 'SAME' by default and reads it differently at stride 2 (traps 5, 6), so
  every convolution gets torch's padding as explicit (low, high) pairs;
* BatchNorm: Flax's momentum is the weight of the old value (torch 0.1 ⇔ Flax 0.9, trap 11) and its
  fast variance loses digits (trap 13); epsilon 1e-5 is the default in both;
* AdaptiveAvgPool2d(1) is a mean over the spatial axes, which are (1, 2) in NHWC.

The torch stem is an nn.Sequential and the Flax one two attributes, so the names differ and the
layers are paired in execution order.
"""
import jax
import jax.numpy as jnp
import torch
from flax import nnx
from torch import nn


class TorchResNetBlock(nn.Module):
    def __init__(self, in_channels=3, channels=16, num_classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(channels), nn.ReLU())
        # the residual block: 3×3 stride 2, 3×3, and a 1×1 stride-2 shortcut
        self.conv1 = nn.Conv2d(channels, 2 * channels, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(2 * channels)
        self.conv2 = nn.Conv2d(2 * channels, 2 * channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(2 * channels)
        self.shortcut = nn.Conv2d(channels, 2 * channels, 1, stride=2, bias=False)
        self.shortcut_bn = nn.BatchNorm2d(2 * channels)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * channels, num_classes)

    def forward(self, x):
        x = self.stem(x)
        h = self.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        h = self.relu(h + self.shortcut_bn(self.shortcut(x)))
        return self.fc(torch.flatten(self.pool(h), 1))


def _bn(channels, rngs):
    return nnx.BatchNorm(channels, momentum=0.9, epsilon=1e-5, use_fast_variance=False, rngs=rngs)


def _pad(p):
    return ((p, p), (p, p))


class FlaxResNetBlock(nnx.Module):
    def __init__(self, in_channels=3, channels=16, num_classes=10, *, rngs: nnx.Rngs):
        c2 = 2 * channels
        self.stem_conv = nnx.Conv(in_channels, channels, (3, 3), padding=_pad(1), use_bias=False, rngs=rngs)
        self.stem_bn = _bn(channels, rngs)
        self.conv1 = nnx.Conv(channels, c2, (3, 3), strides=2, padding=_pad(1), use_bias=False, rngs=rngs)
        self.bn1 = _bn(c2, rngs)
        self.conv2 = nnx.Conv(c2, c2, (3, 3), padding=_pad(1), use_bias=False, rngs=rngs)
        self.bn2 = _bn(c2, rngs)
        self.shortcut = nnx.Conv(channels, c2, (1, 1), strides=2, padding=_pad(0), use_bias=False, rngs=rngs)
        self.shortcut_bn = _bn(c2, rngs)
        self.fc = nnx.Linear(c2, num_classes, rngs=rngs)

    def __call__(self, x):  # x: (N, H, W, C)
        x = jax.nn.relu(self.stem_bn(self.stem_conv(x)))
        h = jax.nn.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        h = jax.nn.relu(h + self.shortcut_bn(self.shortcut(x)))
        return self.fc(jnp.mean(h, axis=(1, 2)))


def with_trained_statistics(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm the kind of affine parameters and running statistics a trained model has
    (a fresh one normalises by mean 0, variance 1: eval mode would barely test it)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(0.5 + torch.rand(n, generator=g))
                m.bias.copy_(0.2 * torch.randn(n, generator=g))
                m.running_mean.copy_(0.3 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + torch.rand(n, generator=g))
    return model


def torch_model(**kwargs) -> TorchResNetBlock:
    return with_trained_statistics(TorchResNetBlock(**kwargs))


def flax_model(*, rngs: nnx.Rngs, **kwargs) -> FlaxResNetBlock:
    return FlaxResNetBlock(**kwargs, rngs=rngs)
