"""The attention and recurrent kinds (parity/porting/attention_kinds.py, recurrent_kinds.py): the Flax
layer built as the kind's notes say computes what the torch layer computes (outputs, input and
parameter gradients, in float64, layer by layer), the weights round-trip bit for bit, and a conversion
with a planted bug (q and k swapped, LSTM gates out of order) fails at that layer. Expected values
come from torch."""
import numpy as np
import pytest
import torch
from flax import nnx
from torch import nn

import parity.porting as porting
from parity.porting import kinds
from parity.porting.attention_kinds import attention_in_input_dtype, flax_mask

R = nnx.Rngs(0)
E, HEADS = 8, 2


def _x(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def _randomise(tm, zero_bias_hh=False, zero_b_hn=False):
    """Non-trivial weights everywhere; optionally torch's hidden biases (all, or the GRU's b_hn) zero."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in tm.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5 + 0.1)
            if "bias_hh" in name and zero_bias_hh:
                p.zero_()
            if "bias_hh" in name and zero_b_hn:
                p[2 * (p.shape[0] // 3):] = 0
    return tm


# ---------------------------------------------------------------- attention models
class TorchAttention(nn.Module):
    """Self-attention (or cross-attention on `memory`), with optional key padding and causal masks."""

    def __init__(self, causal=False, **kw):
        super().__init__()
        self.pre = nn.Linear(E, E)
        self.attn = nn.MultiheadAttention(E, HEADS, **kw)
        self.causal = causal

    def forward(self, x, extra=None):
        x = self.pre(x)
        pad = extra if extra is not None and extra.dtype == torch.bool else None
        mem = extra if extra is not None and extra.dtype != torch.bool else x
        n = x.shape[1] if self.attn.batch_first else x.shape[0]
        causal = torch.triu(torch.ones(n, n, dtype=torch.bool), 1) if self.causal else None
        return self.attn(x, mem, mem, key_padding_mask=pad, attn_mask=causal, need_weights=False)[0]


class FlaxAttention(nnx.Module):
    """The port: nnx is batch-first, so time-first input is transposed around the layer; torch's
    masks (True = masked out) become nnx's (True = attends) through flax_mask."""

    def __init__(self, attn, batch_first=True, causal=False, invert_mask=True):
        self.pre, self.attn = nnx.Linear(E, E, rngs=R), attn
        self.batch_first, self.causal, self.invert_mask = batch_first, causal, invert_mask

    def __call__(self, x, extra=None):
        import jax.numpy as jnp
        x = self.pre(x)
        pad = extra if extra is not None and extra.dtype == jnp.bool_ else None
        mem = extra if extra is not None and extra.dtype != jnp.bool_ else None
        if not self.batch_first:
            x = jnp.swapaxes(x, 0, 1)
            mem = None if mem is None else jnp.swapaxes(mem, 0, 1)
        n = x.shape[1]
        causal = jnp.triu(jnp.ones((n, n), bool), 1) if self.causal else None
        mask = flax_mask(causal, pad) if self.invert_mask else (None if pad is None else pad[:, None, None, :])
        y = self.attn(x, mem, mask=mask)
        return y if self.batch_first else jnp.swapaxes(y, 0, 1)


def _mha(bias=True, kv=None):
    return nnx.MultiHeadAttention(HEADS, E, in_kv_features=kv, use_bias=bias, decode=False,
                                  attention_fn=attention_in_input_dtype, rngs=R)


def _padding(n=3, s=5):
    pad = np.zeros((n, s), bool)
    pad[0, 3:] = True
    pad[2, 1] = True  # never a whole row: torch gives NaN there, nnx a uniform average
    return pad


ATTENTION = {
    "self-attention batch_first": lambda: (TorchAttention(batch_first=True), FlaxAttention(_mha()), _x(3, 5, E)),
    "self-attention batch_first=False": lambda: (TorchAttention(), FlaxAttention(_mha(), batch_first=False),
                                                 _x(5, 3, E)),
    "self-attention no bias": lambda: (TorchAttention(batch_first=True, bias=False),
                                       FlaxAttention(_mha(bias=False)), _x(3, 5, E)),
    "key_padding_mask and causal attn_mask": lambda: (
        TorchAttention(batch_first=True, causal=True), FlaxAttention(_mha(), causal=True),
        (_x(3, 5, E), _padding())),
    "key_padding_mask, batch_first=False": lambda: (
        TorchAttention(), FlaxAttention(_mha(), batch_first=False), (_x(5, 3, E), _padding())),
    "cross-attention kdim=vdim≠E (q/k/v_proj_weight)": lambda: (
        TorchAttention(batch_first=True, kdim=6, vdim=6), FlaxAttention(_mha(kv=6)), (_x(3, 5, E), _x(3, 4, 6))),
}


@pytest.mark.parametrize("case", list(ATTENTION))
def test_attention_matches_torch_in_float64(case):
    tm, fm, x = ATTENTION[case]()
    report = porting.compare(_randomise(tm).double().eval(), fm, x, dtype="float64")
    assert report.passed, f"{case}\n{report.summary()}\n" + "\n".join(report.notes)
    assert [p["kind"] for p in report.pairing["layers"]] == ["linear", "multihead_attention"]
    row = next(r for r in report.rows if r.kind == "multihead_attention")
    assert row.out is not None and row.out.ok and row.inp is not None  # compared at the layer itself
    names = {n for n in report.param_grads if n.startswith("attn.")}
    assert "attn.out_proj.weight" in names and row.grad_names and set(row.grad_names) == names
    assert report.input_grads


@pytest.mark.parametrize("case", list(ATTENTION))
def test_attention_weights_round_trip_bit_exact(case):
    tm, fm, x = ATTENTION[case]()
    tm = _randomise(tm).eval()
    x32 = tuple(a.astype(np.float32) if a.dtype.kind == "f" else a for a in x) if isinstance(x, tuple) \
        else x.astype(np.float32)
    pairing = porting.pair_models(tm, fm, x32)
    sd = {k: v.detach().numpy().copy() for k, v in tm.state_dict().items()}
    back = pairing.flax_to_torch(pairing.torch_to_flax(sd))
    assert set(back) == set(sd)
    for k, v in sd.items():
        assert back[k].dtype == v.dtype and np.array_equal(back[k], v), k


def test_torch_masks_unconverted_fail_at_the_attention_layer():
    """torch's key_padding_mask (True = masked out) given to nnx as it is (where True attends)."""
    tm = _randomise(TorchAttention(batch_first=True)).double().eval()
    fm = FlaxAttention(_mha(), invert_mask=False)
    report = porting.compare(tm, fm, (_x(3, 5, E), _padding()), dtype="float64")
    d = report.first_divergence
    assert d is not None and d.what == "output" and d.torch.name == "attn", report.summary()


def test_attention_q_and_k_swapped_fails_and_is_named():
    tm = _randomise(TorchAttention(batch_first=True)).double().eval()
    x = _x(3, 5, E)
    pairing = porting.pair_models(tm, FlaxAttention(_mha()), x)

    def swapped(sd):  # a conversion that puts torch's q rows into nnx's key and k's into query
        pure = pairing.torch_to_flax(sd)
        pure["attn"]["query"], pure["attn"]["key"] = pure["attn"]["key"], pure["attn"]["query"]
        return pure
    assert porting.compare(tm, FlaxAttention(_mha()), x, dtype="float64", weights=lambda sd: pairing.torch_to_flax(sd)
                           ).passed
    report = porting.compare(tm, FlaxAttention(_mha()), x, dtype="float64", weights=swapped)
    d = report.first_divergence
    assert d is not None and d.what == "output" and d.torch.name == "attn" and d.after and "`pre`" in d.after, \
        report.summary()


def test_attention_notes_name_what_differs():
    tm = _randomise(TorchAttention(dropout=0.1)).double()
    fm = FlaxAttention(nnx.MultiHeadAttention(HEADS, E, decode=False, rngs=R), batch_first=False)
    report = porting.compare(tm.eval(), fm, _x(5, 3, E), dtype="float64")
    text = "\n".join(report.notes)
    assert "attention dropout: torch 0.1, Flax dropout_rate=0" in text
    assert "softmax is float32 whatever the inputs" in text and "attention_in_input_dtype" in text
    assert "torch batch_first=False takes (L, N, E)" in text


def test_attention_settings_without_nnx_counterpart_are_named():
    with pytest.raises(porting.PortingError, match="torch has `bias_k`, the Flax layer holds no `bias_k`"):
        porting.compare(TorchAttention(batch_first=True, add_bias_kv=True), FlaxAttention(_mha()),
                        _x(3, 5, E).astype(np.float32))
    tm = _randomise(TorchAttention(batch_first=True, add_zero_attn=True)).double().eval()
    report = porting.compare(tm, FlaxAttention(_mha()), _x(3, 5, E), dtype="float64")
    assert not report.passed and report.first_divergence.torch.name == "attn"
    assert "add_zero_attn=True appends a zero key and value" in report.first_divergence.message


def test_flax_mask_inverts_torch_masks():
    pad = _padding()
    causal = np.triu(np.ones((5, 5), bool), 1)
    m = np.asarray(flax_mask(causal, pad))
    assert m.shape == (3, 1, 5, 5)
    assert np.array_equal(m, ~causal[None, None] & ~pad[:, None, None, :])
    additive = np.where(causal, -np.inf, 0.0)  # nn.Transformer.generate_square_subsequent_mask's form
    assert np.array_equal(np.asarray(flax_mask(additive)), ~causal[None, None])
    per_head = np.stack([causal] * 6)  # (N·H, L, S)
    assert np.asarray(flax_mask(per_head, num_heads=2)).shape == (3, 2, 5, 5)


# ---------------------------------------------------------------- recurrent models
class TorchSeq(nn.Module):
    def __init__(self, rnn):
        super().__init__()
        self.pre, self.rnn = nn.Linear(4, 4), rnn

    def forward(self, x):
        return self.rnn(self.pre(x))[0]  # the output sequence; (h_n, c_n) left out


class FlaxSeq(nnx.Module):
    def __init__(self, rnn):
        self.pre, self.rnn = nnx.Linear(4, 4, rngs=R), rnn

    def __call__(self, x):
        return self.rnn(self.pre(x))


def _rnn(cell, hidden=5, bidirectional=False, **kw):
    make = lambda: nnx.RNN(cell(4, hidden, rngs=R), **kw)  # noqa: E731
    return nnx.Bidirectional(make(), make()) if bidirectional else make()


BF, TF = _x(3, 6, 4), _x(6, 3, 4)  # batch-first (N, L, I), time-first (L, N, I)
RECURRENT = {
    "lstm batch_first": lambda: (nn.LSTM(4, 5, batch_first=True), _rnn(nnx.LSTMCell), BF),
    "lstm time-first ⇄ time_major": lambda: (nn.LSTM(4, 5), _rnn(nnx.LSTMCell, time_major=True), TF),
    "lstm bidirectional, OptimizedLSTMCell": lambda: (nn.LSTM(4, 5, batch_first=True, bidirectional=True),
                                                      _rnn(nnx.OptimizedLSTMCell, bidirectional=True), BF),
    "lstm no bias": lambda: (nn.LSTM(4, 5, bias=False, batch_first=True), _rnn(nnx.LSTMCell), BF),
    "gru batch_first": lambda: (nn.GRU(4, 5, batch_first=True), _rnn(nnx.GRUCell), BF),
    "gru bidirectional time-first": lambda: (nn.GRU(4, 5, bidirectional=True),
                                             nnx.Bidirectional(_rnn(nnx.GRUCell), _rnn(nnx.GRUCell), time_major=True),
                                             TF),
    "rnn tanh": lambda: (nn.RNN(4, 5, batch_first=True), _rnn(nnx.SimpleCell), BF),
    "rnn relu bidirectional time-first": lambda: (
        nn.RNN(4, 5, nonlinearity="relu", bidirectional=True),
        nnx.Bidirectional(*(nnx.RNN(nnx.SimpleCell(4, 5, activation_fn=nnx.relu, rngs=R)) for _ in "fb"),
                          time_major=True), TF),
    # torch's num_layers ⇄ an nnx.Sequential of one nnx layer each
    "lstm 2 layers batch_first": lambda: (nn.LSTM(4, 5, num_layers=2, batch_first=True),
                                          nnx.Sequential(_rnn(nnx.LSTMCell), nnx.RNN(nnx.LSTMCell(5, 5, rngs=R))), BF),
    "gru 3 layers bidirectional time-first": lambda: (
        nn.GRU(4, 5, num_layers=3, bidirectional=True),
        nnx.Sequential(*(nnx.Bidirectional(*(nnx.RNN(nnx.GRUCell(n, 5, rngs=R), time_major=True) for _ in "fb"),
                                           time_major=True) for n in (4, 10, 10))), TF),
}


@pytest.mark.parametrize("case", list(RECURRENT))
def test_recurrent_matches_torch_in_float64(case):
    tm, fm, x = RECURRENT[case]()
    tm = _randomise(TorchSeq(tm), zero_b_hn=case.startswith("gru")).double().eval()
    report = porting.compare(tm, FlaxSeq(fm), x, dtype="float64")
    assert report.passed, f"{case}\n{report.summary()}\n" + "\n".join(report.notes)
    kind = case.split()[0]
    assert [p["kind"] for p in report.pairing["layers"]] == ["linear", kind]
    row = next(r for r in report.rows if r.kind == kind)
    assert row.out is not None and row.out.ok and row.inp is not None and row.grad is not None
    biases = {n for n in report.param_grads if "bias_hh" in n}
    if kind == "gru":  # b_hn's gradient has no Flax counterpart: bias_hh's is not compared, and that is said
        assert not biases and any("bias_hh_l0` not compared" in n for n in report.notes), report.notes
    elif "no bias" not in case:  # the one Flax bias's gradient, given to both torch biases
        assert biases == {n for n, _ in tm.named_parameters() if "bias_hh" in n}


@pytest.mark.parametrize("case", list(RECURRENT))
def test_recurrent_weights_round_trip(case):
    """bias_ih + bias_hh go into the one Flax bias, which comes back in bias_ih (bias_hh zero): bit-exact
    where bias_hh was zero; torch → Flax → torch → Flax bit-exact always."""
    tm, fm, x = RECURRENT[case]()
    ts = TorchSeq(_randomise(tm, zero_bias_hh=True))
    pairing = porting.pair_models(ts, FlaxSeq(fm), x.astype(np.float32))
    sd = {k: v.detach().numpy().copy() for k, v in ts.state_dict().items()}
    back = pairing.flax_to_torch(pairing.torch_to_flax(sd))
    assert set(back) == set(sd)
    for k, v in sd.items():
        assert back[k].dtype == v.dtype and np.array_equal(back[k], v), k
    if "no bias" in case:
        return
    _randomise(tm)  # the same weights, bias_hh no longer zero
    sd = {k: v.detach().numpy().copy() for k, v in ts.state_dict().items()}
    flax = pairing.torch_to_flax(sd)
    back = pairing.flax_to_torch(flax)
    for k in (k for k in sd if "bias_hh" in k):
        ih = k.replace("bias_hh", "bias_ih")
        b_hh = sd[k].copy()
        if case.startswith("gru"):
            b_hh[2 * len(b_hh) // 3:] = 0  # b_hn has no Flax counterpart (dropped; see the gru note)
        assert np.array_equal(back[ih], sd[ih] + b_hh) and not back[k].any(), k
    again = pairing.torch_to_flax(back)
    for path, v in _leaves(flax):
        assert np.array_equal(_at(again, path), v), path


def _leaves(tree, prefix=()):
    for k, v in tree.items():
        yield from _leaves(v, prefix + (k,)) if isinstance(v, dict) else [(prefix + (k,), v)]


def _at(tree, path):
    for k in path:
        tree = tree[k]
    return tree


def test_gru_b_hn_has_no_nnx_counterpart_and_the_difference_is_named():
    """torch's default initialisation gives b_hn ≠ 0: nnx.GRUCell cannot hold it, so the outputs differ
    at the GRU, and its note says why."""
    torch.manual_seed(0)
    tm = TorchSeq(nn.GRU(4, 5, batch_first=True)).double().eval()
    report = porting.compare(tm, FlaxSeq(_rnn(nnx.GRUCell)), BF, dtype="float64")
    d = report.first_divergence
    assert d is not None and d.what == "output" and d.torch.name == "rnn", report.summary()
    assert "b_hn" in d.message and "nnx.GRUCell has no such bias" in d.message
    row = next(r for r in report.rows if r.kind == "gru")
    assert 1e-3 < row.out.max_abs < 1.0  # measured: b_hn of torch's U(−1/√H, 1/√H) init


def test_lstm_gates_out_of_order_fail_and_are_named():
    """A conversion reading torch's rows as (i, g, f, o) instead of (i, f, g, o)."""
    tm = _randomise(TorchSeq(nn.LSTM(4, 5, batch_first=True))).double().eval()
    pairing = porting.pair_models(tm, FlaxSeq(_rnn(nnx.LSTMCell)), BF)

    def wrong(sd):
        pure = pairing.torch_to_flax(sd)
        cell = pure["rnn"]["cell"]
        cell["if_"], cell["ig"] = cell["ig"], cell["if_"]
        cell["hf"], cell["hg"] = cell["hg"], cell["hf"]
        return pure
    report = porting.compare(tm, FlaxSeq(_rnn(nnx.LSTMCell)), BF, dtype="float64", weights=wrong)
    d = report.first_divergence
    assert d is not None and d.what == "output" and d.torch.name == "rnn" and "`pre`" in d.after, report.summary()


def test_recurrent_without_single_nnx_counterpart_is_refused():
    layer = nn.LSTM(4, 5, proj_size=3, batch_first=True)  # an LSTM's projection: no nnx counterpart
    assert kinds.torch_kind(layer) is None
    with pytest.raises(porting.PortingError, match="no kind automatic pairing knows"):
        porting.compare(TorchSeq(layer), FlaxSeq(_rnn(nnx.LSTMCell)), BF.astype(np.float32))


def test_layers_of_a_torch_rnn_against_one_nnx_layer_are_refused_with_the_way_out():
    """torch num_layers=2 against a single nnx.RNN: the message says to stack two."""
    with pytest.raises(Exception, match=r"num_layers=2.*stack 2 nnx.RNN"):
        porting.compare(TorchSeq(nn.LSTM(4, 5, num_layers=2, batch_first=True)), FlaxSeq(_rnn(nnx.LSTMCell)),
                        BF.astype(np.float32))


def test_recurrent_notes_name_what_differs():
    tm = _randomise(TorchSeq(nn.RNN(4, 5, nonlinearity="relu")), zero_bias_hh=True).double().eval()
    report = porting.compare(tm, FlaxSeq(_rnn(nnx.SimpleCell)), TF, dtype="float64")
    assert not report.passed
    text = "\n".join(report.notes)
    assert "torch nonlinearity='relu'; nnx.SimpleCell activation_fn=tanh" in text
    assert "torch batch_first=False takes (L, N, ·); nnx time_major=False" in text


def test_every_new_kind_is_tested():
    from parity.porting import attention_kinds, recurrent_kinds
    new = {k.name for k in attention_kinds.STOCK + recurrent_kinds.STOCK}
    tested = {"multihead_attention"} | {c.split()[0] for c in RECURRENT}
    assert new == tested and all(k in {x.name for x in kinds.all_kinds()} for k in new)
