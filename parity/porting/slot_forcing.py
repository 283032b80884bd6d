"""Teacher forcing for `compare_training`: the Flax side restarted from torch's weights, statistics
and optimiser slots, which needs an optax state whose slots map onto torch's (SGD momentum: `trace`
⇄ `momentum_buffer`; Adam/AdamW: `mu`, `nu`, `count` ⇄ `exp_avg`, `exp_avg_sq`, `step`)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from parity import curves
from parity.porting.pairing import PortingError

# optax states whose slots map onto torch's optimiser state, by name
_SLOTS = {optax.ScaleByAdamState: {"mu": "exp_avg", "nu": "exp_avg_sq", "count": "step"},
          optax.TraceState: {"trace": "momentum_buffer"}}


def force_slots(opt_state, torch_opt, pairing, params_state, names):
    """The optax state with its slots replaced by torch's (converted to Flax layout)."""
    by_param = {id(p): n for n, p in names.items()}

    def slot(torch_key):
        sd = {}
        step = 0
        for group in torch_opt.param_groups:
            for p in group["params"]:
                st = torch_opt.state.get(p, {})
                if torch_key == "step":
                    step = int(st.get("step", 0))
                elif torch_key in st:
                    sd[by_param[id(p)]] = st[torch_key].detach().cpu().numpy().copy()
        return step if torch_key == "step" else sd

    def walk(s):
        m = _SLOTS.get(type(s))
        if m:
            new = {}
            for field_, key in m.items():
                old = getattr(s, field_)
                if key == "step":
                    new[field_] = jnp.asarray(slot("step"), old.dtype)
                else:
                    sd = slot(key)
                    ref = nnx.to_pure_dict(old)
                    pure = pairing.torch_to_flax(sd) if sd else jax.tree.map(np.zeros_like, ref)
                    filled = jax.tree.map(lambda a: a, old)
                    nnx.replace_by_pure_dict(filled, jax.tree.map(lambda r, v: jnp.asarray(v, r.dtype), ref,
                                                                  _complete(ref, pure)))
                    new[field_] = filled
            return s._replace(**new)
        if type(s) is tuple:
            return tuple(walk(x) for x in s)
        if isinstance(s, (optax.EmptyState, optax.ScaleByScheduleState)) or not jax.tree.leaves(s):
            return s
        if any(np.shape(a) == np.shape(b) for a in jax.tree.leaves(s) for b in jax.tree.leaves(params_state)
               if np.ndim(a) > 0):
            raise PortingError(f"steps > {curves.SEGMENT_STEPS}: teacher forcing cannot map the optax state "
                               f"{type(s).__name__} onto torch's optimiser state (known: SGD momentum, Adam, "
                               f"AdamW); run at most {curves.SEGMENT_STEPS} steps")
        return s
    return walk(opt_state)


def _complete(ref: dict, pure: dict) -> dict:
    out = {}
    for k, r in ref.items():
        if isinstance(r, dict):
            out[k] = _complete(r, pure.get(k, {}) if isinstance(pure, dict) else {})
        else:
            out[k] = pure[k] if isinstance(pure, dict) and k in pure else np.zeros(np.shape(r))
    return out


def state_from_torch(t, f, pairing):
    """The Flax (params, rest) holding torch's current weights and statistics (copied: a NumPy view of
    a torch tensor that JAX took without copying would change with torch's next in-place update;
    docs/traps.md, trap 27)."""
    sd = {k: v.detach().cpu().numpy().copy() for k, v in t.state_dict().items()}
    pairing.load_flax(f, sd)
    _, params, rest = nnx.split(f, nnx.Param, ...)
    return params, rest
