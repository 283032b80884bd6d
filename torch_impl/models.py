"""The seeds' models in PyTorch: linear regression, LinearNet, SimpleNet and a small CNN (NCHW).

Images arrive as (N, C, H, W); Flax's twins take (N, H, W, C) and flatten features in (H, W, C)
order (docs/traps.md, trap 4).
"""
import torch
from torch import nn

from shape_rules import cnn_features

from torch_impl.conv import Conv2d
from torch_impl.layers import Flatten, Linear
from torch_impl.pooling import MaxPool2d


class LinearRegression(nn.Module):
    """d2l's linear regression from scratch: ŷ = x·w + b with w (in, 1) ~ N(0, 0.01²), b = 0."""

    def __init__(self, in_features=2, *, dtype=torch.float32):
        super().__init__()
        self.w = nn.Parameter(0.01 * torch.randn(in_features, 1, dtype=dtype))
        self.b = nn.Parameter(torch.zeros(1, dtype=dtype))

    def forward(self, x):
        return x @ self.w + self.b


class LinearNet(nn.Module):
    """Softmax regression: flatten the image, then one Linear to the class logits."""

    def __init__(self, in_features=784, num_classes=10, *, dtype=torch.float32):
        super().__init__()
        self.flatten = Flatten()
        self.linear = Linear(in_features, num_classes, dtype=dtype)

    def forward(self, x):
        return self.linear(self.flatten(x))


class SimpleNet(nn.Module):
    """The seed's MLP: flatten, Linear(in, hidden), ReLU, Linear(hidden, classes)."""

    def __init__(self, in_features=784, hidden=128, num_classes=10, *, dtype=torch.float32):
        super().__init__()
        self.flatten = Flatten()
        self.fc1 = Linear(in_features, hidden, dtype=dtype)
        self.fc2 = Linear(hidden, num_classes, dtype=dtype)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(self.flatten(x))))


class SmallCNN(nn.Module):
    """(Conv 3×3 → ReLU → MaxPool 2) × 2, flatten, Linear → ReLU → Linear, on NCHW images.

    28×28 with padding 0 gives 64·5·5 = 1600 features; the 8×8 digits need padding=1 (64·2·2).
    """

    def __init__(self, in_channels=1, image_size=28, channels=(32, 64), hidden=128, num_classes=10,
                 padding=0, *, dtype=torch.float32):
        super().__init__()
        c1, c2 = channels
        self.conv1 = Conv2d(in_channels, c1, 3, padding=padding, dtype=dtype)
        self.conv2 = Conv2d(c1, c2, 3, padding=padding, dtype=dtype)
        self.pool, self.flatten = MaxPool2d(2), Flatten()
        self.fc1 = Linear(cnn_features(image_size, channels, padding), hidden, dtype=dtype)
        self.fc2 = Linear(hidden, num_classes, dtype=dtype)

    def forward(self, x):
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        return self.fc2(torch.relu(self.fc1(self.flatten(x))))
