"""The report's rows and measured arrays: each paired layer call's input and output (read in torch's
layout), its parameter gradients and running statistics, and the model's outputs and input
gradients, each judged by the tolerance (or, with the float64 reference, by the scaled rule)."""
from __future__ import annotations

import jax
import numpy as np
from flax import nnx

from parity.porting import kinds
from parity.porting.layouts import to_torch_layout
from parity.porting.pairing import Pairing
from parity.porting.passes import Passes
from parity.porting.prepare import Prepared
from parity.porting.report import Row, Side, Stats, measure, worst


def _side(leaf, call=None) -> Side:
    return Side(leaf.label, leaf.cls, leaf.source, leaf.defined, call.called_at if call else "?")


def build_rows(t_calls, f_calls, pairing: Pairing, tol, layout, notes_of, ref_calls=None) -> list[Row]:
    """Rows in torch's execution order; Flax calls of unpaired layers after the row they followed.
    `ref_calls`: {(torch layer, call): (input, output)} of the float64 reference (the scaled rule)."""
    f_by = {(c.leaf.name, c.index): c for c in f_calls}
    t_by = {(c.leaf.name, c.index): c for c in t_calls}
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


def attach_gradients(rows: list[Row], pairing: Pairing, param_grads: dict, state_stats: dict) -> None:
    """Each paired layer's first row gets the worst of its parameters' gradients (its sub-modules'
    too: out_proj) and its running statistics."""
    for r in rows:
        p = getattr(r, "_pair", None)
        if p is None or r.call != 0 or r.flax is None or p not in pairing.pairs:
            continue
        prefix = p.torch.name + "." if p.torch.name else ""
        names = [k for k in param_grads if k.startswith(prefix)]
        r.grad, r.grad_names = worst([param_grads[k] for k in names]), names
        if p.torch.name in state_stats:
            r.state = state_stats[p.torch.name]


def state_stats(t_stats: dict, f_rest, pairing: Pairing, tol, accept=(), accepted=None) -> dict:
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


def compare_outputs(passes: Passes, prepared: Prepared, pairing: Pairing, tol, ref=None):
    """Outputs, input gradients and parameter gradients (torch names and layouts), compared (with
    `ref`, the float64 reference, by the scaled rule): (outputs, input gradients, parameter
    gradients, notes)."""
    np_t, t_grads, layout = passes.torch_outputs, passes.torch_grads, prepared.layout
    ref_outs = ref.outputs if ref else [None] * len(np_t)
    ref_grads = ref.grads if ref else {}
    np_f = [np.asarray(o) for o in passes.flax_outputs]
    if len(np_f) != len(np_t):
        return ([Stats((), np.inf, np.inf, np.nan, np.nan, np.nan, False,
                       f"torch returns {len(np_t)} outputs, Flax {len(np_f)}")], {}, {},
                ["gradients not compared: the outputs differ in number"])
    outputs = [measure(to_torch_layout(a, b.shape, layout), b, tol, ref=r) for a, b, r in zip(np_f, np_t, ref_outs)]
    if not passes.fits or passes.flax_grads is None:
        return outputs, {}, {}, ["gradients not compared: " + ("the output shapes differ" if t_grads
                                                               else "nothing to differentiate")]
    gp, gx = passes.flax_grads
    float_in = [i for i, x in enumerate(prepared.inputs) if x.dtype.kind == "f"]
    transposed = [r.endswith("NCHW → NHWC for Flax") for r in prepared.input_rules]
    input_grads = {}
    for j, i in enumerate(float_in):  # an input's gradient comes back in the layout the input went in
        g, want = np.asarray(gx[j]), t_grads[f"input {i}"]
        input_grads[f"input {i}"] = measure(g.transpose(0, 3, 1, 2) if transposed[i] else g, want, tol,
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
