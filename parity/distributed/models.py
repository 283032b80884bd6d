"""The model that makes data-parallel BatchNorm differ, in both frameworks, and torch's global-statistics
BatchNorm for the CPU.

`ConvBN`: Conv 3×3 → BatchNorm2d → ReLU → MaxPool 2 → Flatten → Linear, built from the project's
layers (`torch_impl.normalization.BatchNorm2d` / `jax_impl.normalization.BatchNorm2d`, or stock
`torch.nn.BatchNorm2d` with `stock_bn=True`). In training mode its output depends on the batch's
statistics, so it is the one model here whose data-parallel step depends on how the global batch is
split: per-rank statistics (DDP's BatchNorm) or global ones (a sharded JAX step, SyncBatchNorm).

`nn.SyncBatchNorm` refuses CPU tensors ("expected input tensor to be on GPU"), so on the CPU
`sync_batchnorm` swaps in `GlobalBatchNorm2d`: the same arithmetic (statistics summed over every
rank with a differentiable all-reduce, torch's two-pass variance, unbiased running variance).
On CUDA it is `nn.SyncBatchNorm.convert_sync_batchnorm`.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.distributed as dist
from flax import nnx
from torch import nn

import jax_impl as J
import torch_impl as T
from parity import training
from parity.porting import kinds

EXTRA_MODELS = ("conv_bn",)


class TorchConvBN(nn.Module):
    """Conv(in→channels, 3×3, padding 1) → BatchNorm2d → ReLU → MaxPool 2 → Flatten → Linear, NCHW."""

    def __init__(self, in_channels=1, image_size=8, channels=8, num_classes=10, stock_bn=False, *,
                 dtype=torch.float32):
        super().__init__()
        self.conv = T.conv.Conv2d(in_channels, channels, 3, padding=1, dtype=dtype)
        self.bn = (nn.BatchNorm2d(channels, dtype=dtype) if stock_bn
                   else T.normalization.BatchNorm2d(channels, dtype=dtype))
        self.pool, self.flatten = T.pooling.MaxPool2d(2), T.layers.Flatten()
        self.fc = T.layers.Linear(channels * (image_size // 2) ** 2, num_classes, dtype=dtype)

    def forward(self, x):
        return self.fc(self.flatten(self.pool(torch.relu(self.bn(self.conv(x))))))


class JaxConvBN(nnx.Module):
    """The Flax NNX twin of `TorchConvBN`, on NHWC images."""

    def __init__(self, in_channels=1, image_size=8, channels=8, num_classes=10, stock_bn=False, *,
                 dtype=jnp.float32, rngs):
        self.conv = J.conv.Conv2d(in_channels, channels, 3, padding=1, dtype=dtype, rngs=rngs)
        self.bn = J.normalization.BatchNorm2d(channels, dtype=dtype)
        self.pool, self.flatten = J.pooling.MaxPool2d(2), J.layers.Flatten()
        self.fc = J.layers.Linear(channels * (image_size // 2) ** 2, num_classes, dtype=dtype, rngs=rngs)

    def __call__(self, x):
        return self.fc(self.flatten(self.pool(jax.nn.relu(self.bn(self.conv(x))))))


def conv_bn_kwargs(ds, channels: int = 8, stock_bn: bool = False) -> dict:
    """ConvBN's constructor arguments for a dataset of square images with an even side."""
    c, h, w = ds.x_train.shape[1:]
    if h != w or h % 2:
        raise ValueError(f"conv_bn takes square images of even side, got {h}×{w}")
    classes = int(max(ds.y_train.max(), ds.y_test.max())) + 1
    return {"in_channels": c, "image_size": h, "channels": channels, "num_classes": classes, "stock_bn": stock_bn}


def _layers(kwargs: dict) -> dict:
    s = kwargs["image_size"] // 2
    return {"conv": "conv", "bn": "batchnorm", "fc": ("flatten_linear", (kwargs["channels"], s, s))}


def init_state_dict(model: str, torch_model: nn.Module, rng: np.random.Generator) -> dict:
    """Initial weights drawn in NumPy: `training.init_state_dict` for the trained models; for
    conv_bn, torch's ranges for the conv and linear layers and torch's BatchNorm start (weight 1,
    bias 0, running mean 0, running variance 1, no batches tracked)."""
    if model not in EXTRA_MODELS:
        return training.init_state_dict(torch_model, rng)
    sd = {}
    for name, p in torch_model.state_dict().items():
        if name.startswith("bn."):
            sd[name] = p.detach().cpu().numpy().copy()
        else:
            weight = torch_model.state_dict()[name.rsplit(".", 1)[0] + ".weight"]
            bound = 1 / math.sqrt(int(np.prod(weight.shape[1:])))
            sd[name] = rng.uniform(-bound, bound, tuple(p.shape)).astype(str(p.dtype).removeprefix("torch."))
    return sd


def build_torch(model: str, kwargs: dict, dtype: str, sd: dict | None = None):
    """`training.build(..., "torch", ...)`, and conv_bn."""
    if model not in EXTRA_MODELS:
        return training.TorchSide.build(model, kwargs, dtype, sd)
    m = TorchConvBN(**kwargs, dtype=getattr(torch, dtype))
    if sd is not None:
        training.load_torch_weights(m, sd)
    return m


def build_jax(model: str, kwargs: dict, dtype: str, sd: dict | None = None):
    """`training.build(..., "jax", ...)`, and conv_bn (parameters and BatchNorm statistics from `sd`)."""
    if model not in EXTRA_MODELS:
        return training.JaxSide.build(model, kwargs, dtype, sd)
    graphdef, state = nnx.split(nnx.eval_shape(lambda: JaxConvBN(**kwargs, dtype=dtype, rngs=nnx.Rngs(0))))
    m = nnx.merge(graphdef, jax.tree.map(lambda a: jax.device_put(np.zeros(a.shape, a.dtype)), state))
    if sd is not None:
        state = nnx.state(m)
        ref = nnx.to_pure_dict(state)
        new = kinds.model_to_flax({k: np.asarray(v) for k, v in sd.items()}, _layers(kwargs))
        nnx.replace_by_pure_dict(state, jax.tree.map(lambda r, v: jnp.asarray(np.asarray(v, r.dtype)), ref, new))
        nnx.update(m, state)
    return m


def jax_weights(model: str, kwargs: dict, state) -> dict:
    """A JAX conv_bn's parameters and statistics (an nnx State or pure dict) as a torch state_dict."""
    pure = state if isinstance(state, dict) else nnx.to_pure_dict(state)
    return kinds.model_to_torch(jax.tree.map(np.asarray, pure), _layers(kwargs))


# ---------------------------------------------------------------- global batch statistics in torch
class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training-mode statistics are those of every rank's examples together:
    `nn.SyncBatchNorm`'s arithmetic on any device (SyncBatchNorm itself takes CUDA tensors only).

    The per-channel sum and the sum of squared deviations are all-reduced with torch's functional
    collectives' `all_reduce`, whose backward all-reduces the gradients, so the
    gradient is that of the global statistics; the variance is torch's two-pass one (docs/traps.md,
    trap 13) and the running variance the unbiased one (trap 12). Outside training, or with one
    rank, it is plain BatchNorm2d.
    """

    def forward(self, x):
        if not self.training or not dist.is_initialized() or dist.get_world_size() == 1:
            return super().forward(x)
        # torch's differentiable all-reduce (its backward all-reduces the gradient); the older
        # torch.distributed.nn.functional.all_reduce warns that it is deprecated in favour of this
        from torch.distributed import _functional_collectives as funcol

        def all_reduce(t):
            return funcol.wait_tensor(funcol.all_reduce(t, "sum", dist.group.WORLD))
        count = torch.tensor([x.shape[0] * x.shape[2] * x.shape[3]], dtype=torch.float64, device=x.device)
        dist.all_reduce(count)
        n = float(count.item())
        mean = all_reduce(x.sum(dim=(0, 2, 3))) / n
        centred = x - mean[None, :, None, None]
        var = all_reduce((centred * centred).sum(dim=(0, 2, 3))) / n
        y = centred * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        with torch.no_grad():
            m = self.momentum
            self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
            self.running_var.mul_(1 - m).add_(var.detach() * (n / (n - 1)), alpha=m)
            self.num_batches_tracked.add_(1)
        return y


def sync_batchnorm(model: nn.Module) -> nn.Module:
    """Every BatchNorm2d of `model` computing global statistics: `nn.SyncBatchNorm` on CUDA,
    `GlobalBatchNorm2d` (the same arithmetic) on the CPU. Weights and statistics are kept."""
    if next(model.parameters()).device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    _swap_batchnorm(model)
    return model


def _swap_batchnorm(module: nn.Module) -> None:
    for name, child in list(module.named_children()):
        if isinstance(child, nn.BatchNorm2d) and not isinstance(child, GlobalBatchNorm2d):
            g = GlobalBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                  device=child.running_mean.device, dtype=child.running_mean.dtype)
            g.load_state_dict(child.state_dict())
            setattr(module, name, g)
        else:
            _swap_batchnorm(child)
