"""A full-depth ResNet-50 (bottleneck blocks, depths 3, 4, 6, 3): the torch model is Hugging Face
`transformers`' own `ResNetModel`, built from a small random config (no weights are downloaded), and
the Flax NNX port is written by hand with the same attribute names, so the comparer pairs its 104
convolution and BatchNorm layers by name.

    parity compare examples/resnet50.py:torch_model examples/resnet50.py:flax_model --input-shape 2,3,32,32

`transformers` is an optional extra (`pip install -e ".[models]"`). What the port has to get right:

* every convolution pads k//2 on each side, as explicit pairs (nnx.Conv pads 'SAME' by default,
  which differs at stride 2: docs/traps.md, traps 5 and 6);
* BatchNorm: Flax's momentum is the old value's weight (0.9 for torch's 0.1, trap 11), epsilon 1e-5
  (Flax's default is 1e-5 for BatchNorm too, but say it), use_fast_variance=False (trap 13);
* the stem's max pooling pads with −inf (flax's max_pool does, as torch's MaxPool2d; trap 9);
* the model returns `last_hidden_state` and `pooler_output` (a mean over H and W, kept 4-D) in NHWC.

`flax_model(buggy=True)` plants one porting bug deep inside: the second BatchNorm of stage 3, block 4
gets epsilon 1e-3. Eval mode on the running statistics that `torch_model` gives every BatchNorm (as
a trained model has) makes it show.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx

HIDDEN = (8, 16, 24, 32)  # small widths: the depth is what this example is about
EMBEDDING = 8
DEPTHS = (3, 4, 6, 3)
REDUCTION = 4  # the bottleneck's inner width is out // 4
BUG_AT = (2, 3, 1)  # stage, block, conv layer whose BatchNorm gets the wrong epsilon in the buggy port


def torch_model():
    """transformers' ResNetModel (ResNet-50 layout) with random weights and running statistics."""
    from transformers import ResNetConfig, ResNetModel
    config = ResNetConfig(num_channels=3, embedding_size=EMBEDDING, hidden_sizes=list(HIDDEN),
                          depths=list(DEPTHS), layer_type="bottleneck", hidden_act="relu",
                          downsample_in_first_stage=False)
    torch.manual_seed(0)
    model = ResNetModel(config).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # statistics and affine parameters as a trained model has them
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.75)
                m.weight.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model


class ConvLayer(nnx.Module):
    """Conv (k//2 padding, no bias) → BatchNorm → ReLU or nothing: transformers' ResNetConvLayer."""

    def __init__(self, cin, cout, kernel=3, stride=1, relu=True, epsilon=1e-5, *, rngs):
        p = kernel // 2
        self.convolution = nnx.Conv(cin, cout, (kernel, kernel), strides=stride, padding=((p, p), (p, p)),
                                    use_bias=False, rngs=rngs)
        self.normalization = nnx.BatchNorm(cout, momentum=0.9, epsilon=epsilon, use_fast_variance=False,
                                           rngs=rngs)
        self.relu = relu

    def __call__(self, x):
        x = self.normalization(self.convolution(x))
        return jax.nn.relu(x) if self.relu else x


class ShortCut(nnx.Module):
    def __init__(self, cin, cout, stride, *, rngs):
        self.convolution = nnx.Conv(cin, cout, (1, 1), strides=stride, padding="VALID", use_bias=False, rngs=rngs)
        self.normalization = nnx.BatchNorm(cout, momentum=0.9, epsilon=1e-5, use_fast_variance=False, rngs=rngs)

    def __call__(self, x):
        return self.normalization(self.convolution(x))


class BottleNeck(nnx.Module):
    """1×1 reduce → 3×3 (the stride, as transformers puts it) → 1×1 expand, plus the shortcut."""

    def __init__(self, cin, cout, stride, epsilons=(1e-5, 1e-5, 1e-5), *, rngs):
        mid = cout // REDUCTION
        self.shortcut = ShortCut(cin, cout, stride, rngs=rngs) if cin != cout or stride != 1 else None
        self.layer = nnx.List([ConvLayer(cin, mid, 1, epsilon=epsilons[0], rngs=rngs),
                               ConvLayer(mid, mid, 3, stride, epsilon=epsilons[1], rngs=rngs),
                               ConvLayer(mid, cout, 1, relu=False, epsilon=epsilons[2], rngs=rngs)])

    def __call__(self, x):
        h = x
        for conv in self.layer:
            h = conv(h)
        return jax.nn.relu(h + (self.shortcut(x) if self.shortcut is not None else x))


class Stage(nnx.Module):
    def __init__(self, cin, cout, depth, stride, bug=None, *, rngs):
        def eps(j):
            return tuple(1e-3 if bug is not None and (j, k) == bug else 1e-5 for k in range(3))
        self.layers = nnx.List([BottleNeck(cin if j == 0 else cout, cout, stride if j == 0 else 1, eps(j), rngs=rngs)
                                for j in range(depth)])

    def __call__(self, x):
        for block in self.layers:
            x = block(x)
        return x


class Embeddings(nnx.Module):
    def __init__(self, *, rngs):
        self.embedder = ConvLayer(3, EMBEDDING, 7, 2, rngs=rngs)

    def __call__(self, x):
        return nnx.max_pool(self.embedder(x), (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))


class Encoder(nnx.Module):
    def __init__(self, bug=None, *, rngs):
        widths = (EMBEDDING,) + HIDDEN
        self.stages = nnx.List([
            Stage(widths[i], widths[i + 1], DEPTHS[i], 1 if i == 0 else 2,
                  bug=bug[1:] if bug is not None and bug[0] == i else None, rngs=rngs)
            for i in range(len(DEPTHS))])

    def __call__(self, x):
        for stage in self.stages:
            x = stage(x)
        return x


class FlaxResNetModel(nnx.Module):
    """The port: NHWC throughout; returns transformers' two outputs, in NHWC."""

    def __init__(self, bug=None, *, rngs):
        self.embedder = Embeddings(rngs=rngs)
        self.encoder = Encoder(bug, rngs=rngs)

    def __call__(self, pixel_values):
        h = self.encoder(self.embedder(pixel_values))
        return {"last_hidden_state": h, "pooler_output": jnp.mean(h, axis=(1, 2), keepdims=True)}


def flax_model(buggy: bool = False, *, rngs: nnx.Rngs | None = None):
    return FlaxResNetModel(BUG_AT if buggy else None, rngs=rngs or nnx.Rngs(0))


def buggy_flax_model(*, rngs: nnx.Rngs | None = None):
    """The port with one BatchNorm's epsilon wrong (for the command line: FILE.py:buggy_flax_model)."""
    return flax_model(True, rngs=rngs)


def example_input(n: int = 2, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, size, size)).astype(np.float32)
