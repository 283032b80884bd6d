"""The decoder half of a small UNet: two up blocks (a stride-2 transposed convolution, the encoder's
skip map concatenated, then two 3×3 convolutions each followed by GroupNorm and SiLU) and a 1×1
output convolution, written once with stock `torch.nn` and once with stock `flax.nnx` (NHWC inside).
The inputs are the bottleneck map and the two skip maps, all in torch's NCHW; the comparer hands
them to the Flax model as NHWC.

    parity compare examples/unet_decoder.py:torch_model examples/unet_decoder.py:flax_model \
        --input-shape 2,32,3,3 --input-shape 2,16,6,6 --input-shape 2,8,12,12

What the port has to get right:

* layout: NHWC activations and HWIO kernels (docs/traps.md, trap 3), so the skip concatenation is
  on axis -1 in Flax where torch concatenates on axis 1;
* ConvTranspose2d(k=3, stride=2, padding=1, output_padding=1) doubles the size. nnx.ConvTranspose
  (transpose_kernel=False) correlates the stride-dilated input with its kernel, so the kernel is
  flipped in space (the comparer's conversion does it) and the padding is explicit:
  (d(k−1)−p, d(k−1)−p+output_padding) = (1, 2) per axis; its default 'SAME' pads (2, 2), which keeps
  the shape and changes every value (docs/traps.md, "Transposed convolutions");
* every Conv2d's padding=1 as explicit pairs (nnx.Conv pads 'SAME' by default; traps 5 and 6);
* GroupNorm: nnx.GroupNorm defaults to 32 groups, epsilon 1e-6 and use_fast_variance=True; torch's
  has the group count given, eps 1e-5 and a two-pass variance: num_groups, epsilon=1e-5 and
  use_fast_variance=False are passed (trap 13, trap 14, "GroupNorm's defaults"); Flax groups
  adjacent channels of the last axis, as torch groups adjacent channels of axis 1;
* SiLU is x·sigmoid(x) in both (jax.nn.silu).

`flax_model(buggy=True)` plants one typical porting bug: the up block's nnx.ConvTranspose keeps its
default padding 'SAME'. The shapes still agree; the comparer names `blocks.0.up` as the first
divergence, with the padding note.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx
from torch import nn

BOTTLENECK = 32  # channels of the deepest map (3×3 in example_input)
STAGES = ((16, 16), (8, 8))  # (output channels, skip channels) of each up block
OUT_CHANNELS = 3
GROUPS = 4


# ---------------------------------------------------------------- torch
class TorchUpBlock(nn.Module):
    def __init__(self, cin, cskip, cout, groups=GROUPS):
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1)
        self.conv1 = nn.Conv2d(cout + cskip, cout, 3, padding=1)
        self.norm1 = nn.GroupNorm(groups, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, cout)
        self.act = nn.SiLU()

    def forward(self, x, skip):
        x = torch.cat([self.up(x), skip], dim=1)
        x = self.act(self.norm1(self.conv1(x)))
        return self.act(self.norm2(self.conv2(x)))


class TorchUNetDecoder(nn.Module):
    def __init__(self):
        super().__init__()
        cins = (BOTTLENECK,) + tuple(c for c, _ in STAGES[:-1])
        self.blocks = nn.ModuleList([TorchUpBlock(cin, cskip, cout) for cin, (cout, cskip) in zip(cins, STAGES)])
        self.head = nn.Conv2d(STAGES[-1][0], OUT_CHANNELS, 1)

    def forward(self, x, *skips):  # skips from the deepest up
        for block, skip in zip(self.blocks, skips):
            x = block(x, skip)
        return self.head(x)


def torch_model() -> TorchUNetDecoder:
    """The decoder with torch's initialisation, and GroupNorm affine parameters away from (1, 0), as a
    trained model has them (so a scale and a bias that were mixed up would show)."""
    torch.manual_seed(0)
    model = TorchUNetDecoder().eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.GroupNorm):
                m.weight.copy_(0.75 + 0.5 * torch.rand(m.num_channels, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.num_channels, generator=g))
    return model


# ---------------------------------------------------------------- Flax NNX (NHWC)
def _group_norm(channels, rngs):
    return nnx.GroupNorm(channels, num_groups=GROUPS, epsilon=1e-5, use_fast_variance=False, rngs=rngs)


class UpBlock(nnx.Module):
    def __init__(self, cin, cskip, cout, buggy=False, *, rngs: nnx.Rngs):
        # torch padding=1, output_padding=1, k=3: (k−1−1, k−1−1+1) = (1, 2) on each axis
        up_padding = "SAME" if buggy else ((1, 2), (1, 2))  # BUG when buggy: the default 'SAME' is (2, 2)
        self.up = nnx.ConvTranspose(cin, cout, (3, 3), strides=(2, 2), padding=up_padding, rngs=rngs)
        self.conv1 = nnx.Conv(cout + cskip, cout, (3, 3), padding=((1, 1), (1, 1)), rngs=rngs)
        self.norm1 = _group_norm(cout, rngs)
        self.conv2 = nnx.Conv(cout, cout, (3, 3), padding=((1, 1), (1, 1)), rngs=rngs)
        self.norm2 = _group_norm(cout, rngs)

    def __call__(self, x, skip):  # NHWC
        x = jnp.concatenate([self.up(x), skip], axis=-1)
        x = jax.nn.silu(self.norm1(self.conv1(x)))
        return jax.nn.silu(self.norm2(self.conv2(x)))


class FlaxUNetDecoder(nnx.Module):
    def __init__(self, buggy=False, *, rngs: nnx.Rngs):
        cins = (BOTTLENECK,) + tuple(c for c, _ in STAGES[:-1])
        self.blocks = nnx.List([UpBlock(cin, cskip, cout, buggy, rngs=rngs)
                                for cin, (cout, cskip) in zip(cins, STAGES)])
        self.head = nnx.Conv(STAGES[-1][0], OUT_CHANNELS, (1, 1), padding="VALID", rngs=rngs)

    def __call__(self, x, *skips):  # NHWC
        for block, skip in zip(self.blocks, skips):
            x = block(x, skip)
        return self.head(x)


def flax_model(buggy: bool = False, *, rngs: nnx.Rngs | None = None) -> FlaxUNetDecoder:
    return FlaxUNetDecoder(buggy, rngs=rngs or nnx.Rngs(0))


def buggy_flax_model(*, rngs: nnx.Rngs | None = None) -> FlaxUNetDecoder:
    """The port whose transposed convolutions pad 'SAME' (for the command line: FILE.py:buggy_flax_model)."""
    return flax_model(True, rngs=rngs)


def example_input(n: int = 2, size: int = 3, seed: int = 0) -> tuple[np.ndarray, ...]:
    """(bottleneck, skip at 2× its size, skip at 4×), NCHW float32."""
    rng = np.random.default_rng(seed)
    shapes = [(n, BOTTLENECK, size, size)] + [(n, cskip, size * 2 ** (i + 1), size * 2 ** (i + 1))
                                              for i, (_, cskip) in enumerate(STAGES)]
    return tuple(rng.standard_normal(s).astype(np.float32) for s in shapes)
