"""The ResNet-style block of resnet_block.py ported with one deliberate, typical bug: the strided
3×3 convolution `conv1` keeps nnx.Conv's default padding 'SAME' (docs/traps.md, traps 5 and 6).

At stride 2 on an even input, Flax's 'SAME' pads (0, 1) — nothing before, one pixel after — while
torch's padding=1 pads (1, 1). Both give 16×16 from 32×32, so nothing crashes; every value differs.

    parity compare examples/resnet_block.py:torch_model examples/resnet_block_buggy.py:flax_model \
        --input-shape 8,3,32,32

exits 1 and names `conv1` on both sides as the first divergence (its input agrees, its output
does not), with the padding note "torch ((1, 1), (1, 1)), Flax padding='SAME', i.e. ((0, 1), (0, 1))".
"""
from flax import nnx

from resnet_block import FlaxResNetBlock


class BuggyFlaxResNetBlock(FlaxResNetBlock):
    def __init__(self, in_channels=3, channels=16, num_classes=10, *, rngs: nnx.Rngs):
        super().__init__(in_channels, channels, num_classes, rngs=rngs)
        # BUG (deliberate): padding left at its default 'SAME'; torch's conv1 has padding=1
        self.conv1 = nnx.Conv(channels, 2 * channels, (3, 3), strides=2, use_bias=False, rngs=rngs)


def flax_model(*, rngs: nnx.Rngs, **kwargs) -> BuggyFlaxResNetBlock:
    return BuggyFlaxResNetBlock(**kwargs, rngs=rngs)
