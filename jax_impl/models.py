"""The seeds' models in Flax NNX: linear regression, LinearNet, SimpleNet and a small CNN (NHWC).

Images arrive as (N, H, W, C); torch's twins take (N, C, H, W). Flattening NHWC orders features
(H, W, C), torch's (C, H, W) (docs/traps.md, trap 4): equal for one channel, so only SmallCNN's first Linear needs
its rows permuted when weights are converted (parity/convert.py).
"""
import jax
import jax.numpy as jnp
from flax import nnx

from shape_rules import cnn_features

from jax_impl.conv import Conv2d
from jax_impl.layers import Flatten, Linear
from jax_impl.pooling import MaxPool2d


class LinearRegression(nnx.Module):
    """d2l's linear regression from scratch: ŷ = x·w + b with w (in, 1) ~ N(0, 0.01²), b = 0."""

    def __init__(self, in_features=2, *, dtype=jnp.float32, rngs):
        self.w = nnx.Param(0.01 * jax.random.normal(rngs.params(), (in_features, 1), dtype))
        self.b = nnx.Param(jnp.zeros((1,), dtype))

    def __call__(self, x):
        return x @ self.w[...] + self.b[...]


class LinearNet(nnx.Module):
    """Softmax regression: flatten the image, then one Linear to the class logits."""

    def __init__(self, in_features=784, num_classes=10, *, dtype=jnp.float32, rngs):
        self.flatten = Flatten()
        self.linear = Linear(in_features, num_classes, dtype=dtype, rngs=rngs)

    def __call__(self, x):
        return self.linear(self.flatten(x))


class SimpleNet(nnx.Module):
    """The seed's MLP: flatten, Linear(in, hidden), ReLU, Linear(hidden, classes)."""

    def __init__(self, in_features=784, hidden=128, num_classes=10, *, dtype=jnp.float32, rngs):
        self.flatten = Flatten()
        self.fc1 = Linear(in_features, hidden, dtype=dtype, rngs=rngs)
        self.fc2 = Linear(hidden, num_classes, dtype=dtype, rngs=rngs)

    def __call__(self, x):
        return self.fc2(jax.nn.relu(self.fc1(self.flatten(x))))


class SmallCNN(nnx.Module):
    """(Conv 3×3 → ReLU → MaxPool 2) × 2, flatten, Linear → ReLU → Linear, on NHWC images.

    28×28 with padding 0 gives 64·5·5 = 1600 features; the 8×8 digits need padding=1 (64·2·2).
    """

    def __init__(self, in_channels=1, image_size=28, channels=(32, 64), hidden=128, num_classes=10,
                 padding=0, *, dtype=jnp.float32, rngs):
        c1, c2 = channels
        self.conv1 = Conv2d(in_channels, c1, 3, padding=padding, dtype=dtype, rngs=rngs)
        self.conv2 = Conv2d(c1, c2, 3, padding=padding, dtype=dtype, rngs=rngs)
        self.pool, self.flatten = MaxPool2d(2), Flatten()
        self.fc1 = Linear(cnn_features(image_size, channels, padding), hidden, dtype=dtype, rngs=rngs)
        self.fc2 = Linear(hidden, num_classes, dtype=dtype, rngs=rngs)

    def __call__(self, x):
        x = self.pool(jax.nn.relu(self.conv1(x)))
        x = self.pool(jax.nn.relu(self.conv2(x)))
        return self.fc2(jax.nn.relu(self.fc1(self.flatten(x))))
