"""The seeds' CNN in the project's own twins: `torch_impl.models.SmallCNN` (NCHW) and
`jax_impl.models.SmallCNN` (NHWC), sized for the 8×8 digits (padding 1, channels 16 and 32).

    parity compare examples/small_cnn.py:torch_model examples/small_cnn.py:flax_model --input-shape 8,1,8,8

Both twins name their layers alike, so they pair by name. `fc1` reads the flattened 32×2×2 map,
which torch flattens in (C, H, W) order and the NHWC twin in (H, W, C) order (docs/traps.md,
trap 4): the comparer sees it in the data and permutes the weight's rows. The pooling layer is one
module called twice: the table has a row per call.
"""
from flax import nnx

import jax_impl.models
import torch_impl.models

KWARGS = dict(in_channels=1, image_size=8, channels=(16, 32), hidden=64, num_classes=10, padding=1)


def torch_model() -> torch_impl.models.SmallCNN:
    return torch_impl.models.SmallCNN(**KWARGS)


def flax_model(*, rngs: nnx.Rngs) -> jax_impl.models.SmallCNN:
    return jax_impl.models.SmallCNN(**KWARGS, rngs=rngs)
