"""Bad input to the CNN layers: both twins reject it with an error naming the parameter and what it
expected. Each case builds and calls the layer in one framework; inputs are in that framework's layout."""
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import jax_impl as J
import torch_impl as T


def _x(fw, n, c, h, w):
    """A zero input of N, C, H, W in the framework's own layout."""
    return torch.zeros(n, c, h, w) if fw == "torch" else jnp.zeros((n, h, w, c), jnp.float32)


def _mod(fw, path, *args, **kw):
    lib = T if fw == "torch" else J
    module_name, cls = path.split(".")
    if fw == "jax" and path in ("conv.Conv2d",):
        kw["rngs"] = nnx.Rngs(0)
    return getattr(getattr(lib, module_name), cls)(*args, **kw)


# id: (build-and-call, exception type, message pattern)
CASES = {
    "conv wrong channel count": (
        lambda fw: _mod(fw, "conv.Conv2d", 3, 4, 3)(_x(fw, 1, 4, 8, 8)), ValueError,
        r"Conv2d: expected in_channels=3 channels .* got 4"),
    "batchnorm wrong channel count": (
        lambda fw: _mod(fw, "normalization.BatchNorm2d", 3)(_x(fw, 2, 2, 4, 4)), ValueError,
        r"BatchNorm2d: expected num_features=3 channels .* got 2"),
    "conv kernel larger than the padded input": (
        lambda fw: _mod(fw, "conv.Conv2d", 1, 1, 5, padding=0)(_x(fw, 1, 1, 4, 4)), ValueError,
        r"Conv2d: kernel_size 5 .* larger than the padded input height 4"),
    "conv dilated kernel larger than the padded input": (
        lambda fw: _mod(fw, "conv.Conv2d", 1, 1, 3, padding=1, dilation=3)(_x(fw, 1, 1, 4, 4)), ValueError,
        r"Conv2d: kernel_size 3 \(dilated extent 7\) is larger than the padded input height 6"),
    "max pool kernel larger than the padded input": (
        lambda fw: _mod(fw, "pooling.MaxPool2d", 5)(_x(fw, 1, 1, 4, 4)), ValueError,
        r"MaxPool2d: kernel_size 5 .* larger than the padded input height 4"),
    "avg pool kernel larger than the padded input": (
        lambda fw: _mod(fw, "pooling.AvgPool2d", (2, 6), padding=1)(_x(fw, 1, 1, 4, 3)), ValueError,
        r"AvgPool2d: kernel_size 6 .* larger than the padded input width 5"),
    "max pool dilated window over padding only": (
        lambda fw: _mod(fw, "pooling.MaxPool2d", 2, padding=1, dilation=2, ceil_mode=True)(_x(fw, 1, 1, 1, 6)),
        ValueError, r"MaxPool2d: with dilation 2, the window at output height index 0 reads only padding"),
    "conv stride 0": (lambda fw: _mod(fw, "conv.Conv2d", 1, 1, 3, stride=0), ValueError,
                      r"Conv2d: stride must be >= 1, got 0"),
    "max pool stride 0": (lambda fw: _mod(fw, "pooling.MaxPool2d", 2, stride=(1, 0)), ValueError,
                          r"MaxPool2d: stride must be >= 1, got \(1, 0\)"),
    "avg pool stride 0": (lambda fw: _mod(fw, "pooling.AvgPool2d", 2, stride=0), ValueError,
                          r"AvgPool2d: stride must be >= 1"),
    "conv negative padding": (lambda fw: _mod(fw, "conv.Conv2d", 1, 1, 3, padding=-1), ValueError,
                              r"Conv2d: padding must be >= 0, got -1"),
    "max pool negative padding": (lambda fw: _mod(fw, "pooling.MaxPool2d", 3, padding=(0, -1)), ValueError,
                                  r"MaxPool2d: padding must be >= 0"),
    "pool padding over half the kernel": (lambda fw: _mod(fw, "pooling.AvgPool2d", 2, padding=2), ValueError,
                                          r"AvgPool2d: padding must be at most half of kernel_size"),
    "conv unknown padding string": (lambda fw: _mod(fw, "conv.Conv2d", 1, 1, 3, padding="SAME"), ValueError,
                                    r"Conv2d: padding must be an int, a pair, 'same' or 'valid', got 'SAME'"),
    "conv 'same' with stride 2": (lambda fw: _mod(fw, "conv.Conv2d", 1, 1, 3, stride=2, padding="same"),
                                  ValueError, r"Conv2d: padding='same' needs stride=1"),
    "conv groups not dividing in_channels": (
        lambda fw: _mod(fw, "conv.Conv2d", 3, 6, 3, groups=2), ValueError,
        r"Conv2d: groups must .* dividing in_channels=3 and out_channels=6, got groups=2"),
    "conv groups not dividing out_channels": (lambda fw: _mod(fw, "conv.Conv2d", 4, 6, 3, groups=4), ValueError,
                                              r"Conv2d: groups must .*got groups=4"),
    "conv kernel not an int": (lambda fw: _mod(fw, "conv.Conv2d", 1, 1, 2.5), TypeError,
                               r"Conv2d: kernel_size must be an int or a pair of ints, got 2.5"),
    # unbatched (C, H, W) input is accepted, as torch does; 2-D input is refused alike
    "conv 2-D input": (lambda fw: _mod(fw, "conv.Conv2d", 3, 4, 3)(_x(fw, 1, 3, 8, 8)[0, 0]), ValueError,
                       r"Conv2d: expected a 3-D .* or 4-D .* input, got a 2-D input"),
    "max pool 2-D input": (lambda fw: _mod(fw, "pooling.MaxPool2d", 2)(_x(fw, 1, 3, 8, 8)[0, 0]), ValueError,
                           r"MaxPool2d: expected a 3-D .* or 4-D .* input, got a 2-D input"),
    "avg pool 2-D input": (lambda fw: _mod(fw, "pooling.AvgPool2d", 2)(_x(fw, 1, 3, 8, 8)[0, 0]), ValueError,
                           r"AvgPool2d: expected a 3-D .* or 4-D .* input, got a 2-D input"),
    "adaptive pool 2-D input": (lambda fw: _mod(fw, "pooling.AdaptiveAvgPool2d", 2)(_x(fw, 1, 3, 8, 8)[0, 0]),
                                ValueError, r"AdaptiveAvgPool2d: expected a 3-D .* or 4-D .* input, got a 2-D input"),
    "adaptive pool output size 0": (lambda fw: _mod(fw, "pooling.AdaptiveAvgPool2d", (2, 0)), ValueError,
                                    r"AdaptiveAvgPool2d: output_size must be >= 1"),
    "batchnorm 3-D input": (lambda fw: _mod(fw, "normalization.BatchNorm2d", 3)(_x(fw, 1, 3, 8, 8)[0]),
                            ValueError, r"BatchNorm2d: expected a 4-D input"),
    "batchnorm one value per channel in training": (
        lambda fw: _mod(fw, "normalization.BatchNorm2d", 3)(_x(fw, 1, 3, 1, 1)), ValueError,
        r"BatchNorm2d: expected more than 1 value per channel when training"),
    "batchnorm momentum outside [0, 1]": (lambda fw: _mod(fw, "normalization.BatchNorm2d", 3, momentum=1.5),
                                          ValueError, r"BatchNorm2d: momentum must be in \[0, 1\]"),
    "dropout p outside [0, 1]": (lambda fw: _mod(fw, "layers.Dropout", 1.5), ValueError,
                                 r"Dropout: p must be a probability in \[0, 1\], got 1.5"),
    "dropout mask of another shape": (
        lambda fw: _mod(fw, "layers.Dropout", 0.5)(_x(fw, 1, 2, 3, 3), _x(fw, 1, 2, 3, 2)),
        ValueError, r"Dropout: mask must have the input's shape"),
    "flatten 1-D input": (lambda fw: _mod(fw, "layers.Flatten")(_x(fw, 1, 1, 1, 4).reshape(4)), ValueError,
                          r"Flatten: expected an input with a batch axis"),
}


@pytest.mark.parametrize("fw", ["jax", "torch"])
@pytest.mark.parametrize("case", list(CASES))
def test_both_twins_reject(case, fw):
    build_and_call, exc, pattern = CASES[case]
    with pytest.raises(exc, match=pattern):
        build_and_call(fw)


def test_good_input_next_to_each_bad_one_is_accepted():
    """The boundary cases just inside the limits run in both (so the checks are not too strict)."""
    for fw in ("jax", "torch"):
        _mod(fw, "conv.Conv2d", 1, 1, 4, padding=0)(_x(fw, 1, 1, 4, 4))  # kernel = input
        _mod(fw, "conv.Conv2d", 4, 6, 3, groups=2)(_x(fw, 1, 4, 3, 3))
        _mod(fw, "pooling.MaxPool2d", 3, stride=3, ceil_mode=True)(_x(fw, 1, 1, 2, 2))  # torch allows it
        _mod(fw, "pooling.AvgPool2d", 2, padding=1)(_x(fw, 1, 1, 1, 1))
        _mod(fw, "normalization.BatchNorm2d", 3)(_x(fw, 2, 3, 1, 1))
        assert np.asarray(_mod(fw, "layers.Dropout", 1.0)(_x(fw, 1, 2, 3, 3) + 1)).sum() == 0
