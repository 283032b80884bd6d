"""The attention kind: torch `nn.MultiheadAttention` ⇄ `nnx.MultiHeadAttention` (a `Kind` record, as in
parity/porting/layer_kinds.py; the record is described in parity/porting/kinds.py).

What differs between the two, and how the record deals with it:

* Arrays. torch packs the three input projections into `in_proj_weight` (3E, E) and `in_proj_bias`
  (3E,), rows [q; k; v] (or keeps `q_proj_weight` (E, E), `k_proj_weight` (E, kdim), `v_proj_weight`
  (E, vdim) when kdim or vdim differs from E), and `out_proj` is a Linear (E, E). nnx keeps one
  LinearGeneral per projection: `query.kernel` (E, H, D), `query.bias` (H, D), likewise `key` and
  `value` (their kernels (kdim, H, D)), and `out.kernel` (H, D, E), `out.bias` (E,). torch's head h
  is rows h·D … (h+1)·D of each projection, so the conversion is a transpose and a reshape: exact.
  Arrays do not map one to one, so the record converts the whole layer (`to_flax` / `to_torch`).
* Layout. torch's default batch_first=False takes (L, N, E); nnx is batch-first only (transpose
  around it). The comparer records torch's activations batch-first, so the layer compares either way.
* Scaling: both divide the query by √D. Bias: torch's `bias` covers all four projections, as
  nnx's `use_bias` does.
* Masks have opposite meanings: torch's boolean `attn_mask` / `key_padding_mask` are True where a
  position is masked out, nnx's `mask` (N, H, L, S) is True where it attends; torch's float masks
  are added to the scores (nnx takes no such bias: only 0 / −inf masks convert). `flax_mask` does the
  conversion. A row masked everywhere gives NaN in torch and a uniform average in nnx.
* Returns: torch gives (output, weights averaged over heads or None with need_weights=False); nnx
  gives the output (weights only through sow_weights). The output is what is compared.
* Precision: with dropout_rate=0, nnx.MultiHeadAttention's default attention_fn calls
  jax.nn.dot_product_attention, which computes the softmax in float32 whatever the inputs' dtype
  (6e-7 off torch in float64 in tests/test_layer_kinds_attention_rnn.py's model, over float64's
  tolerance of 1e-7); `attention_in_input_dtype` computes it in the inputs' dtype (4e-15 off).
* Dropout on the attention weights draws different masks in each framework (docs/traps.md, trap 18):
  compare in eval mode, or with dropout 0. Build the nnx layer with decode=False (no cache).
* No nnx counterpart: add_bias_kv (its arrays are named by the shape check), add_zero_attn and
  kdim ≠ vdim (nnx has one in_kv_features), which the layer's notes name.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import nnx
from flax.nnx.nn.attention import dot_product_attention_weights
from torch import nn

from parity.porting.kind_record import Kind

_PROJ = ("query", "key", "value")


def _heads(tm, fm) -> int:
    if tm is not None:
        return tm.num_heads
    if fm is not None:
        return fm.num_heads
    raise ValueError("multihead_attention: the number of heads needs the torch or the Flax layer")


def _mha_to_flax(part, tm=None, fm=None) -> dict:
    """torch names → Flax paths; any subset present converts."""
    h = _heads(tm, fm)
    if "in_proj_weight" in part:
        ws = np.split(part["in_proj_weight"], 3)
    else:
        ws = [part.get(f"{p}_proj_weight") for p in "qkv"]
    bs = np.split(part["in_proj_bias"], 3) if "in_proj_bias" in part else [None] * 3
    out = {}
    for name, w, b in zip(_PROJ, ws, bs):
        if w is not None:  # (E, in) → (in, H, D)
            out[f"{name}.kernel"] = np.ascontiguousarray(w.T.reshape(w.shape[1], h, -1))
        if b is not None:
            out[f"{name}.bias"] = np.ascontiguousarray(b.reshape(h, -1))
    if "out_proj.weight" in part:  # (E, E) → (H, D, E)
        w = part["out_proj.weight"]
        out["out.kernel"] = np.ascontiguousarray(w.T.reshape(h, -1, w.shape[0]))
    if "out_proj.bias" in part:
        out["out.bias"] = part["out_proj.bias"].copy()
    for k in ("bias_k", "bias_v"):  # add_bias_kv: no nnx counterpart, which the shape check then names
        if k in part:
            out[k] = part[k]
    return out


def _mha_to_torch(part, tm=None, fm=None, grads: bool = False) -> dict:
    """Flax paths → torch names (the same linear maps for weights and their gradients). Packed into
    in_proj_* as the torch layer holds them: when it has `in_proj_weight` (kdim = vdim = E), else by
    the shapes."""
    ks = [part.get(f"{n}.kernel") for n in _PROJ]
    ws = [None if k is None else np.ascontiguousarray(k.reshape(k.shape[0], -1).T) for k in ks]
    bs = [None if part.get(f"{n}.bias") is None else part[f"{n}.bias"].reshape(-1) for n in _PROJ]
    packed = (tm.in_proj_weight is not None) if tm is not None else (
        all(w is not None for w in ws) and ws[0].shape[1] == ws[1].shape[1] == ws[2].shape[1] == ws[0].shape[0])
    out = {}
    if packed and all(w is not None for w in ws):
        out["in_proj_weight"] = np.concatenate(ws)
    elif not packed:
        out.update({f"{p}_proj_weight": w for p, w in zip("qkv", ws) if w is not None})
    if all(b is not None for b in bs):
        out["in_proj_bias"] = np.concatenate(bs)
    if "out.kernel" in part:
        k = part["out.kernel"]
        out["out_proj.weight"] = np.ascontiguousarray(k.reshape(-1, k.shape[-1]).T)
    if "out.bias" in part:
        out["out_proj.bias"] = part["out.bias"].copy()
    return out


def _torch_record(tm, x, out, kwargs=None):
    """What a torch call is compared by: the query and the attention output (not the weights), both
    batch-first, as the nnx layer takes them."""
    if isinstance(out, tuple):
        out = out[0]
    if not tm.batch_first:
        x = x.transpose(0, 1) if getattr(x, "ndim", 0) == 3 else x
        out = out.transpose(0, 1) if getattr(out, "ndim", 0) == 3 else out
    return x, out


def attention_in_input_dtype(query, key, value, bias=None, mask=None, **kwargs):
    """An `attention_fn` for nnx.MultiHeadAttention: nnx.dot_product_attention's own computation
    (softmax over query·key/√D, masked where `mask` is False) in the inputs' dtype, never through
    jax.nn.dot_product_attention, whose softmax is float32 whatever the inputs (see the module
    docstring)."""
    weights = dot_product_attention_weights(query, key, bias, mask, **kwargs)
    return jnp.einsum("...hqk,...khd->...qhd", weights, value, precision=kwargs.get("precision"))


def flax_mask(attn_mask=None, key_padding_mask=None, num_heads: int | None = None):
    """torch's masks → nnx.MultiHeadAttention's `mask` (True where a query attends; None without
    masks), 4-D. torch's boolean masks are True where a position is masked out; its float masks are added
    to the scores, and only their 0 (attend) and −inf (masked) entries have an nnx counterpart.
    `attn_mask` (L, S), or (N·H, L, S) with `num_heads`; `key_padding_mask` (N, S)."""
    def attend(m):
        m = jnp.asarray(m)
        return jnp.logical_not(m) if m.dtype == jnp.bool_ else m == 0

    out = None
    if attn_mask is not None:
        a = attend(attn_mask)
        if a.ndim == 3:
            if num_heads is None:
                raise ValueError("flax_mask: a 3-D attn_mask (N·H, L, S) needs num_heads")
            a = a.reshape(-1, num_heads, *a.shape[1:])
        out = a if a.ndim == 4 else a[None, None]  # (1, 1, L, S)
    if key_padding_mask is not None:
        k = attend(key_padding_mask)[..., None, None, :]  # (N, 1, 1, S)
        out = k if out is None else jnp.logical_and(out, k)
    return out


def _mha_notes(tm, fm, ctx) -> list[str]:
    out = []
    if getattr(fm, "decode", False):
        out.append("nnx.MultiHeadAttention decode=True reads and writes an autoregressive cache: build it "
                   "with decode=False to compare whole sequences")
    rate = float(getattr(fm, "dropout_rate", 0.0))
    if not np.isclose(rate, tm.dropout):
        out.append(f"attention dropout: torch {tm.dropout:g}, Flax dropout_rate={rate:g}")
    if ctx.train and (tm.dropout > 0 or rate > 0):
        out.append("attention dropout draws its own masks in each framework (they cannot be shared: "
                   "docs/traps.md, trap 18): compare in eval mode, or with dropout 0")
    if ctx.dtype == "float64" and rate == 0 and getattr(fm, "attention_fn", None) is nnx.dot_product_attention:
        out.append("nnx.MultiHeadAttention's default attention_fn (dropout_rate=0) calls "
                   "jax.nn.dot_product_attention, whose softmax is float32 whatever the inputs: ~1e-7 "
                   "off in float64; pass attention_fn=parity.porting.attention_kinds.attention_in_input_dtype")
    if getattr(fm, "normalize_qk", False):
        out.append("nnx.MultiHeadAttention normalize_qk=True adds LayerNorms to query and key: torch has none")
    if tm.add_zero_attn:
        out.append("torch add_zero_attn=True appends a zero key and value to attend to: nnx has no such option")
    if tm.kdim != tm.vdim:
        out.append(f"torch kdim={tm.kdim}, vdim={tm.vdim}: nnx.MultiHeadAttention has one in_kv_features for both")
    if not tm.batch_first:
        out.append("torch batch_first=False takes (L, N, E); nnx.MultiHeadAttention is batch-first (its "
                   "activations are compared batch-first)")
    return out


_NAMES = tuple(f"{p}.{a}" for p in _PROJ + ("out",) for a in ("kernel", "bias")) + \
    ("query_ln.scale", "key_ln.scale")  # normalize_qk's arrays, which torch lacks: named by the shape check

def _mha_source(tm):
    """flax_source: nnx.MultiHeadAttention with torch's features, attention in the inputs' dtype."""
    if tm.add_zero_attn or tm.bias_k is not None:
        raise NotImplementedError("add_zero_attn / add_bias_kv have no nnx.MultiHeadAttention counterpart")
    if tm.kdim != tm.embed_dim or tm.vdim != tm.embed_dim:
        raise NotImplementedError(f"kdim={tm.kdim}, vdim={tm.vdim} differ from embed_dim={tm.embed_dim}")
    bias = "" if tm.in_proj_bias is not None else ", use_bias=False"
    return (f"nnx.MultiHeadAttention({tm.num_heads}, {tm.embed_dim}{bias}, dropout_rate={tm.dropout:g}, "
            f"decode=False, attention_fn=attention_in_input_dtype, rngs=rngs)",
            ["attention_fn: jax.nn.dot_product_attention's softmax is float32 whatever the inputs",
             "decode=False: no autoregressive cache"])


MULTIHEAD_ATTENTION = Kind(
    "multihead_attention", (nn.MultiheadAttention,), (nnx.MultiHeadAttention,),
    to_flax=_mha_to_flax, to_torch=_mha_to_torch, flax_names=_NAMES, notes=_mha_notes,
    extra={"torch_record": _torch_record}, flax_source=_mha_source,
    summary="in_proj_weight (3E, E) → query/key/value.kernel (E, H, D), in_proj_bias → (H, D) each, "
            "out_proj.weight → out.kernel (H, D, E); masks inverted (flax_mask); batch_first=False "
            "compared batch-first; add_bias_kv, add_zero_attn and kdim ≠ vdim have no nnx counterpart",
    doc="parity/porting/attention_kinds.py")

STOCK = (MULTIHEAD_ATTENTION,)
