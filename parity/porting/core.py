"""`compare`: does a Flax NNX port compute what the torch model computes, and if not, where does it
first part? (The module docstring of parity/porting/__init__.py explains the rules.)"""
from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import time
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx

from parity import precision
from parity.porting import differences, kinds, trace, verdict
from parity.porting.kind_record import bears_on
from parity.porting.pairing import Pair, Pairing, PortingError, build
from parity.porting.report import Divergence, Report, Row, Side, Stats, measure, worst
from parity.tolerances import lookup

SEED = 20261123
LAYOUTS = ("nhwc", "nchw")
DIRECTIONS = ("torch->flax", "flax->torch")
EVAL_NOTE = ("eval mode (the default): torch .eval() and nnx .eval(), so Dropout is the identity and "
             "BatchNorm normalises with its running statistics: a deterministic function of the weights; "
             "pass train=True to compare training-mode passes")
TRAIN_NOTE = ("training mode: BatchNorm normalises with batch statistics and its running statistics are "
              "compared after the pass; each paired Dropout gets the same mask on both sides (drawn in "
              "NumPy; survivors scaled by each side's own 1/(1−p)), since the frameworks' own masks "
              "cannot agree (docs/traps.md, trap 18)")


# ---------------------------------------------------------------- checking what was given
def _check_models(torch_model, flax_model) -> None:
    if isinstance(torch_model, nnx.Module) and isinstance(flax_model, torch.nn.Module):
        raise PortingError("the models are swapped: pass the torch model first, then the Flax model")
    if not isinstance(torch_model, torch.nn.Module):
        raise PortingError(f"torch_model must be a torch.nn.Module, got {type(torch_model).__name__}")
    if not isinstance(flax_model, nnx.Module):
        raise PortingError(f"flax_model must be a flax.nnx.Module, got {type(flax_model).__name__}")


def _choice(name, value, choices) -> None:
    if value not in choices:
        raise PortingError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")


def as_numpy_inputs(inputs, dtype: str) -> tuple[np.ndarray, ...]:
    """The inputs as a tuple of NumPy arrays: floating ones in `dtype` (and finite), integer ones
    int64, booleans kept."""
    items = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    if not items:
        raise PortingError("no inputs given")
    out = []
    for i, x in enumerate(items):
        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().numpy().copy()
        try:
            a = np.asarray(x)
        except Exception as e:  # noqa: BLE001 - anything NumPy cannot take
            raise PortingError(f"input {i}: cannot be read as a NumPy array ({type(e).__name__}: {e})") from None
        if a.dtype.kind == "f":
            bad_nan, bad_inf = int(np.isnan(a).sum()), int(np.isinf(a).sum())
            if bad_nan or bad_inf:
                raise PortingError(f"input {i} {a.shape} holds {bad_nan} NaN and {bad_inf} infinite values: "
                                   f"NaN would compare equal to NaN, so agreement would prove nothing; give "
                                   f"finite inputs")
            a = a.astype(dtype)
        elif a.dtype.kind in "iu":
            a = a.astype(np.int64)
        elif a.dtype.kind != "b":
            raise PortingError(f"input {i}: dtype {a.dtype} is neither floating, integer nor bool")
        if a.size == 0:
            raise PortingError(f"input {i} has shape {a.shape}: empty")
        out.append(a)
    return tuple(out)


def flax_inputs(np_inputs, layout: str) -> tuple[list, list[str]]:
    """The Flax side's inputs and the rule applied to each: with layout 'nhwc', 4-D floating inputs go
    from torch's NCHW to NHWC (docs/traps.md, trap 3); everything else (and everything with layout
    'nchw': a Flax model taking torch's layout at its boundary) passes unchanged."""
    out, rules = [], []
    for i, a in enumerate(np_inputs):
        if layout == "nhwc" and a.ndim == 4 and a.dtype.kind == "f":
            out.append(a.transpose(0, 2, 3, 1))
            rules.append(f"input {i} {a.shape}: NCHW → NHWC for Flax")
        else:
            out.append(a)
            rules.append(f"input {i} {a.shape} {a.dtype}: as given to both")
    return out, rules


def _required(fn, n_given: int, given_kwargs) -> tuple[list[str], int | None]:
    """Required parameters of `fn` the call would leave out, and the most positional inputs it takes."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return [], None
    params = list(sig.parameters.values())
    pos = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    most = None if any(p.kind == p.VAR_POSITIONAL for p in params) else len(pos)
    missing = [p.name for p in pos[n_given:] if p.default is p.empty and p.name not in given_kwargs]
    missing += [p.name for p in params if p.kind == p.KEYWORD_ONLY and p.default is p.empty
                and p.name not in given_kwargs]
    return missing, most


def _check_calls(torch_model, flax_model, n, torch_kwargs, flax_kwargs) -> None:
    for side, fn, kw, arg in (("torch", torch_model.forward, torch_kwargs, "torch_kwargs"),
                              ("Flax", flax_model.__call__, flax_kwargs, "flax_kwargs")):
        missing, most = _required(fn, n, kw)
        if "rngs" in missing and side == "Flax":
            raise PortingError("the Flax model's __call__ needs `rngs`: pass flax_kwargs={'rngs': nnx.Rngs(0)} "
                               "(eval mode draws nothing from it; training-mode Dropout masks are injected)")
        if missing:
            raise PortingError(f"the {side} model's {'forward' if side == 'torch' else '__call__'} needs "
                               f"{', '.join(missing)} besides the {n} input(s) given: pass them in {arg}")
        if most is not None and n > most:
            raise PortingError(f"the {side} model takes {most} input(s), {n} given")


def _devices(torch_model, device: str, notes: list) -> tuple:
    try:
        tdev, jdev = precision.torch_device(device), precision.jax_device(device)
    except (RuntimeError, ValueError) as e:
        raise PortingError(f"device {device!r}: {e}") from None
    held = {t.device for t in list(torch_model.parameters()) + list(torch_model.buffers())}
    if any(d.type == "meta" for d in held):
        raise PortingError("the torch model holds tensors on the 'meta' device (no values): load its weights first")
    other = sorted(str(d) for d in held if d.type != tdev.type)
    if other:
        notes.append(f"the torch model is on {', '.join(other)}; a copy on {device} was compared, as asked")
    return tdev, jdev


# ---------------------------------------------------------------- copies in the compared dtype and device
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


def _set_mode(t, f, train: bool) -> None:
    t.train(train)
    f.train() if train else f.eval()


def _torch_snapshot(t) -> dict:
    return {k: v.detach().clone() for k, v in t.state_dict().items()}


def _torch_restore(t, snap) -> None:
    with torch.no_grad():
        for k, v in t.state_dict().items():
            v.copy_(snap[k])


def _flat_torch(out) -> list:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return [t for k in sorted(out) for t in _flat_torch(out[k])]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _flat_torch(o)]
    raise PortingError(f"the torch model returned a {type(out).__name__}; expected tensors (or tuples, "
                       f"lists, dicts of them)")


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:300]


@contextlib.contextmanager
def _framework(side: str, shapes, calls=None):
    """A framework error while running a model → PortingError naming the side, the input shapes and
    the last leaf layer that ran before it (from `calls`, a list of trace.Call filled as it runs)."""
    try:
        yield
    except PortingError:
        raise
    except (Exception, SystemExit) as e:  # noqa: BLE001 - any error the user's model raises on these inputs
        # (sys.exit(0) in a forward pass included: it must not end the run as a pass)
        last = ""
        if calls:
            c = calls[-1]
            last = (f"; the last layer it ran was `{c.leaf.label}` ({c.leaf.cls}, called at {c.called_at}), "
                    f"which returned shape {c.out_shape}")
        raise PortingError(f"the {side} model failed on inputs of shape {', '.join(map(str, shapes))}: "
                           f"{_first_line(e)}{last}") from e


# ---------------------------------------------------------------- training-mode dropout masks
class Masks:
    """One keep-mask per (torch dropout layer, call), drawn in NumPy on torch's first use and given
    to the paired Flax Dropout (transposed to NHWC for 4-D activations)."""

    def __init__(self, seed: int, layout: str):
        self.rng, self.layout, self.masks = np.random.default_rng(seed), layout, {}

    def torch_inject(self, pairing: Pairing | None):
        def inject(leaf, k, x, out):
            m = leaf.module
            if leaf.kind != "dropout" or not m.training or m.p == 0 or pairing is None \
                    or pairing.of_torch(leaf.name) is None:
                return None
            key = (leaf.name, k)
            if key not in self.masks:
                self.masks[key] = self.rng.random(tuple(x.shape)) >= m.p
            if m.p == 1:
                return x * 0
            mask = torch.as_tensor(self.masks[key], device=x.device).to(x.dtype)
            return x * mask * torch.tensor(1.0 / (1.0 - m.p), dtype=x.dtype, device=x.device)
        return inject

    def flax_inject(self, pairing: Pairing | None, train: bool):
        def inject(leaf, k, module, x, kwargs):
            if leaf.kind != "dropout" or not train:
                return None
            rate = float(getattr(module, "rate", getattr(module, "p", 0.0)))
            det = kwargs.get("deterministic")
            det = getattr(module, "deterministic", False) if det is None else det
            if det or rate == 0:
                return x
            pair = pairing.of_flax(leaf.name) if pairing is not None else None
            if pairing is None:  # discovery: shapes only
                return x
            mask = self.masks.get((pair.torch.name, k)) if pair is not None else None
            if mask is None:
                return None  # no torch mask to share: the layer draws its own (reported as a note)
            if rate == 1:
                return x * 0
            if mask.ndim == 4 and is_nhwc(x.shape, mask.shape, self.layout):
                mask = mask.transpose(0, 2, 3, 1)
            return x * jnp.asarray(mask, x.dtype) * jnp.asarray(1.0 / (1.0 - rate), x.dtype)
        return inject


# ---------------------------------------------------------------- runs
def _tdev(t):
    p = next(iter(list(t.parameters()) + list(t.buffers())), None)
    return p.device if p is not None else torch.device("cpu")


def torch_pass(t, tl, np_in, t_kw, inject=None):
    """One recorded forward pass of the torch model without gradients: (calls, outputs)."""
    calls = []
    try:
        with _framework("torch", [x.shape for x in np_in], calls), torch.no_grad(), \
                trace.torch_tracer(tl.values(), calls, inject):
            out = t(*[torch.as_tensor(x, device=_tdev(t)) for x in np_in], **t_kw)
    finally:
        _check_ranks(calls)
    return calls, out


def _check_ranks(calls) -> None:
    """torch's Conv2d and BatchNorm2d also take 3-D (unbatched) input, where the NHWC rule would not
    follow: refuse it (before any error it leads to later on)."""
    for c in calls:
        if isinstance(c.leaf.module, (torch.nn.Conv2d, torch.nn.BatchNorm2d)) and c.in_shape and len(c.in_shape) != 4:
            raise PortingError(f"torch `{c.leaf.label}` ({c.leaf.cls}) received a {len(c.in_shape)}-D input "
                               f"{c.in_shape}: give batched 4-D (N, C, H, W) inputs (the Flax side's layout rule "
                               f"transposes 4-D inputs only)")


def _mask_args(masks: dict) -> dict:
    return {f"{name}|{k}": jnp.asarray(m) for (name, k), m in masks.items()}


def _mask_store(args: dict, layout: str) -> "Masks":
    store = Masks(0, layout)
    store.masks = {(k.rsplit("|", 1)[0], int(k.rsplit("|", 1)[1])): v for k, v in args.items()}
    return store


class FlaxRunner:
    """The Flax model as one pure function of its state, compiled once per comparison: a pass that
    returns, besides the outputs, every leaf layer's input and output (extra outputs of the same
    jitted function; the call order and call sites are noted while tracing), the state after the
    pass, and, given cotangents, the gradient of Σ out·ct wrt the parameters and the floating inputs
    (nnx.grad, so a training-mode pass may update BatchNorm statistics on the way). The arrays are
    whatever was last written into the model."""

    def __init__(self, f, fl: dict, f_np: list, f_kw: dict, train: bool, layout: str, jdev):
        self.f, self.fl, self.f_kw, self.train, self.layout = f, fl, f_kw, train, layout
        self.graphdef = nnx.graphdef(f)
        self.xs = [jax.device_put(a, jdev) for a in f_np]
        self.float_in = [i for i, a in enumerate(f_np) if a.dtype.kind == "f"]
        self.meta: list = []  # the calls of the latest trace (of a failed one, too)
        self._metas: dict = {}  # the calls each trace of `_pass` made, by what the trace depends on
        self.out_shapes: list = []
        self._jit = jax.jit(self._pass, static_argnums=0)
        self.shapes = [tuple(a.shape) for a in f_np]

    @staticmethod
    def _key(pairing, masks, cts) -> tuple:
        """What a trace of `_pass` depends on besides shapes: jit retraces exactly when it changes."""
        return id(pairing), tuple(sorted(masks)), cts is None

    def _pass(self, pairing, params, rest, xs_float, masks, cts):
        self.meta = self._metas[self._key(pairing, masks, cts)] = []
        inject = _mask_store(masks, self.layout).flax_inject(pairing, self.train)

        def forward(m, xf):
            arrays, counts = [], {}

            def handler(leaf, module, call, args, kwargs):
                k = counts.get(leaf.name, 0)
                counts[leaf.name] = k + 1
                x = args[0] if args else None
                out = inject(leaf, k, module, x, kwargs)
                if out is None:
                    out = call(*args, **kwargs)
                slots = []
                rx, rout = trace.recorded("flax", leaf, module, x, out, kwargs)  # what the kind compares
                for v in (rx, rout):
                    slots.append(len(arrays) if isinstance(v, jax.Array) else None)
                    if isinstance(v, jax.Array):
                        arrays.append(v)
                self.meta.append(trace.Call(leaf, k, slots[0], slots[1], trace.call_site(),
                                            tuple(rx.shape) if isinstance(rx, jax.Array) else None,
                                            tuple(rout.shape) if isinstance(rout, jax.Array) else None))
                return out
            args = list(self.xs)
            for j, i in enumerate(self.float_in):
                args[i] = xf[j]
            self.meta.clear()  # the calls of this pass only (nnx.grad may trace the function anew)
            with trace.bind(m, self.fl, handler):
                outs = tuple(jax.tree.leaves(m(*args, **self.f_kw)))
            return outs, arrays

        m = nnx.merge(self.graphdef, params, rest)
        if cts is None:
            outs, arrays = forward(m, xs_float)
            grads = None
        else:
            def scalar(m, xf):
                outs, arrays = forward(m, xf)
                return sum((o * c).sum() for o, c in zip(outs, cts) if c is not None), (outs, arrays)
            (gp, gx), (outs, arrays) = nnx.grad(scalar, argnums=(nnx.DiffState(0, nnx.Param), 1),
                                                has_aux=True)(m, xs_float)
            grads = (gp, gx)
        return outs, arrays, nnx.split(m, nnx.Param, ...)[2], grads

    def run(self, pairing=None, masks=None, cts=None, abstract=False):
        """(calls, outputs, the state after the pass, gradients or None); `abstract`: shapes only,
        traced but not compiled."""
        _, params, rest = nnx.split(self.f, nnx.Param, ...)
        xs_float = [self.xs[i] for i in self.float_in]
        cts = None if cts is None else [None if c is None else jnp.asarray(c) for c in cts]
        args = (params, rest, xs_float, _mask_args(masks or {}), cts)
        failed: list = []  # filled by a trace that fails: the calls it made (for the message)
        try:
            if abstract:
                outs, arrays, new_rest, grads = jax.eval_shape(functools.partial(self._pass, pairing), *args)
            else:
                outs, arrays, new_rest, grads = self._jit(pairing, *args)
        except Exception:
            failed = self.meta
            with _framework("Flax", self.shapes, failed):
                raise
        meta = self._metas[self._key(pairing, args[3], cts)]  # from this function's trace, cached or not
        get = (lambda i: None) if abstract else (lambda i: None if i is None else np.asarray(arrays[i]))
        calls = [trace.Call(m.leaf, m.index, get(m.inp), get(m.out), m.called_at, m.in_shape, m.out_shape)
                 for m in meta]  # meta holds indices into `arrays` where calls hold arrays
        return calls, outs, new_rest, grads


# ---------------------------------------------------------------- layouts for comparing
def is_nhwc(flax_shape, torch_shape, layout: str, channels_last_kind: bool = False) -> bool:
    """Whether a Flax activation is channels-last (NWC, NHWC, NDHWC) where torch's is channels-first,
    judged from its shape and torch's: the layout that makes the shapes agree; where both or neither
    do (C = H = W, say), channels-last for the layers of a channels-last kind (nnx.Conv and the
    project's twins take nothing else), `layout` for other 4-D tensors, and as-is otherwise (a
    sequence (N, L, D) is no image). A model taking NCHW at its boundary may well be
    NHWC inside, so each tensor is judged on its own."""
    if flax_shape is None or torch_shape is None or not 3 <= len(flax_shape) <= 5 \
            or len(torch_shape) != len(flax_shape):
        return False
    as_is = tuple(flax_shape) == tuple(torch_shape)
    moved = tuple(flax_shape) == (torch_shape[0], *torch_shape[2:], torch_shape[1])
    if as_is != moved:
        return moved
    return channels_last_kind or (layout == "nhwc" and len(flax_shape) == 4)


def _channels_first(value):
    return value.transpose(0, value.ndim - 1, *range(1, value.ndim - 1))


def to_torch_layout(value, torch_shape, layout: str, kind: str | None = None, which: str = "out",
                    flax_in_shape=None, torch_in_shape=None, flatten=None):
    """A Flax activation in torch's layout: a channels-last tensor → channels-first; a Flatten's output
    of an NHWC map reordered (H, W, C) → (C, H, W); the input of a Linear whose rows were permuted
    likewise (docs/traps.md, traps 3, 4); heads split by nnx.LinearGeneral ((N, L, H, D) for torch's
    (N, L, H·D)) merged again."""
    if value is None:
        return value
    cl = kind is not None and kinds.is_channels_last(kind)
    if 3 <= value.ndim <= 5 and is_nhwc(value.shape, torch_shape, layout, cl):
        return _channels_first(value)
    if which == "out" and kind == "flatten" and value.ndim == 2 and is_nhwc(flax_in_shape, torch_in_shape, layout):
        n, h, w, c = flax_in_shape
        return value.reshape(n, h, w, c).transpose(0, 3, 1, 2).reshape(n, -1)
    if which == "in" and kind == "linear" and flatten and value.ndim == 2:
        c, hw, _ = flatten
        return value.reshape(value.shape[0], hw, c).transpose(0, 2, 1).reshape(value.shape[0], -1)
    if torch_shape is not None and value.ndim != len(torch_shape) and value.size == int(np.prod(torch_shape)):
        k = min(value.ndim, len(torch_shape)) - 1  # the leading axes agree; the trailing ones split or merge
        if tuple(value.shape[:k]) == tuple(torch_shape[:k]):
            return value.reshape(torch_shape)
    return value


def _side(leaf, call=None) -> Side:
    return Side(leaf.label, leaf.cls, leaf.source, leaf.defined, call.called_at if call else "?")


def _rows(t_calls, f_calls, pairing: Pairing, tol, layout, notes_of, ref_calls=None) -> list[Row]:
    """Rows in torch's execution order; Flax calls of unpaired layers after the row they followed.
    `ref_calls`: {(torch layer, call): (input, output)} of the float64 reference (the scaled rule)."""
    f_by = {(c.leaf.name, c.index): c for c in f_calls}
    t_by = {(c.leaf.name, c.index): c for c in t_calls}
    used_f = set()
    rows: list[Row] = []
    for c in t_calls:
        pair = pairing.of_torch(c.leaf.name)
        row = Row(0, c.leaf.kind, c.index, _side(c.leaf, c), None)
        if pair is not None:
            fc = f_by.get((pair.flax.name, c.index))
            row.flax = _side(pair.flax, fc)
            if c.index == 0:
                row.notes = notes_of(pair)
            if fc is None:
                row.missing = f"Flax makes no call #{c.index + 1}"
            else:
                used_f.add(id(fc))
                flatten = pair.flatten if pair.kind == "linear" else None
                r_in, r_out = (ref_calls or {}).get((c.leaf.name, c.index), (None, None))
                if c.out is not None and fc.out is not None:
                    row.out = measure(to_torch_layout(fc.out, c.out_shape, layout, pair.kind, "out", fc.in_shape,
                                                      c.in_shape), c.out, tol, ref=r_out)
                if c.inp is not None and fc.inp is not None and c.inp.dtype.kind == "f":
                    row.inp = measure(to_torch_layout(fc.inp, c.in_shape, layout, pair.kind, "in", fc.in_shape,
                                                      c.in_shape, flatten), c.inp, tol, ref=r_in)
        row._pair = pair
        rows.append(row)
    # Flax-only calls (unpaired layers, or paired ones called more often than torch) after their predecessor
    out: list[Row] = []
    pending: dict[int, list[Row]] = {}
    last = -1
    row_of_f = {}
    for r, c in zip(rows, t_calls):
        pair = pairing.of_torch(c.leaf.name)
        if pair is not None and (pair.flax.name, c.index) in f_by:
            row_of_f[id(f_by[(pair.flax.name, c.index)])] = r
    for fc in f_calls:
        if id(fc) in row_of_f:
            last = rows.index(row_of_f[id(fc)])
            continue
        pair = pairing.of_flax(fc.leaf.name)
        extra = Row(0, fc.leaf.kind, fc.index, None, _side(fc.leaf, fc))
        if pair is not None and (pair.torch.name, fc.index) not in t_by:
            extra.torch = _side(pair.torch)
            extra.missing = f"torch makes no call #{fc.index + 1}"
        pending.setdefault(last, []).append(extra)
    out += pending.get(-1, [])
    for i, r in enumerate(rows):
        out.append(r)
        out += pending.get(i, [])
    for i, r in enumerate(out):
        r.index = i
    return out


def _bearing(row: Row, what: str) -> list[str]:
    """The row's notes on settings that bear on `what` ("output" or "statistics": kind_record.Note)."""
    return [n for n in row.notes if bears_on(n, what)]


def _first_divergence(rows: list[Row], outputs, input_grads, param_grads, loose_names) -> Divergence | None:
    last_ok, between_t, between_f = None, [], []
    for r in rows:
        if r.missing:
            return Divergence("calls", r.index, r.torch, r.flax,
                              f"torch {r.torch} and Flax {r.flax}: {r.missing}", last_ok)
        if not (r.torch and r.flax) or not r.compared:
            (between_t if r.torch else between_f).append(r)
            continue
        pair_name = f"torch `{r.torch.name}` ⇄ Flax `{r.flax.name}`"
        if r.inp is not None and not r.inp.ok:
            t_named = between_t[0].torch if len(between_t) == 1 else None
            f_named = between_f[0].flax if len(between_f) == 1 else None
            where = f"after {last_ok}" if last_ok else "before any layer (from the model inputs)"
            ran = "; torch runs " + ", ".join(str(b.torch) for b in between_t) + " there" if between_t \
                else "; torch runs no layer there"
            fran = "; Flax runs " + ", ".join(str(b.flax) for b in between_f) + " there" if between_f else \
                f"; Flax runs no layer there: read its code up to the call at {r.flax.called_at}"
            msg = (f"the input of {pair_name} differs ({r.inp.problem}) though every earlier layer agrees: "
                   f"the divergence lies in the code {where} and before `{r.torch.name}`{ran}{fran}")
            return Divergence("input", r.index, t_named, f_named, msg, last_ok, r.torch.name)
        if r.out is not None and not r.out.ok:
            return Divergence("output", r.index, r.torch, r.flax,
                              f"the output of torch {r.torch} ⇄ Flax {r.flax} differs ({r.out.problem}); "
                              f"its input agrees" + ("" if r.inp else " (input not compared)") +
                              (f"; settings that differ: {'; '.join(ns)}" if (ns := _bearing(r, "output")) else ""),
                              last_ok)
        if r.state is not None and not r.state.ok:
            return Divergence("running statistics", r.index, r.torch, r.flax,
                              f"the running statistics of torch {r.torch} ⇄ Flax {r.flax} differ after the "
                              f"pass ({r.state.problem})" + (f"; {'; '.join(ns)}" if (ns := _bearing(r, "statistics"))
                                                             else ""), last_ok)
        last_ok, between_t, between_f = pair_name, [], []
    for i, s in enumerate(outputs):
        if not s.ok:
            where = f"after the last layer that agrees ({last_ok})" if last_ok else "(no layer was compared)"
            return Divergence("model output", None, None, None,
                              f"model output {i} differs ({s.problem}) though every layer agrees: the divergence "
                              f"lies in the code {where}", last_ok)
    bad = [r for r in rows if r.grad is not None and not r.grad.ok]
    if bad:  # gradients flow backwards: the last layer (in execution order) whose gradients part is nearest the cause
        r = bad[-1]
        return Divergence("gradient", r.index, r.torch, r.flax,
                          f"every output agrees but the parameter gradients of torch {r.torch} ⇄ Flax {r.flax} "
                          f"differ ({r.grad.problem}); it is the last layer in execution order whose gradients "
                          f"part (gradients flow backwards)", None)
    for name in loose_names:
        s = param_grads.get(name)
        if s is not None and not s.ok:
            return Divergence("gradient", None, None, None, f"the gradient of parameter `{name}` differs "
                                                            f"({s.problem})")
    for name, s in input_grads.items():
        if not s.ok:
            return Divergence("input gradient", None, None, None,
                              f"the gradient wrt {name} differs ({s.problem}) though outputs and parameter "
                              f"gradients agree")
    return None


# ---------------------------------------------------------------- the comparison
def _prepare(torch_model, flax_model, inputs, dtype, device, mode, layout, train, torch_kwargs, flax_kwargs,
             seed, notes):
    """Checked arguments and the two copies, ready to run (shared by compare and compare_training)."""
    _check_models(torch_model, flax_model)
    _choice("dtype", dtype, precision.DTYPES)
    _choice("device", device, precision.DEVICES)
    _choice("mode", mode, precision.MODES)
    _choice("layout", layout, LAYOUTS)
    if not isinstance(train, bool):
        raise PortingError(f"train must be True or False; got {train!r}")
    t_kw, f_kw = dict(torch_kwargs or {}), dict(flax_kwargs or {})
    np_in = as_numpy_inputs(inputs, dtype)
    _check_calls(torch_model, flax_model, len(np_in), t_kw, f_kw)
    tdev, jdev = _devices(torch_model, device, notes)
    f_np, rules = flax_inputs(np_in, layout)
    t = torch_copy(torch_model, dtype, tdev)
    f = flax_copy(flax_model, dtype, jdev, notes)
    _set_mode(t, f, train)
    tl, fl = trace.torch_leaves(t), trace.flax_leaves(f)
    runner = FlaxRunner(f, fl, f_np, f_kw, train, layout, jdev)
    return t, f, tl, fl, np_in, t_kw, runner, rules, Masks(seed, layout)


def _weights_arg(weights, direction):
    mapping = fn = None
    if isinstance(weights, str):
        _choice("weights", weights, DIRECTIONS)
        direction = weights
    elif isinstance(weights, dict):
        mapping = weights
    elif callable(weights):
        fn = weights
    else:
        raise PortingError(f"weights must be 'torch->flax', 'flax->torch', a dict or a callable; got "
                           f"{type(weights).__name__}")
    direction = direction or "torch->flax"
    _choice("direction", direction, DIRECTIONS)
    return mapping, fn, direction


def pair_and_convert(t, f, tl, fl, np_in, t_kw, runner, mapping, fn, direction, layout, notes):
    """Pair the layers from one pass of each model (torch's recorded, Flax's traced abstractly), then
    convert the weights; returns the pairing and the torch snapshot after conversion."""
    snap = _torch_snapshot(t)
    d_t, _ = torch_pass(t, tl, np_in, t_kw)
    _torch_restore(t, snap)
    try:
        d_f, outs, _, _ = runner.run(None, abstract=True)
    except PortingError as e:
        raise PortingError(str(e) + _shape_hint(d_t, runner.meta, layout)) from e.__cause__
    runner.out_shapes = [tuple(o.shape) for o in outs]
    pairing = build(t, f, tl, fl, d_t, d_f, mapping=mapping, layout=layout, converter=fn is not None)
    _convert(t, f, pairing, direction, fn)
    return pairing


def _shape_hint(t_calls, f_calls, layout: str) -> str:
    """Where the Flax model's layer outputs first take another shape than torch's (layers with
    parameters, in execution order), for the message of a Flax model that failed."""
    t_seq = [c for c in t_calls if kinds.is_param_kind(c.leaf.kind)]
    f_seq = [c for c in f_calls if kinds.is_param_kind(c.leaf.kind)]
    for tc, fc in zip(t_seq, f_seq):
        want = tc.out_shape
        if want is not None and len(want) == 4 and is_nhwc(fc.out_shape, want, layout):
            want = (want[0], want[2], want[3], want[1])
        if want != fc.out_shape:
            return (f"; the first layer whose output shape differs from torch's is Flax `{fc.leaf.label}` "
                    f"({fc.leaf.cls}, called at {fc.called_at}): {fc.out_shape}, where torch `{tc.leaf.label}` "
                    f"gives {tc.out_shape}" + (" (NHWC: " + str(want) + ")" if want != tc.out_shape else ""))
    return ""


def _check_flatten(pairing: Pairing, f_calls, t, f, direction, fn, layout: str) -> bool:
    """Decide each Flatten→Linear row permutation from the recorded Flax data (the layout's default
    where the data cannot tell) and convert again if a decision changed. True if anything changed."""
    from parity.porting.pairing import flatten_evidence
    changed = False
    for p in pairing.pairs:
        if p.kind != "linear" or not p.flatten_candidate:
            continue
        c = p.flatten_candidate[0]
        seen = flatten_evidence(p, f_calls, c)
        order = seen or ("hwc" if layout == "nhwc" else "chw")
        where = f"torch `{p.torch.label}` reads a flattened map of {c} channels; the Flax model flattens it " \
                f"in {'(H, W, C)' if order == 'hwc' else '(C, H, W)'} order"
        how = "(seen in the data)" if seen else f"(taken from layout={layout!r}; the data cannot tell)"
        pairing.notes.append(f"{where} {how}: rows " + ("permuted (docs/traps.md, trap 4)" if order == "hwc"
                                                          else "kept"))
        want = p.flatten_candidate if order == "hwc" else None
        if want != p.flatten:
            p.flatten, changed = want, True
    if changed:
        _convert(t, f, pairing, direction, fn)
    return changed


def compare(torch_model, flax_model, inputs, *, dtype: str = "float32", device: str = "cpu",
            mode: str = "strict", weights="torch->flax", direction: str | None = None, layout: str = "nhwc",
            train: bool = False, seed: int = SEED, torch_kwargs: dict | None = None,
            flax_kwargs: dict | None = None, rule: str | None = None, accept=()) -> Report:
    """Compare a torch model with its Flax NNX port on `inputs` (NumPy, torch's layout); the rules
    are in parity.porting's docstring. `rule`: "scaled" (the float32 default: no worse than torch's
    own float32 against a float64 run of the torch model, parity/porting/verdict.py) or "fixed"
    (the rtol/atol of parity/tolerances.py; the float64 default). `accept`: names of known
    differences (parity/porting/differences.py) measured and listed but not failed. Returns a Report; raises
    PortingError (one line) when the models or inputs cannot be compared as given. The caller's
    models are not changed."""
    t0 = time.perf_counter()
    notes: list[str] = []
    mapping, fn, direction = _weights_arg(weights, direction)
    _choice("mode", mode, precision.MODES)
    rule = _rule(rule, dtype)
    try:
        accepted_kinds = differences.check(accept)
    except ValueError as e:
        raise PortingError(str(e)) from None
    accepted: list[dict] = []
    with precision.policy(mode):
        t, f, tl, fl, np_in, t_kw, runner, rules, masks = _prepare(
            torch_model, flax_model, inputs, dtype, device, mode, layout, train, torch_kwargs, flax_kwargs, seed,
            notes)
        tol = lookup(dtype, device, mode)
        with trace.patched({type(lf.module) for lf in fl.values()}):
            pairing = pair_and_convert(t, f, tl, fl, np_in, t_kw, runner, mapping, fn, direction, layout, notes)
            snap = _torch_snapshot(t)
            for _ in range(2):  # a second round only if the data overturn a Flatten→Linear permutation
                # torch: a recorded pass (every leaf layer's input and output), then outputs and gradients
                t_calls, _ = torch_pass(t, tl, np_in, t_kw, masks.torch_inject(pairing))
                t_stats = _torch_stats(pairing) if train else {}
                _torch_restore(t, snap)
                np_t, t_grads, cts = _torch_gradients(t, tl, np_in, t_kw, masks, pairing, seed)
                _torch_restore(t, snap)
                # Flax: one compiled pass giving all of that at once, for the same cotangents
                shapes = runner.out_shapes  # from the pass that paired the layers: weights do not change them
                # a channels-last output (NWC, NHWC, NDHWC) takes its cotangent channels-last too
                f_cts = [None if c is None else (np.moveaxis(c, 1, -1) if 3 <= c.ndim <= 5 and is_nhwc(
                    sh, c.shape, layout) else c) for c, sh in zip(cts, list(shapes) + [None] * len(cts))]
                fits = bool(t_grads) and len(shapes) == len(f_cts) and all(
                    c is None or tuple(c.shape) == sh for c, sh in zip(f_cts, shapes))
                f_calls, f_outs, f_rest, grads = runner.run(pairing, masks.masks, f_cts if fits else None)
                if not _check_flatten(pairing, f_calls, t, f, direction, fn, layout):
                    break
                snap = _torch_snapshot(t)
            state_stats = _state_stats(t_stats, f_rest, pairing, tol, accepted_kinds, accepted) if train else {}
            random = _unshared_randomness(tl, pairing) if rule == "scaled" and train else []
            if random:  # torch's float64 run would draw masks of its own: no reference for the scaled rule
                rule = "fixed"
                notes.append(f"judged by the fixed tolerance, not the scaled rule: torch {', '.join(random)} draws "
                             f"masks no Flax layer shares, so a float64 run of torch would compute something else")
            ref = _float64_reference(t, np_in, t_kw, masks, pairing, cts) if rule == "scaled" else None
            outputs, input_grads, param_grads, grad_notes = _compare_outputs(
                np_t, t_grads, f_outs, grads, fits, [i for i, x in enumerate(np_in) if x.dtype.kind == "f"],
                [r.endswith("NCHW → NHWC for Flax") for r in rules], pairing, tol, layout, ref)

    def notes_of(pair: Pair):
        fc = next((c for c in f_calls if c.leaf is pair.flax), None)
        return kinds.notes(pair.kind, pair.torch.module, pair.flax.module, train=train, dtype=dtype,
                           flax_in_shape=fc.in_shape if fc else None, layout=layout)

    rows = _rows(t_calls, f_calls, pairing, tol, layout, notes_of, ref.calls if ref else None)
    for r in rows:
        p = getattr(r, "_pair", None)
        if p is None or r.call != 0 or r.flax is None or p not in pairing.pairs:
            continue
        prefix = p.torch.name + "." if p.torch.name else ""
        names = [k for k in param_grads if k.startswith(prefix)]  # its sub-modules' too (out_proj)
        r.grad, r.grad_names = worst([param_grads[k] for k in names]), names
        if p.torch.name in state_stats:
            r.state = state_stats[p.torch.name]
    unpaired_dropout = [lf.label for lf in tl.values() if lf.kind == "dropout" and train
                        and pairing.of_torch(lf.name) is None]
    if unpaired_dropout:
        notes.append(f"torch Dropout {', '.join(unpaired_dropout)} has no Flax Dropout module to pair with: "
                     f"its training-mode masks cannot be shared (docs/traps.md, trap 18)")
    first = _first_divergence(rows, outputs, input_grads, param_grads, [n for n, _ in pairing.loose])
    all_notes = [TRAIN_NOTE if train else EVAL_NOTE, *rules,
                 f"layers paired {pairing.strategy}; weights converted {direction}"
                 + (" by the given callable" if fn else ""), *pairing.notes, *grad_notes, *notes]
    for r in rows:
        if r.call == 0 and r.notes:
            all_notes.append(f"torch `{r.torch.name}` ⇄ Flax `{r.flax.name}`: " + "; ".join(r.notes))
        if r.out is not None and r.out.ok and r.out.problem:
            all_notes.append(f"torch `{r.torch.name}` ⇄ Flax `{r.flax.name}` output: {r.out.problem}")
    all_notes += [f"output {i}: {s.problem}" for i, s in enumerate(outputs) if s.ok and s.problem]
    for a in accepted:
        all_notes.append(f"accepted {a['difference']} at torch `{a['torch']}` ⇄ Flax `{a['flax']}`: {a['array']} "
                         f"max abs {a['max_abs']:.3g}, max rel {a['max_rel']:.3g} ({a['doc']})")
    for d in accepted_kinds:
        if not any(a["difference"] == d.name for a in accepted):
            all_notes.append(f"accepted {d.name}, but nothing it covers was compared ({d.what}; compared only in "
                             f"training mode)")
    all_notes = list(dict.fromkeys(all_notes))  # a second round of passes repeats some
    return Report(type(torch_model).__name__, type(flax_model).__name__, dtype, device, mode, train, layout,
                  direction, tol, rows, outputs, input_grads, param_grads, first, pairing.to_dict(), all_notes,
                  time.perf_counter() - t0, rule, accepted)


def _convert(t, f, pairing: Pairing, direction: str, fn) -> None:
    if direction == "torch->flax":
        sd = {k: v.detach().cpu().numpy().copy() for k, v in t.state_dict().items()}
        if fn is None:
            pairing.load_flax(f, sd)
            return
        pure = _call_user(fn, sd)
        state = nnx.state(f)
        ref = nnx.to_pure_dict(state)
        _check_pure(ref, pure, ())
        from parity.porting.pairing import _cast_like
        nnx.replace_by_pure_dict(state, _cast_like(ref, pure))
        nnx.update(f, state)
    else:
        pure = jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(f, nnx.Not(nnx.RngState))))
        if fn is None:
            pairing.load_torch(t, pure)
            return
        sd = _call_user(fn, pure)
        ref = t.state_dict()
        with torch.no_grad():
            for k, v in sd.items():
                if k not in ref:
                    raise PortingError(f"weights callable returned `{k}`, which the torch model does not hold")
                if tuple(ref[k].shape) != tuple(np.shape(v)):
                    raise PortingError(f"weights callable: `{k}` has shape {tuple(np.shape(v))}, the torch model "
                                       f"holds {tuple(ref[k].shape)}")
                ref[k].copy_(torch.as_tensor(np.array(v)).to(ref[k].dtype))
        missing = [k for k, _ in t.named_parameters() if k not in sd]
        if missing:
            raise PortingError(f"weights callable returned no `{missing[0]}` (and {len(missing) - 1} more)")


def _call_user(fn, arg):
    try:
        return fn(arg)
    except (Exception, SystemExit) as e:  # noqa: BLE001 - the user's conversion failing is their input's problem
        raise PortingError(f"the weights callable failed: {_first_line(e)}") from e


def _check_pure(ref, pure, path) -> None:
    if not isinstance(pure, dict):
        raise PortingError("the weights callable must return a nested dict (nnx.to_pure_dict's form)")
    for k, v in pure.items():
        if not isinstance(ref, dict) or k not in ref:
            raise PortingError(f"weights callable returned `{trace.flax_name(path + (k,))}`, which the Flax model "
                               f"does not hold")
        if isinstance(v, dict):
            _check_pure(ref[k], v, path + (k,))
        elif tuple(np.shape(v)) != tuple(np.shape(ref[k])):
            raise PortingError(f"weights callable: `{trace.flax_name(path + (k,))}` has shape {tuple(np.shape(v))}, "
                               f"the Flax model holds {tuple(np.shape(ref[k]))}")


def _torch_stats(pairing: Pairing) -> dict:
    """Each paired torch BatchNorm's running statistics (NumPy copies)."""
    out = {}
    for p in pairing.pairs:
        if p.kind == "batchnorm":
            sd = p.torch.module.state_dict()
            out[p.torch.name] = {k: sd[k].detach().cpu().numpy().copy() for k in ("running_mean", "running_var")
                                 if k in sd}
    return out


def _state_stats(t_stats: dict, f_rest, pairing: Pairing, tol, accept=(), accepted=None) -> dict:
    """torch's running statistics against the Flax layer's, after one training-mode pass each; an
    array an accepted known difference covers is measured into `accepted` instead of judged."""
    out = {}
    pure = nnx.to_pure_dict(f_rest)
    for p in pairing.pairs:
        if p.kind != "batchnorm" or p.torch.name not in t_stats:
            continue
        node = pure
        for k in p.flax.path:
            node = node.get(k, {}) if isinstance(node, dict) else {}
        conv = kinds.to_torch("batchnorm", {k: np.asarray(node[k]) for k in ("mean", "var") if k in node})
        st = []
        for k in conv:
            if k not in t_stats[p.torch.name]:
                continue
            m = measure(conv[k], t_stats[p.torch.name][k], tol)
            d = next((d for d in accept if d.applies(p) and d.torch_array == k), None)
            if d is None:
                st.append(m)
            elif accepted is not None:
                accepted.append({"difference": d.name, "torch": p.torch.name, "flax": p.flax.name, "array": k,
                                 "max_abs": m.max_abs, "max_rel": m.max_rel, "within_tolerance": m.ok,
                                 "doc": d.doc})
        if st:
            out[p.torch.name] = worst(st)
    return out


def _torch_gradients(t, tl, np_in, t_kw, masks: Masks, pairing: Pairing, seed: int, cts=None):
    """torch's outputs, its gradients wrt every floating input and every parameter for one fixed
    random cotangent, and that cotangent: N(0, 1/n) for an output of n elements (drawn in NumPy),
    the scale a mean-reduced loss gives its gradient, so a parameter's gradient (a sum over batch and
    positions) keeps the size of one output's however large the batch, and the table's atol means
    the same for every model size."""
    dev = _tdev(t)
    t_in = [torch.tensor(x, device=dev, requires_grad=x.dtype.kind == "f") for x in np_in]
    params = dict(t.named_parameters())
    for p in params.values():
        p.requires_grad_(True)
    with _framework("torch", [x.shape for x in np_in]), trace.torch_tracer(tl.values(), None,
                                                                              masks.torch_inject(pairing)):
        t_outs = _flat_torch(t(*t_in, **t_kw))
    np_t = [o.detach().cpu().numpy().copy() for o in t_outs]
    if cts is None:
        rng = np.random.default_rng(seed)
        cts = [(rng.standard_normal(o.shape) / np.sqrt(max(o.size, 1))).astype(o.dtype) if o.dtype.kind == "f"
               else None for o in np_t]
    float_in = [i for i, x in enumerate(np_in) if x.dtype.kind == "f"]
    wrt = [t_in[i] for i in float_in] + list(params.values())
    scalar = sum((o * torch.as_tensor(c, device=o.device)).sum() for o, c in zip(t_outs, cts)
                 if c is not None and o.requires_grad)
    t_grads = {}
    if isinstance(scalar, torch.Tensor) and scalar.requires_grad and wrt:
        gs = torch.autograd.grad(scalar, wrt, allow_unused=True)
        names = [f"input {i}" for i in float_in] + list(params)
        t_grads = {n: (torch.zeros_like(w) if g is None else g).detach().cpu().numpy().copy()
                   for n, w, g in zip(names, wrt, gs)}
    return np_t, t_grads, cts


def _rule(rule: str | None, dtype: str) -> str:
    """The verdict rule: "scaled" by default in float32, "fixed" otherwise (parity/porting/verdict.py)."""
    if rule is None:
        return "scaled" if dtype == "float32" else "fixed"
    _choice("rule", rule, verdict.RULES)
    if rule == "scaled" and dtype != "float32":
        raise PortingError(f"rule 'scaled' judges float32 against a float64 run of the torch model; dtype {dtype} "
                           f"is judged by the fixed tolerance (rule='fixed')")
    return rule


def _unshared_randomness(tl: dict, pairing: Pairing) -> list[str]:
    """torch Dropout layers active in training mode whose masks no paired Flax layer shares."""
    return [lf.label for lf in tl.values() if lf.kind == "dropout" and lf.module.training
            and lf.module.p > 0 and pairing.of_torch(lf.name) is None]


@dataclass
class Reference:
    """The torch model run in float64 on the same weights, inputs and cotangents: every leaf call's
    input and output, the outputs, and the gradients (NumPy, float64)."""

    calls: dict
    outputs: list
    grads: dict


def _float64_reference(t, np_in, t_kw, masks: Masks, pairing: Pairing, cts) -> Reference:
    """What the scaled rule measures both float32 sides against: a float64 copy of the torch model
    (its float32 weights, inputs and cotangents cast up exactly), the same dropout masks."""
    t64 = copy.deepcopy(t).double()
    tl64 = trace.torch_leaves(t64)
    x64 = [x.astype(np.float64) if x.dtype.kind == "f" else x for x in np_in]
    kw64 = {k: (v.double() if isinstance(v, torch.Tensor) and v.is_floating_point() else v) for k, v in t_kw.items()}
    snap = _torch_snapshot(t64)
    calls, _ = torch_pass(t64, tl64, x64, kw64, masks.torch_inject(pairing))
    _torch_restore(t64, snap)
    c64 = [None if c is None else c.astype(np.float64) for c in cts]
    outs, grads, _ = _torch_gradients(t64, tl64, x64, kw64, masks, pairing, 0, cts=c64)
    return Reference({(c.leaf.name, c.index): (c.inp, c.out) for c in calls}, outs, grads)


def _compare_outputs(np_t, t_grads, f_outs, grads, fits, float_in, transposed, pairing: Pairing, tol, layout: str,
                     ref=None):
    """Outputs, input gradients and parameter gradients (torch names and layouts), compared (with
    `ref`, the float64 reference, by the scaled rule)."""
    ref_outs = ref.outputs if ref else [None] * len(np_t)
    ref_grads = ref.grads if ref else {}
    np_f = [np.asarray(o) for o in f_outs]
    if len(np_f) != len(np_t):
        return ([Stats((), np.inf, np.inf, np.nan, np.nan, np.nan, False,
                       f"torch returns {len(np_t)} outputs, Flax {len(np_f)}")], {}, {},
                ["gradients not compared: the outputs differ in number"])
    outputs = [measure(to_torch_layout(a, b.shape, layout), b, tol, ref=r) for a, b, r in zip(np_f, np_t, ref_outs)]
    if not fits or grads is None:
        return outputs, {}, {}, ["gradients not compared: " + ("the output shapes differ" if t_grads
                                                               else "nothing to differentiate")]
    gp, gx = grads
    input_grads = {}
    for j, i in enumerate(float_in):  # an input's gradient comes back in the layout the input went in
        g, ref = np.asarray(gx[j]), t_grads[f"input {i}"]
        input_grads[f"input {i}"] = measure(g.transpose(0, 3, 1, 2) if transposed[i] else g, ref, tol,
                                            ref=ref_grads.get(f"input {i}"))
    f_grads = pairing.flax_to_torch(jax.tree.map(np.asarray, nnx.to_pure_dict(gp)), params_only=True)
    param_grads, notes = {}, []
    for name, g in t_grads.items():
        if name.startswith("input "):
            continue
        if name not in f_grads:
            notes.append(f"gradient of torch `{name}` not compared: no Flax counterpart")
            continue
        param_grads[name] = measure(f_grads[name], g, tol, ref=ref_grads.get(name))
    return outputs, input_grads, param_grads, notes
