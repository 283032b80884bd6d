"""A wav2vec2-style feature encoder on raw audio: a stack of strided Conv1d layers without bias (the
first followed by a per-channel GroupNorm, every one by GELU), then the feature projection (a
LayerNorm and a Linear over the channels of the (N, L, C) sequence), written once with stock
`torch.nn` and once with stock `flax.nnx`.

The input is raw audio (N, 1, L). The Flax model takes it in torch's layout at its boundary and moves
the channels last itself (`x.transpose(0, 2, 1)`), so compare with layout="nchw" (a 3-D input is
never transposed by the comparer anyway; the option says what the Flax model expects):

    parity compare examples/audio_conv1d.py:torch_model examples/audio_conv1d.py:flax_model \
        --input-shape 2,1,400 --layout nchw

What the port has to get right:

* layout: nnx.Conv is channels-last, (N, L, C) with a (k, I, O) kernel (docs/traps.md, trap 3);
  the Flax model transposes once on the way in, and the conv stack's output is then already the
  (N, L, C) sequence that torch gets with `.transpose(1, 2)`;
* padding: torch's Conv1d pads nothing; nnx.Conv pads 'SAME' unless told 'VALID' (traps 5 and 6);
* GroupNorm(C, C), one group per channel, normalised over time: num_groups=C, epsilon=1e-5 and
  use_fast_variance=False (nnx.GroupNorm defaults to 32 groups, 1e-6 and the one-pass variance;
  traps 13 and 14, "GroupNorm's defaults");
* GELU: torch's nn.GELU is exact (erf); jax.nn.gelu defaults to the tanh approximation (trap 15):
  approximate=False. The Flax port keeps the activation as a small parameterless `GELU` module, as
  torch does, so the comparer pairs the two by class name and checks each activation's output;
* LayerNorm: eps 1e-5 in torch, 1e-6 in nnx.LayerNorm (trap 14); two-pass variance (trap 13);
* Linear: (out, in) ⇄ (in, out), done by the weight conversion (trap 2).

`flax_model(buggy=True)` plants one typical porting bug: every GELU uses jax.nn.gelu's default
approximate=True. The comparer names the first one, `conv_layers.0.activation`, as the first
divergence (its input agrees, its output parts by up to about 5e-4).
"""
from __future__ import annotations

import jax
import numpy as np
import torch
from flax import nnx
from torch import nn

CHANNELS = 32
HIDDEN = 24  # the projection's width
LAYERS = ((10, 5), (3, 2), (3, 2), (2, 2))  # (kernel, stride) of each convolution (wav2vec2's, fewer)
LENGTH = 400  # samples in example_input: 79, 39, 19, 9 frames after each convolution


# ---------------------------------------------------------------- torch
class TorchConvLayer(nn.Module):
    def __init__(self, cin, cout, kernel, stride, group_norm=False):
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, kernel, stride=stride, bias=False)
        self.norm = nn.GroupNorm(cout, cout) if group_norm else None
        self.activation = nn.GELU()

    def forward(self, x):  # (N, C, L)
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x)
        return self.activation(x)


class TorchFeatureEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv_layers = nn.ModuleList([
            TorchConvLayer(1 if i == 0 else CHANNELS, CHANNELS, k, s, group_norm=i == 0)
            for i, (k, s) in enumerate(LAYERS)])
        self.layer_norm = nn.LayerNorm(CHANNELS)
        self.projection = nn.Linear(CHANNELS, HIDDEN)

    def forward(self, audio):  # (N, 1, L)
        x = audio
        for layer in self.conv_layers:
            x = layer(x)
        x = x.transpose(1, 2)  # (N, frames, C)
        return self.projection(self.layer_norm(x))


def torch_model() -> TorchFeatureEncoder:
    """The encoder with torch's initialisation, and normalisation affine parameters away from (1, 0),
    as a trained model has them."""
    torch.manual_seed(0)
    model = TorchFeatureEncoder().eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.GroupNorm, nn.LayerNorm)):
                m.weight.copy_(0.75 + 0.5 * torch.rand(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
    return model


# ---------------------------------------------------------------- Flax NNX (channels last inside)
class GELU(nnx.Module):
    """The activation as a layer, as torch has it (parameterless: paired with nn.GELU by class name)."""

    def __init__(self, approximate: bool = False):
        self.approximate = approximate

    def __call__(self, x):
        return jax.nn.gelu(x, approximate=self.approximate)


class ConvLayer(nnx.Module):
    def __init__(self, cin, cout, kernel, stride, group_norm=False, buggy=False, *, rngs: nnx.Rngs):
        self.conv = nnx.Conv(cin, cout, (kernel,), strides=(stride,), padding="VALID", use_bias=False, rngs=rngs)
        self.norm = nnx.GroupNorm(cout, num_groups=cout, epsilon=1e-5, use_fast_variance=False,
                                  rngs=rngs) if group_norm else None
        self.activation = GELU(approximate=buggy)  # BUG when buggy: jax.nn.gelu's default, the tanh form

    def __call__(self, x):  # (N, L, C)
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x)
        return self.activation(x)


class FlaxFeatureEncoder(nnx.Module):
    def __init__(self, buggy=False, *, rngs: nnx.Rngs):
        self.conv_layers = nnx.List([
            ConvLayer(1 if i == 0 else CHANNELS, CHANNELS, k, s, group_norm=i == 0, buggy=buggy, rngs=rngs)
            for i, (k, s) in enumerate(LAYERS)])
        self.layer_norm = nnx.LayerNorm(CHANNELS, epsilon=1e-5, use_fast_variance=False, rngs=rngs)
        self.projection = nnx.Linear(CHANNELS, HIDDEN, rngs=rngs)

    def __call__(self, audio):  # (N, 1, L), torch's layout
        x = audio.transpose(0, 2, 1)  # (N, L, 1): channels last from here on
        for layer in self.conv_layers:
            x = layer(x)
        return self.projection(self.layer_norm(x))  # (N, frames, C) already


def flax_model(buggy: bool = False, *, rngs: nnx.Rngs | None = None) -> FlaxFeatureEncoder:
    return FlaxFeatureEncoder(buggy, rngs=rngs or nnx.Rngs(0))


def buggy_flax_model(*, rngs: nnx.Rngs | None = None) -> FlaxFeatureEncoder:
    """The port whose GELUs use the tanh approximation (for the command line: FILE.py:buggy_flax_model)."""
    return flax_model(True, rngs=rngs)


def example_input(n: int = 2, length: int = LENGTH, seed: int = 0) -> np.ndarray:
    """Raw audio (N, 1, L), float32: a few tones in noise, at the scale of normalised waveforms."""
    rng = np.random.default_rng(seed)
    t = np.arange(length) / 16000.0
    tones = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi, (n, 1)))
                for f in rng.uniform(100, 4000, 3))
    audio = 0.3 * tones + 0.1 * rng.standard_normal((n, length))
    return audio[:, None, :].astype(np.float32)
