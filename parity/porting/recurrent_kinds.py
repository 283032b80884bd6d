"""The recurrent kinds: torch `nn.LSTM`, `nn.GRU`, `nn.RNN` (one layer, either direction) ⇄ `nnx.RNN`
over `nnx.LSTMCell` / `nnx.OptimizedLSTMCell`, `nnx.GRUCell`, `nnx.SimpleCell`, and `nnx.Bidirectional`
over two of them (`Kind` records, as in parity/porting/layer_kinds.py; described in
parity/porting/kinds.py).

What differs between the two, and how the records deal with it:

* Gates. torch stacks the gates' rows in `weight_ih_l0` (G·H, I) and `weight_hh_l0` (G·H, H), in the
  order (i, f, g, o) for the LSTM and (r, z, n) for the GRU. nnx.LSTMCell keeps one Linear per gate
  and side (`ii`, `if_`, `ig`, `io` on the input, `hi`, `hf`, `hg`, `ho` on the hidden state), kernels
  (in, out); nnx.OptimizedLSTMCell, nnx.GRUCell and nnx.SimpleCell keep `dense_i` (I, G·H) and
  `dense_h` (H, G·H), gates in torch's order. Kernels are torch's blocks transposed: exact.
* Biases. torch adds two biases, `bias_ih_l0` and `bias_hh_l0`; each nnx cell has one, since the
  two are only ever summed (on `hi`…`ho`, `dense_h` of the LSTMs, on `dense_i` of the GRU and
  SimpleCell). torch → Flax puts their sum in it; Flax → torch puts it in bias_ih and zeros in
  bias_hh, so torch → Flax → torch is exact only where bias_hh was zero, and torch → Flax → torch →
  Flax always is. Gradients: d loss/d bias_ih = d loss/d bias_hh = the Flax bias's gradient, so it
  goes to both. torch's bias=False: the nnx bias is zero, and dropped on the way back.
* GRU's n gate. torch computes n = tanh(W_in x + b_in + r·(W_hn h + b_hn)); nnx.GRUCell computes
  tanh(W_in x + b_in + r·W_hn h) (its docstring shows b_hn; its code has no such bias). b_hr and b_hz
  fold into dense_i's bias; b_hn, scaled by r, cannot: it is dropped and the layer's note says so;
  the outputs agree only where it is zero (with torch's default initialisation, H = 5, 6 steps,
  they differ by 0.17 to 0.27), and torch's gradient wrt bias_hh (whose n part is r times that of
  bias_ih) is not compared.
* Layout and returns. torch's default batch_first=False takes (L, N, ·), as nnx.RNN(time_major=True)
  does; both sides' activations are compared batch-first. torch returns (output, h_n) or (output,
  (h_n, c_n)); nnx.RNN the outputs, or (carry, outputs) with return_carry=True, the LSTM cells' carry
  being (c, h), not torch's (h, c). The output sequence is what is compared. Bidirectional outputs
  are [forward, backward] along features on both sides, the backward one in input order.
* Layers. torch's num_layers = L stacks L layers in one module (weights `…_l0`, `…_l1`, …); nnx has
  one layer per nnx.RNN (or nnx.Bidirectional), so its counterpart is an `nnx.Sequential` of L of
  them, layer k's arrays under `layers.k.`. torch's inter-layer dropout (`dropout` > 0, training mode
  only) has no place in that stack and is noted.
* No nnx counterpart: an LSTM's proj_size > 0; such torch layers are left to the "no kind" message.
"""
from __future__ import annotations

import re

import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx
from torch import nn

from parity.porting.kind_record import Kind

# cell class → the Flax Linears holding (input kernels, hidden kernels, the one bias): one name per gate
# block of torch's stacked rows, or a single name where Flax stacks the gates too (in torch's order)
_CELLS = {
    nnx.LSTMCell: (("ii", "if_", "ig", "io"), ("hi", "hf", "hg", "ho"), ("hi", "hf", "hg", "ho")),
    nnx.OptimizedLSTMCell: (("dense_i",), ("dense_h",), ("dense_h",)),
    nnx.GRUCell: (("dense_i",), ("dense_h",), ("dense_i",)),
    nnx.SimpleCell: (("dense_i",), ("dense_h",), ("dense_i",)),
}
_PREFIXES = ("cell.", "forward_rnn.cell.", "backward_rnn.cell.")


def _layout(cell) -> tuple:
    return next(v for c, v in _CELLS.items() if isinstance(cell, c))


def _rnns(fm) -> tuple:
    return (fm.forward_rnn, fm.backward_rnn) if isinstance(fm, nnx.Bidirectional) else (fm,)


def _stack(fm) -> list:
    """The layers of a Flax counterpart: an nnx.Sequential's, else the one layer itself."""
    return list(fm.layers) if isinstance(fm, nnx.Sequential) else [fm]


def _layer_of(name: str) -> int:
    """The torch layer an array belongs to: 1 for weight_ih_l1 or bias_hh_l1_reverse."""
    return int(re.search(r"_l(\d+)(?:_reverse)?$", name).group(1))


def _directions(bidirectional: bool) -> tuple:
    """(torch suffix, Flax prefix) per direction."""
    return (("", "forward_rnn.cell."), ("_reverse", "backward_rnn.cell.")) if bidirectional else (("", "cell."),)


def _summed_bias(name, b_ih, b_hh, hidden: int):
    """The one Flax bias: bias_ih + bias_hh (the GRU's b_hn, the last third of bias_hh, left out)."""
    if b_hh is not None and name == "gru":
        b_hh = np.concatenate([b_hh[:2 * hidden], np.zeros_like(b_hh[2 * hidden:])])
    if b_ih is None or b_hh is None:
        return b_ih if b_hh is None else b_hh
    return b_ih + b_hh


def _one_to_flax(name: str, gates: int, cells: tuple):
    def convert(part, tm=None, fm=None) -> dict:
        ih, hh, bias = _layout(_rnns(fm)[0].cell) if fm is not None else _CELLS[cells[0]]
        bi = tm.bidirectional if tm is not None else any(k.endswith("_reverse") for k in part)
        out = {}
        for sfx, pre in _directions(bi):
            w_ih, w_hh = part.get("weight_ih_l0" + sfx), part.get("weight_hh_l0" + sfx)
            for names, w in ((ih, w_ih), (hh, w_hh)):
                if w is not None:
                    for n, block in zip(names, np.split(w, len(names))):
                        out[f"{pre}{n}.kernel"] = np.ascontiguousarray(block.T)
            if w_hh is None:
                continue
            b = _summed_bias(name, part.get("bias_ih_l0" + sfx), part.get("bias_hh_l0" + sfx), w_hh.shape[1])
            if b is None:  # torch bias=False: the nnx cell's bias is zero
                b = np.zeros(gates * w_hh.shape[1], w_hh.dtype)
            for n, block in zip(bias, np.split(b, len(bias))):
                out[f"{pre}{n}.bias"] = np.ascontiguousarray(block)
        return out
    return convert


def _one_to_torch(name: str, cells: tuple):
    def convert(part, tm=None, fm=None, grads: bool = False) -> dict:
        if fm is not None:
            ih, hh, bias = _layout(_rnns(fm)[0].cell)
        else:  # from the paths: nnx.LSTMCell's gate Linears, else the stacked dense_i / dense_h
            ih, hh, bias = next((_CELLS[c] for c in cells if any(k.endswith(f".{_CELLS[c][0][0]}.kernel")
                                                                 for k in part)), _CELLS[cells[-1]])
        bi = any(k.startswith("forward_rnn.") for k in part)
        has_bias = tm.bias if tm is not None else True
        out = {}
        for sfx, pre in _directions(bi):
            for tname, names in (("weight_ih_l0", ih), ("weight_hh_l0", hh)):
                blocks = [part.get(f"{pre}{n}.kernel") for n in names]
                if all(b is not None for b in blocks):
                    out[tname + sfx] = np.ascontiguousarray(np.concatenate([b.T for b in blocks]))
            blocks = [part.get(f"{pre}{n}.bias") for n in bias]
            if has_bias and all(b is not None for b in blocks):
                b = np.concatenate(blocks)
                out["bias_ih_l0" + sfx] = b
                if not grads:
                    out["bias_hh_l0" + sfx] = np.zeros_like(b)
                elif name != "gru":  # the two biases are summed: one gradient for both
                    out["bias_hh_l0" + sfx] = b.copy()
                # GRU: torch's gradient wrt b_hn (inside r·(W_hn h + b_hn)) has no Flax counterpart
        return out
    return convert


def _to_flax_of(name: str, gates: int, cells: tuple):
    """Each torch layer k's arrays (renamed to layer 0's) through the one-layer conversion, under
    `layers.k.` where the Flax side is a stack."""
    one = _one_to_flax(name, gates, cells)

    def convert(part, tm=None, fm=None) -> dict:
        n = tm.num_layers if tm is not None else 1 + max((_layer_of(k) for k in part), default=0)
        layers = _stack(fm) if fm is not None else [None] * n
        stacked = isinstance(fm, nnx.Sequential) if fm is not None else n > 1
        if len(layers) != n:
            raise ValueError(f"torch {name.upper()} has num_layers={n}; the Flax layer holds {len(layers)} "
                             f"recurrent layer(s): stack {n} nnx.RNN (or nnx.Bidirectional) in an nnx.Sequential")
        out = {}
        for k, layer in enumerate(layers):
            mine = {re.sub(r"_l\d+(_reverse)?$", r"_l0\1", a): v for a, v in part.items() if _layer_of(a) == k}
            pre = f"layers.{k}." if stacked else ""
            out.update({pre + p: v for p, v in one(mine, tm, layer).items()})
        return out
    return convert


def _to_torch_of(name: str, cells: tuple):
    one = _one_to_torch(name, cells)

    def convert(part, tm=None, fm=None, grads: bool = False) -> dict:
        if not any(p.startswith("layers.") for p in part):
            return one(part, tm, fm, grads)
        layers = _stack(fm) if fm is not None else None
        by_layer: dict[int, dict] = {}
        for p, v in part.items():
            _, k, rest = p.split(".", 2)
            by_layer.setdefault(int(k), {})[rest] = v
        out = {}
        for k, mine in sorted(by_layer.items()):
            got = one(mine, tm, layers[k] if layers else None, grads)
            out.update({re.sub(r"_l0(_reverse)?$", rf"_l{k}\1", a): v for a, v in got.items()})
        return out
    return convert


def _torch_record(tm, x, out, kwargs=None):
    """What a torch call is compared by: the input and the output sequence (not the final state),
    both batch-first. A PackedSequence is not recorded."""
    if isinstance(out, tuple):
        out = out[0]
    x, out = (v if isinstance(v, torch.Tensor) else None for v in (x, out))
    if not tm.batch_first:
        x, out = (v.transpose(0, 1) if v is not None and v.ndim == 3 else v for v in (x, out))
    return x, out


def _flax_record(fm, x, out, kwargs=None):
    """The nnx side's counterpart: the outputs out of (carry, outputs), both batch-first."""
    if isinstance(out, tuple):
        out = out[-1]
    major = (kwargs or {}).get("time_major")
    if major if major is not None else getattr(_stack(fm)[0], "time_major", False):
        x, out = (jnp.swapaxes(v, 0, 1) if getattr(v, "ndim", 0) == 3 else v for v in (x, out))
    return x, out


def _fn_name(fn) -> str:
    return getattr(fn, "__name__", type(fn).__name__)


def _notes_of(name: str):
    def notes(tm, fm, ctx) -> list[str]:
        layers = _stack(fm)
        out = [] if len(layers) == tm.num_layers else [
            f"torch num_layers={tm.num_layers}; the Flax side stacks {len(layers)} recurrent layer(s)"]
        if tm.num_layers > 1 and tm.dropout > 0 and ctx.train:
            out.append(f"torch dropout={tm.dropout} between layers (training mode): the nnx.Sequential stack has "
                       f"no dropout between its layers")
        for layer in layers:
            out += _layer_notes(name, tm, layer)
        return list(dict.fromkeys(out + _bias_notes(name, tm)))
    return notes


def _layer_notes(name: str, tm, fm) -> list[str]:
    """The settings of one Flax recurrent layer (an nnx.RNN or nnx.Bidirectional) that differ from torch's."""
    out = []
    bi = isinstance(fm, nnx.Bidirectional)
    if tm.bidirectional != bi:
        out.append(f"torch bidirectional={tm.bidirectional}; the Flax layer is "
                   f"{'an nnx.Bidirectional' if bi else 'one nnx.RNN'}")
    if tm.batch_first == bool(getattr(fm, "time_major", False)):
        out.append(f"torch batch_first={tm.batch_first} takes {'(N, L, ·)' if tm.batch_first else '(L, N, ·)'}; "
                   f"nnx time_major={getattr(fm, 'time_major', False)} the other (activations are compared "
                   f"batch-first)")
    if bi and _fn_name(fm.merge_fn) != "_concatenate":
        out.append(f"nnx.Bidirectional merge_fn={_fn_name(fm.merge_fn)}: torch concatenates [forward, backward]")
    if not bi and getattr(fm, "reverse", False):
        out.append("nnx.RNN reverse=True runs backwards; torch's one-direction layer runs forwards")
    for rnn in _rnns(fm):
        cell = rnn.cell
        if name == "rnn":
            if _fn_name(cell.activation_fn) != tm.nonlinearity:
                out.append(f"torch nonlinearity={tm.nonlinearity!r}; nnx.SimpleCell activation_fn="
                           f"{_fn_name(cell.activation_fn)}")
            if cell.residual:
                out.append("nnx.SimpleCell residual=True adds h to the pre-activation: torch does not")
        else:
            for attr, want in (("gate_fn", "sigmoid"), ("activation_fn", "tanh")):
                if _fn_name(getattr(cell, attr)) != want:
                    out.append(f"{type(cell).__name__} {attr}={_fn_name(getattr(cell, attr))}: torch uses {want}")
    return out


def _bias_notes(name: str, tm) -> list[str]:
    out = []
    if name == "gru" and tm.bias:
        h = tm.hidden_size
        b_hn = max(float(getattr(tm, f"bias_hh_l{k}{s}").detach().abs()[2 * h:].max())
                   for k in range(tm.num_layers) for s in ("", "_reverse")[:1 + tm.bidirectional])
        if b_hn > 0:
            out.append(f"torch GRU's b_hn (bias_hh_l*[2H:3H], max |b_hn| = {b_hn:.3g}) is scaled by r inside "
                       f"tanh(W_in x + b_in + r·(W_hn h + b_hn)); nnx.GRUCell has no such bias: it is dropped "
                       f"and the outputs differ (set it to zero in torch to compare)")
    if not tm.bias:
        out.append("torch bias=False: the nnx cell's bias (it always has one) is set to zero and dropped "
                   "on the way back")
    return out


def _accepts_flax(cells: tuple):
    def accepts(fm) -> bool:
        layers = _stack(fm)
        return bool(layers) and all(isinstance(layer, (nnx.RNN, nnx.Bidirectional)) for layer in layers) and all(
            isinstance(r, nnx.RNN) and isinstance(getattr(r, "cell", None), cells)
            for layer in layers for r in _rnns(layer))
    return accepts


def _accepts_torch(tm) -> bool:
    return getattr(tm, "proj_size", 0) == 0  # an LSTM's projection has no nnx counterpart


MAX_STACKED = 16  # the Flax paths a stack may hold are listed up to this many layers


def _names(cells: tuple) -> tuple:
    out = []
    for c in cells:
        ih, hh, bias = _CELLS[c]
        for pre in _PREFIXES:
            out += [f"{pre}{n}.kernel" for n in ih + hh] + [f"{pre}{n}.bias" for n in bias]
    one = tuple(dict.fromkeys(out))
    return one + tuple(f"layers.{k}.{p}" for k in range(MAX_STACKED) for p in one)


def _source_of(name: str):
    """flax_source: the nnx.RNN (or nnx.Bidirectional of two) over the cell that computes torch's layer."""
    def source(tm):
        if not tm.bias:
            raise NotImplementedError("bias=False: the nnx cells always hold a bias")
        cell = {"lstm": "nnx.LSTMCell", "gru": "nnx.GRUCell", "rnn": "nnx.SimpleCell"}[name]
        extra, notes = "", []
        if name == "rnn":
            extra = ", activation_fn=jax.nn.relu" if tm.nonlinearity == "relu" else ", activation_fn=jnp.tanh"
        if name == "gru":
            notes.append("nnx.GRUCell has no b_hn (torch's bias inside r*(W_hn h + b_hn)): that bias is dropped")
        tm_kw = "" if tm.batch_first else ", time_major=True"
        if not tm.batch_first:
            notes.append("torch batch_first=False: (L, N, F), time-major")
        layers = []
        for k in range(tm.num_layers):
            n_in = tm.input_size if k == 0 else tm.hidden_size * (2 if tm.bidirectional else 1)
            rnn = f"nnx.RNN({cell}({n_in}, {tm.hidden_size}{extra}, rngs=rngs){tm_kw}, rngs=rngs)"
            layers.append(f"nnx.Bidirectional({rnn}, {rnn}{tm_kw}, rngs=rngs)" if tm.bidirectional else rnn)
        if tm.bidirectional:
            notes.append("torch concatenates [forward, backward], nnx.Bidirectional's default merge")
        if tm.num_layers == 1:
            return layers[0], notes
        notes.append(f"torch's num_layers={tm.num_layers}: one nnx layer each, stacked")
        if tm.dropout:
            notes.append(f"torch's dropout={tm.dropout} between layers (training mode only) is not in the stack")
        return f"nnx.Sequential({', '.join(layers)})", notes
    return source


def _kind(name, torch_cls, gates, cells, summary) -> Kind:
    return Kind(name, (torch_cls,), (nnx.RNN, nnx.Bidirectional, nnx.Sequential), to_flax=_to_flax_of(name, gates, cells),
                to_torch=_to_torch_of(name, cells), flax_names=_names(cells), notes=_notes_of(name),
                accepts_torch=_accepts_torch, accepts_flax=_accepts_flax(cells),
                extra={"torch_record": _torch_record, "flax_record": _flax_record},
                summary=summary, doc="parity/porting/recurrent_kinds.py", flax_source=_source_of(name))


_ONE = "; num_layers L ⇄ an nnx.Sequential of L layers"
LSTM = _kind("lstm", nn.LSTM, 4, (nnx.LSTMCell, nnx.OptimizedLSTMCell),
             "gates (i, f, g, o): weight_ih/hh_l0 blocks → ii…io / hi…ho kernels (or dense_i/dense_h); "
             "bias_ih + bias_hh → the one bias" + _ONE + "; proj_size > 0 has no nnx counterpart")
GRU = _kind("gru", nn.GRU, 3, (nnx.GRUCell,),
            "gates (r, z, n): weight_ih/hh_l0 → dense_i/dense_h kernels; bias_ih + bias_hh → dense_i.bias, "
            "except b_hn (inside r·(…)), which nnx.GRUCell lacks" + _ONE)
RNN = _kind("rnn", nn.RNN, 1, (nnx.SimpleCell,),
            "weight_ih/hh_l0 → dense_i/dense_h kernels; bias_ih + bias_hh → dense_i.bias; nonlinearity "
            "⇄ activation_fn" + _ONE)

STOCK = (LSTM, GRU, RNN)
