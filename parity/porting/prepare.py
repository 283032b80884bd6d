"""A comparison in progress: the checked arguments turned into the two models' copies (in the
compared dtype, on the compared device, in the asked mode), their leaf layers, the inputs for each
side, the compiled Flax runner and the shared dropout masks, in one object with named fields (shared
by `compare`, `compare_training` and `pair_models`)."""
from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx

from parity import precision
from parity.porting import inputs as given
from parity.porting import kinds, trace
from parity.porting.flax_runner import FlaxRunner
from parity.porting.masks import Masks
from parity.porting.pairing import PortingError
from parity.porting.torch_passes import device_of


@dataclass
class Prepared:
    """The two copies ready to run, and what runs them. The caller's models are never these."""

    torch_model: torch.nn.Module  # the copy, in the compared dtype and device and mode
    flax_model: nnx.Module  # likewise
    torch_leaves: dict  # {name: trace.Leaf} of the torch copy
    flax_leaves: dict  # {name: trace.Leaf} of the Flax copy
    inputs: tuple  # NumPy, in torch's layout (as_numpy_inputs)
    torch_kwargs: dict  # the torch model's call keywords besides the inputs
    runner: FlaxRunner  # the Flax copy's compiled pass, fed the Flax side's inputs
    layout: str  # "nhwc" or "nchw": the Flax model's layout at its boundary
    input_rules: list = field(default_factory=list)  # per input, the rule applied for the Flax side
    masks: Masks | None = None  # training-mode dropout masks shared by both sides

    @functools.cached_property
    def torch_device(self) -> torch.device:
        """Where the torch copy's tensors are (the CPU for a model without any)."""
        return device_of(self.torch_model)

    def patched(self):
        """The Flax leaf classes patched so that a traced pass records their calls (trace.patched)."""
        return trace.patched({type(lf.module) for lf in self.flax_leaves.values()})


def torch_copy(model, dtype: str, tdev) -> torch.nn.Module:
    return copy.deepcopy(model).to(device=tdev, dtype=kinds.torch_dtype(dtype))


def flax_copy(model, dtype: str, jdev, notes: list | None = None):
    """The model's copy with floating arrays in `dtype` on `jdev`. Layers' `dtype`/`param_dtype`
    attributes equal to the model's own parameter dtype are set to `dtype` too, as building the model
    in that dtype would set them (nnx.Embed, for one, computes in its `dtype`, which defaults to its
    parameters' dtype at construction); any other compute dtype (bfloat16, say) is kept."""
    graphdef, state = nnx.split(model)
    own = {np.dtype(a.dtype) for a in jax.tree.leaves(nnx.state(model, nnx.Param))
           if jnp.issubdtype(a.dtype, jnp.floating)}

    def put(a):  # cast in NumPy: a JAX cast would compile one kernel per shape
        if isinstance(a, (jax.Array, np.ndarray)):
            if jnp.issubdtype(a.dtype, jnp.floating):
                a = np.asarray(a).astype(dtype)
            return jax.device_put(a, jdev)
        return a
    f = nnx.merge(graphdef, jax.tree.map(put, state))
    changed = set()
    for _, m in nnx.iter_modules(f):
        for attr in ("dtype", "param_dtype"):
            v = getattr(m, attr, None)
            try:
                dt = np.dtype(v) if v is not None else None
            except TypeError:
                continue
            if dt is not None and dt in own and dt != np.dtype(dtype):
                setattr(m, attr, jnp.dtype(dtype).type)
                changed.add(dt.name)
    if changed and notes is not None:
        notes.append(f"the Flax layers' dtype/param_dtype attributes of {', '.join(sorted(changed))} (the "
                     f"model's parameter dtype) were set to {dtype}, as building the model in {dtype} sets them")
    return f


def prepare(torch_model, flax_model, inputs, *, dtype: str, device: str, mode: str, layout: str, train: bool,
            torch_kwargs: dict | None, flax_kwargs: dict | None, seed: int, notes: list) -> Prepared:
    """The arguments checked (PortingError for any refused) and the two copies ready to run; notes on
    what was changed to compare them go to `notes`."""
    given.check_models(torch_model, flax_model)
    given.check_choice("dtype", dtype, precision.DTYPES)
    given.check_choice("device", device, precision.DEVICES)
    given.check_choice("mode", mode, precision.MODES)
    given.check_choice("layout", layout, given.LAYOUTS)
    if not isinstance(train, bool):
        raise PortingError(f"train must be True or False; got {train!r}")
    t_kw, f_kw = dict(torch_kwargs or {}), dict(flax_kwargs or {})
    np_in = given.as_numpy_inputs(inputs, dtype)
    given.check_calls(torch_model, flax_model, len(np_in), t_kw, f_kw)
    tdev, jdev = given.devices(torch_model, device, notes)
    f_np, rules = given.flax_inputs(np_in, layout)
    t = torch_copy(torch_model, dtype, tdev)
    f = flax_copy(flax_model, dtype, jdev, notes)
    t.train(train)
    f.train() if train else f.eval()
    tl, fl = trace.torch_leaves(t), trace.flax_leaves(f)
    runner = FlaxRunner(f, fl, f_np, f_kw, train, layout, jdev)
    return Prepared(t, f, tl, fl, np_in, t_kw, runner, layout, rules, Masks(seed, layout))
