"""The data-parallel traps (docs/traps.md, traps 30-34), each an experiment run on every process of a
worker group (`compare.Session.call`): torch functions on each DDP rank, JAX functions in the JAX
process over its N devices. Each returns plain NumPy values (rank 0's), which the tests and the
traps page read. Small models, float64 unless the trap is float32 rounding.
"""
from __future__ import annotations

import numpy as np


def _data(seed: int, n: int, d: int = 6, classes: int = 3, dtype="float64"):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(dtype)
    y = rng.integers(0, classes, n)
    w = rng.uniform(-0.4, 0.4, (classes, d)).astype(dtype)
    b = rng.uniform(-0.4, 0.4, classes).astype(dtype)
    return x, y, w, b


# ---------------------------------------------------------------- trap 30: mean over ranks vs global mean
def torch_gradient(worker, shards: list[list[int]], n: int, reduction: str = "mean", rescale: bool = False,
                   dtype: str = "float64", seed: int = 0) -> dict:
    """One DDP backward of a linear classifier's cross-entropy, rank r holding examples `shards[r]`
    of a data set of n; and, on rank 0, the single-device gradient of the same loss over all n.
    `rescale`: each rank's loss is its sum × N / (examples over all ranks), the fix for unequal
    shards (the mean over ranks of those is the global mean)."""
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F
    from torch.nn.parallel import DistributedDataParallel

    x, y, w, b = _data(seed, n, dtype=dtype)
    mine = np.asarray(shards[worker.rank], np.int64)

    def model():
        m = torch.nn.Linear(w.shape[1], w.shape[0], dtype=getattr(torch, dtype))
        with torch.no_grad():
            m.weight.copy_(torch.as_tensor(w))
            m.bias.copy_(torch.as_tensor(b))
        return m

    ddp = DistributedDataParallel(model())
    xb, yb = torch.as_tensor(x[mine]), torch.as_tensor(y[mine])
    if rescale:
        loss = F.cross_entropy(ddp(xb), yb, reduction="sum") * worker.world / sum(len(s) for s in shards)
    else:
        loss = F.cross_entropy(ddp(xb), yb, reduction=reduction)
    loss.backward()
    got = ddp.module.weight.grad.numpy().copy()
    ref = model()
    F.cross_entropy(ref(torch.as_tensor(x)), torch.as_tensor(y), reduction="mean" if rescale else reduction).backward()
    dist.barrier()
    return {"ddp": got, "single": ref.weight.grad.numpy().copy()}


def jax_gradient(worker, n: int, reduction: str = "mean", dtype: str = "float64", seed: int = 0) -> dict:
    """The same gradient in JAX: jitted over a global batch of n sharded over the devices, and on one
    device. A batch that does not split evenly cannot be sharded at all: its error is returned."""
    import jax
    import jax.numpy as jnp
    from jax.sharding import NamedSharding, PartitionSpec as P

    from jax_impl.losses import cross_entropy
    from parity.distributed.sides import AXIS, mesh_of

    mesh = mesh_of(worker.world, worker.device)
    x, y, w, b = _data(seed, n, dtype=dtype)

    def loss(wb, x, y):
        logits = x @ wb[0].T + wb[1]
        if reduction == "mean":
            return cross_entropy(logits, y)
        return jnp.sum(jax.nn.logsumexp(logits, -1) - jnp.take_along_axis(logits, y[:, None], -1)[:, 0])

    grad = jax.jit(jax.grad(loss))
    single = np.asarray(grad((jnp.asarray(w), jnp.asarray(b)), jnp.asarray(x), jnp.asarray(y))[0])
    try:
        sh = NamedSharding(mesh, P(AXIS))
        xs, ys = jax.device_put(x, sh), jax.device_put(y, sh)
    except ValueError as e:
        return {"single": single, "error": str(e).splitlines()[0]}
    rep = NamedSharding(mesh, P())
    sharded = np.asarray(grad(jax.device_put((w, b), rep), xs, ys)[0])
    return {"single": single, "sharded": sharded, "error": ""}


# ---------------------------------------------------------------- trap 32: dropout masks per rank
def torch_dropout_masks(worker, shape: list[int], seed: int = 0, p: float = 0.5) -> dict:
    """The keep-masks torch's dropout draws on each rank for its shard of a global batch of `shape`,
    every rank seeded with `seed` (what most scripts do) and with `seed + rank`; and, on rank 0,
    the mask one device draws for the whole batch from `seed`."""
    import torch
    import torch.distributed as dist

    local = [shape[0] // worker.world, *shape[1:]]

    def mask(s, sh):
        torch.manual_seed(s)
        return (torch.nn.functional.dropout(torch.ones(sh), p, training=True) != 0)

    out = {}
    for name, s in (("same_seed", seed), ("seed_plus_rank", seed + worker.rank)):
        m = mask(s, local).to(torch.uint8)
        gathered = [torch.empty_like(m) for _ in range(worker.world)]
        dist.all_gather(gathered, m)
        out[name] = torch.cat(gathered).numpy().astype(bool)
    out["single"] = mask(seed, shape).numpy()
    return out


def jax_dropout_masks(worker, shape: list[int], seed: int = 0, p: float = 0.5) -> dict:
    """JAX's keep-masks for a global batch of `shape`: drawn by one jitted call whose output is
    sharded over the devices, on one device, and per device under `shard_map` with the same key on
    every device and with the key folded with the device's index."""
    import jax
    from jax.sharding import NamedSharding, PartitionSpec as P

    from parity.distributed.sides import AXIS, mesh_of

    mesh = mesh_of(worker.world, worker.device)
    key = jax.random.key(seed)
    shape = tuple(shape)

    def draw(k):
        return jax.random.bernoulli(k, 1.0 - p, shape)
    sharded = jax.jit(draw, out_shardings=NamedSharding(mesh, P(AXIS)))(key)
    single = jax.jit(draw)(key)
    local = (shape[0] // worker.world, *shape[1:])

    def per_device(fold):
        def body(k):
            k = jax.random.fold_in(k, jax.lax.axis_index(AXIS)) if fold else k
            return jax.random.bernoulli(k, 1.0 - p, local)
        return jax.jit(jax.shard_map(body, mesh=mesh, in_specs=P(), out_specs=P(AXIS)))(key)
    return {"sharded": np.asarray(sharded), "single": np.asarray(single),
            "per_device_same_key": np.asarray(per_device(False)), "per_device_folded": np.asarray(per_device(True)),
            "threefry_partitionable": bool(jax.config.jax_threefry_partitionable)}


# ---------------------------------------------------------------- trap 34: reduction order
def torch_gradient_rounding(worker, n: int = 60, d: int = 64, hidden: int = 32, dtype: str = "float32",
                            seed: int = 0) -> dict:
    """One DDP backward of a small MLP on an even split of n examples, against one device's over
    all n: every gradient element and the loss, to see the rounding of a different summation order."""
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F
    from torch.nn.parallel import DistributedDataParallel

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(dtype)
    y = rng.integers(0, 10, n)
    torch.manual_seed(seed)
    base = torch.nn.Sequential(torch.nn.Linear(d, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 10)).to(
        getattr(torch, dtype))
    state = {k: v.clone() for k, v in base.state_dict().items()}
    ddp = DistributedDataParallel(base)
    b = n // worker.world
    mine = slice(worker.rank * b, (worker.rank + 1) * b)
    xb, yb = torch.as_tensor(x[mine]), torch.as_tensor(y[mine])
    loss = F.cross_entropy(ddp(xb), yb)
    loss.backward()
    mean_loss = loss.detach().clone()
    dist.all_reduce(mean_loss)
    got = np.concatenate([p.grad.numpy().ravel() for p in ddp.module.parameters()])
    ref = torch.nn.Sequential(torch.nn.Linear(d, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 10)).to(
        getattr(torch, dtype))
    ref.load_state_dict(state)
    ref_loss = F.cross_entropy(ref(torch.as_tensor(x)), torch.as_tensor(y))
    ref_loss.backward()
    want = np.concatenate([p.grad.numpy().ravel() for p in ref.parameters()])
    dist.barrier()
    return {"ddp": got, "single": want, "ddp_loss": float(mean_loss / worker.world), "single_loss": float(ref_loss)}


def jax_gradient_rounding(worker, n: int = 60, d: int = 64, hidden: int = 32, dtype: str = "float32",
                          seed: int = 0) -> dict:
    """The same in JAX: the gradient of the mean loss over n examples sharded over the devices, and
    on one device."""
    import jax
    import jax.numpy as jnp
    from jax.sharding import NamedSharding, PartitionSpec as P

    from jax_impl.losses import cross_entropy
    from parity.distributed.sides import AXIS, mesh_of

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(dtype)
    y = rng.integers(0, 10, n)
    params = [rng.uniform(-0.1, 0.1, s).astype(dtype) for s in ((d, hidden), (hidden,), (hidden, 10), (10,))]

    def loss(ps, x, y):
        h = jax.nn.relu(x @ ps[0] + ps[1])
        return cross_entropy(h @ ps[2] + ps[3], y)
    f = jax.jit(jax.value_and_grad(loss))
    mesh = mesh_of(worker.world, worker.device)
    sh, rep = NamedSharding(mesh, P(AXIS)), NamedSharding(mesh, P())
    l1, g1 = f([jnp.asarray(p) for p in params], jnp.asarray(x), jnp.asarray(y))
    l2, g2 = f(jax.device_put(params, rep), jax.device_put(x, sh), jax.device_put(y, sh))
    flat = (lambda g: np.concatenate([np.asarray(a).ravel() for a in g]))
    return {"sharded": flat(g2), "single": flat(g1), "sharded_loss": float(l2), "single_loss": float(l1)}


# ---------------------------------------------------------------- a rank that dies or hangs (tests)
def die(worker, rank: int = 1) -> dict:
    """Rank `rank` exits (code 3) while the others enter an all-reduce that needs it: a rank lost
    mid-step (killed, out of memory, a segfault)."""
    import os

    import torch
    import torch.distributed as dist
    if worker.rank == rank:
        os._exit(3)
    t = torch.ones(1)
    dist.all_reduce(t)
    return {}

def stall(worker, rank: int = 1) -> dict:
    """Rank `rank` stops answering while the others enter an all-reduce that waits for it: the hang
    a deadlocked or descheduled rank causes mid-step (tests of the launcher's watchdog)."""
    import time

    import torch
    import torch.distributed as dist
    if worker.rank == rank:
        while True:
            time.sleep(3600)
    t = torch.ones(1)
    dist.all_reduce(t)
    return {}
