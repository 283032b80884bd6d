"""Why the ports of Hugging Face's MobileNetV1 / MobileNetV2 (examples/transformers_zoo.py) were not
proven, reproduced on small hand-written models (docs/traps.md, "Other differences found along the
way": subnormal float32 numbers, and chaotic training of the tiny MobileNets).

1. XLA on the CPU flushes float32 results below the smallest normal number (1.18e-38) to zero, torch
   keeps them. A chain of convolutions initialised as Hugging Face does (normal, std 0.02) behind
   BatchNorms with fresh statistics (mean 0, variance 1) shrinks its input ~25× per layer in eval mode,
   reaches that range and the port's output parts from torch's there, by at most 1.18e-38; float64
   agrees. With BatchNorm statistics taken from a training-mode pass, as a trained network's are, the
   activations stay of size ~1 and the port is proven in float32.
2. The zoo's MobileNets take their BatchNorm statistics that way, and their activations stay of
   normal size.

Every expected value is torch's (its outputs, or compare's verdict against it)."""
from __future__ import annotations

import importlib.util
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import torch
from torch import nn

from parity.port.generate import generate, load_generated
from parity.porting import compare, pair_models

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = float(np.finfo(np.float32).tiny)  # 1.18e-38, float32's smallest normal number


class ConvChain(nn.Module):
    """`depth` × (1×1 convolution, BatchNorm, ReLU6) after a 3×3 stem: MobileNetV1's pointwise layers
    (with its BatchNorm eps 1e-3 and momentum 0.9997)."""

    def __init__(self, depth: int = 32, width: int = 16):
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.convs = nn.ModuleList(nn.Conv2d(width, width, 1, bias=False) for _ in range(depth))
        self.norms = nn.ModuleList(nn.BatchNorm2d(width, eps=1e-3, momentum=0.9997) for _ in range(depth))

    def forward(self, x):
        x = self.stem(x)
        for conv, norm in zip(self.convs, self.norms):
            x = torch.nn.functional.relu6(norm(conv(x)))
        return x


def _chain(batch_statistics: bool):
    torch.manual_seed(0)
    model = ConvChain()
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, std=0.02)  # Hugging Face's init (initializer_range 0.02)
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    if batch_statistics:
        model.train()
        with torch.no_grad():
            model(torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(2)))
    return model.eval(), x


def _port(model, x):
    port = generate(model, x.numpy())
    assert port.complete, port.problems
    mod = load_generated(port, "port_mobile_chain")
    return eval(port.build, mod.__dict__)  # the expression generate() wrote


def test_xla_on_the_cpu_flushes_subnormal_float32_results_and_torch_keeps_them():
    a = np.full((1, 4, 4, 1), 1e-39, np.float32)
    k = np.ones((3, 3, 1, 1), np.float32)
    expected = torch.nn.functional.conv2d(torch.as_tensor(a).permute(0, 3, 1, 2),
                                          torch.as_tensor(k).permute(3, 2, 0, 1), padding=1)
    assert 0 < float(expected.max()) < TINY  # torch: 9e-39, a subnormal number
    got = jax.jit(lambda v: jax.lax.conv_general_dilated(v, k, (1, 1), "SAME",
                                                         dimension_numbers=("NHWC", "HWIO", "NHWC")))(a)
    assert float(jnp.abs(got).max()) == 0.0
    assert float(jax.jit(lambda v: v * 2)(jnp.float32(1e-39))) == 0.0 and float(torch.tensor(1e-39) * 2) > 0


def test_a_chain_with_fresh_batchnorm_statistics_parts_from_torch_only_below_the_smallest_normal():
    model, x = _chain(batch_statistics=False)
    with torch.no_grad():
        expected = model(x).numpy()
    assert 0 < np.abs(expected).max() < TINY  # torch's output is all subnormal numbers (or zero)
    flax_model = _port(model, x)
    pairing = pair_models(model, flax_model, (x.numpy(),))
    pairing.load_flax(flax_model, {k: v.numpy().copy() for k, v in model.state_dict().items()})
    flax_model.eval()  # BatchNorm on its running statistics, as torch in eval mode
    got = np.asarray(jax.jit(lambda m, v: m(v))(flax_model, jnp.asarray(x.numpy().transpose(0, 2, 3, 1))))
    got = got.transpose(0, 3, 1, 2)
    assert np.count_nonzero(got) < np.count_nonzero(expected)  # the port flushed some to zero
    assert np.abs(got - expected).max() <= TINY
    assert not compare(model, flax_model, x.numpy()).passed  # float32, scaled rule
    assert compare(model, flax_model, x.numpy(), dtype="float64").passed


def test_with_batchnorm_statistics_from_a_training_pass_the_chain_is_proven_in_float32():
    model, x = _chain(batch_statistics=True)
    with torch.no_grad():
        assert np.abs(model(x).numpy()).max() > 0.1
    flax_model = _port(model, x)
    assert compare(model, flax_model, x.numpy()).passed
    assert compare(model, flax_model, x.numpy(), dtype="float64").passed


def _zoo():
    path = os.path.join(ROOT, "examples", "transformers_zoo.py")
    spec = importlib.util.spec_from_file_location("_zoo_mobile", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def test_the_zoo_mobilenet_v1_keeps_activations_of_normal_size():
    model, (x,) = _zoo().ARCHITECTURES["mobilenet_v1"].build()
    sizes = []
    layers = [m for m in model.modules() if type(m).__name__ == "MobileNetV1ConvLayer"]
    for m in layers:
        m.register_forward_hook(lambda mod, i, o: sizes.append(float(o.abs().max())))
    with torch.no_grad():
        model(x)
    assert layers and len(sizes) == len(layers)  # every conv layer ran once
    assert min(sizes) > 0.1
    assert not model.training
