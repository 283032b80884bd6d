"""Data-parallel trainers as `parity.training` sides: a torch DDP rank and a sharded JAX step.

Both are subclasses of the single-device sides (`training.TorchSide`, `training.JaxSide`), so the
loop, the evaluation and the canonical training state (weights and optimiser slots under torch's
names, for teacher forcing) are the single-device ones; only what data parallelism changes is here.

torch (`DDPSide`, one per rank): the model wrapped in `DistributedDataParallel`; each global batch
row of B indices is cut into N contiguous shards of B/N and rank r trains on shard r; DDP's
backward all-reduces the gradients and divides by N (the mean over ranks). The reported loss is the
mean of the N ranks' losses (one all-reduce per call of `epoch`), which equals the global batch's
mean loss because every shard has the same size.

JAX (`ShardedJaxSide`, one process with N devices): parameters, optimiser state and the data are
replicated over a one-axis mesh ("data"); the step's batch indices, hence the batch, are sharded
over that axis (`NamedSharding`), and the step is the single-device one (`Trainer.step_fn`) jitted
with those shardings: the loss is the mean over the global batch, and XLA inserts the all-reduces.
`per_device=True` instead runs the step under `jax.shard_map` the way DDP does: each device's loss
and gradients over its own shard, gradients averaged with `lax.pmean`, and BatchNorm's statistics
per device (device 0's running statistics kept, as DDP's `broadcast_buffers` keeps rank 0's).
"""
from __future__ import annotations

import jax
import numpy as np
import torch
import torch.distributed as dist
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from torch.nn.parallel import DistributedDataParallel

import jax_impl as J
import torch_impl as T
from jax_impl.optim import apply_updates
from parity import convert, precision, training
from parity.distributed import models

AXIS = "data"


def shard(batches: np.ndarray, rank: int, world: int) -> np.ndarray:
    """Rank `rank`'s contiguous share of each row of global batch indices (rows, B) → (rows, B/N)."""
    b, rest = divmod(batches.shape[-1], world)
    if rest:
        raise ValueError(f"a global batch of {batches.shape[-1]} does not split into {world} equal shards")
    return batches[..., rank * b:(rank + 1) * b]


# ---------------------------------------------------------------- torch
class DDPTrainer(T.train.Trainer):
    """`torch_impl.train.Trainer` whose forward and backward go through a DistributedDataParallel
    wrapper. `model` stays the plain module (what predictions, checkpoints and the training state
    read); `ddp` is the wrapper that steps use."""

    def __init__(self, model, optimizer, loss_fn, device_ids=None):
        super().__init__(model, optimizer, loss_fn)
        self.ddp = DistributedDataParallel(model, device_ids=device_ids)

    def step(self, x, y, idx=None):
        xb, yb = (x, y) if idx is None else (x[idx], y[idx])
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.ddp(xb), yb)
        loss.backward()  # DDP's hooks all-reduce each gradient bucket and divide by the world size
        self.optimizer.step()
        return loss.detach()


class DDPSide(training.TorchSide):
    """One torch rank of a DDP run (the process group must be initialised)."""

    build = staticmethod(models.build_torch)

    def __init__(self, cfg, kwargs, sd, ds, *, sync_bn: bool = False):
        self.rank, self.world, self.sync_bn = dist.get_rank(), dist.get_world_size(), sync_bn
        super().__init__(cfg, kwargs, sd, ds)

    def make_trainer(self, model, cfg):
        dev = precision.torch_device(self.device)
        model = model.to(dev)
        if self.sync_bn:
            model = models.sync_batchnorm(model)
        opt = T.optim.from_library(cfg.optimizer, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        return DDPTrainer(model, opt, self.loss_fn, device_ids=[dev.index or 0] if dev.type == "cuda" else None)

    def rows(self, batches):
        return torch.as_tensor(shard(np.asarray(batches), self.rank, self.world), device=self.x.device)

    def to_host(self, losses):
        t = torch.stack(losses)
        dist.all_reduce(t)  # sum of the ranks' mean losses
        return (t / self.world).cpu().numpy()


class SingleTorchSide(training.TorchSide):
    """`training.TorchSide` that also builds conv_bn."""

    build = staticmethod(models.build_torch)


# ---------------------------------------------------------------- JAX
def mesh_of(world: int, device: str) -> Mesh:
    """A one-axis mesh ("data") over the first `world` devices of the platform."""
    devices = jax.devices("gpu" if device == "cuda" else "cpu")
    if world > len(devices):
        raise ValueError(f"JAX sees {len(devices)} {device} device(s), {world} asked for")
    return Mesh(np.array(devices[:world]), (AXIS,))


class _ConvBNWeights:
    """Weights of conv_bn read off a JAX trainer (the trained models use JaxSide's own)."""

    build = staticmethod(models.build_jax)

    def weights(self) -> dict:
        if self.model_name in models.EXTRA_MODELS:
            params, rest, _ = self.trainer.state
            pure = {**nnx.to_pure_dict(params)}
            for k, v in nnx.to_pure_dict(rest).items():
                pure[k] = {**pure.get(k, {}), **v}
            return models.jax_weights(self.model_name, self.kwargs, pure)
        return super().weights()


class SingleJaxSide(_ConvBNWeights, training.JaxSide):
    """`training.JaxSide` that also builds conv_bn."""

    def __init__(self, cfg, kwargs, sd, ds):
        self.kwargs = kwargs
        super().__init__(cfg, kwargs, sd, ds)


class ShardedJaxSide(_ConvBNWeights, training.JaxSide):
    """A JAX trainer whose step runs data-parallel over `world` devices of this process."""

    def __init__(self, cfg, kwargs, sd, ds, *, world: int, per_device: bool = False):
        self.kwargs, self.world, self.per_device = kwargs, world, per_device
        self.mesh = mesh_of(world, cfg.device)
        self.replicated = NamedSharding(self.mesh, P())
        self.sharded = NamedSharding(self.mesh, P(AXIS))
        super().__init__(cfg, kwargs, sd, ds)

    def put(self, a, image):
        return jax.device_put(convert.nchw_to_nhwc(a) if image else a, self.replicated)

    def make_trainer(self, model, cfg):
        opt = J.optim.from_library(cfg.optimizer, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        tr = J.train.Trainer(model, opt, self.loss_fn)
        tr.state = jax.device_put(tr.state, self.replicated)
        step = self._per_device_step(tr, opt) if self.per_device else self._global_step(tr)
        rep, sh = self.replicated, self.sharded
        tr._step = jax.jit(step, in_shardings=(rep, rep, rep, sh), out_shardings=(rep, rep), donate_argnums=0)
        return tr

    def _batch(self, x, y, idx):
        idx = jax.lax.with_sharding_constraint(idx, self.sharded)
        return (jax.lax.with_sharding_constraint(x[idx], self.sharded),
                jax.lax.with_sharding_constraint(y[idx], self.sharded))

    def _global_step(self, tr):
        """The single-device step on a batch sharded over the mesh: the loss is the mean over the
        global batch, and XLA all-reduces what the mean and the gradients need."""
        step_fn = tr.step_fn

        def step(state, x, y, idx):
            xb, yb = self._batch(x, y, idx)
            return step_fn(state, xb, yb, None)
        return step

    def _per_device_step(self, tr, opt):
        """DDP's step in JAX: per-device loss and gradients, gradients averaged over devices."""
        graphdef, loss_fn = tr.graphdef, self.loss_fn

        def local(state, xb, yb):
            params, rest, opt_state = state
            model = nnx.merge(graphdef, params, rest)
            loss, grads = nnx.value_and_grad(lambda m: loss_fn(m(xb), yb),
                                             argnums=nnx.DiffState(0, nnx.Param))(model)
            grads, loss = jax.lax.pmean(grads, AXIS), jax.lax.pmean(loss, AXIS)  # DDP's all-reduce / N
            rest = nnx.split(model, nnx.Param, ...)[2]
            updates, opt_state = opt.update(grads, opt_state, params)
            return (apply_updates(params, updates), jax.tree.map(lambda a: a[None], rest), opt_state), loss

        # check_vma=False: gradients stay per device until the explicit pmean, as in DDP
        mapped = jax.shard_map(local, mesh=self.mesh, in_specs=(P(), P(AXIS), P(AXIS)),
                               out_specs=((P(), P(AXIS), P()), P()), check_vma=False)

        def step(state, x, y, idx):
            xb, yb = self._batch(x, y, idx)
            (params, rest, opt_state), loss = mapped(state, xb, yb)
            return (params, jax.tree.map(lambda a: a[0], rest), opt_state), loss  # device 0's statistics
        return step

    def rows(self, batches):
        return [jax.device_put(np.asarray(r, np.int32), self.sharded) for r in np.asarray(batches)]

    def load_state(self, st) -> None:
        one = self.mesh.devices.flat[0]
        self.trainer.state = jax.device_put(self.trainer.state, one)  # JaxSide writes on one device
        super().load_state(st)
        self.trainer.state = jax.device_put(self.trainer.state, self.replicated)
