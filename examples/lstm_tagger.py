"""A sequence tagger: token embeddings, one bidirectional LSTM layer over the sentence and a Linear
giving each token's tag scores, written once with stock `torch.nn` (`nn.LSTM(batch_first=True,
bidirectional=True)`) and once with stock `flax.nnx` (`nnx.Bidirectional` over two `nnx.RNN`s of
`nnx.LSTMCell`).

    parity compare examples/lstm_tagger.py:torch_model examples/lstm_tagger.py:flax_model \
        --input-shape 2,10 --input-int 50

What the port has to get right:

* token ids (N, L) are integers and pass to both models unchanged; the sequences (N, L, ·) are
  batch-first on both sides: torch's batch_first=True ⇔ nnx's time_major=False (its default);
* gates: torch stacks the LSTM's four gates (i, f, g, o) in `weight_ih_l0` (4H, E) and `weight_hh_l0`
  (4H, H); nnx.LSTMCell keeps one Linear per gate and side (`ii`, `if_`, `ig`, `io` on the input, `hi`,
  `hf`, `hg`, `ho` on the hidden state), kernels (in, out). The recurrent kind's conversion splits and
  transposes them, per direction (`_l0` → forward_rnn, `_l0_reverse` → backward_rnn):
  parity/porting/recurrent_kinds.py;
* biases: torch adds `bias_ih_l0` and `bias_hh_l0`, the nnx cell has one bias (on `hi`…`ho`): the
  conversion puts their sum in it, and gives the nnx bias's gradient to both torch biases;
* gate functions sigmoid and tanh are nnx.LSTMCell's defaults, as torch's; both start from a zero
  carry; nnx's carry is (c, h) where torch returns (h_n, c_n), but only the output sequence is used;
* bidirectional: nnx.Bidirectional runs backward_rnn with reverse=True, keep_order=True (its outputs
  in input order, as torch's backward half is) and merges with its default `_concatenate`:
  [forward, backward] on the feature axis, the order of torch's 2H output features, which the tag
  Linear (2H → tags) reads;
* one layer per torch module: an nn.LSTM(num_layers=2) would be two stacked nnx.RNNs (or
  nnx.Bidirectionals), and the comparer's recurrent kind pairs one layer with one nnx module;
* Embedding: nn.Embedding's `weight` (V, E) is nnx.Embed's `embedding`, unchanged; Linear: (out, in)
  ⇄ (in, out), done by the weight conversion (docs/traps.md, trap 2).

Dropout (none here) would draw different masks in each framework (trap 18); the comparison runs in
eval mode.

`flax_model(buggy=True)` plants one typical porting bug: a hand-written merge_fn that concatenates
[backward, forward], the other order. The shapes agree and the LSTM's input agrees; its output
parts by the difference between the two directions' states (far beyond float64's and float32's
tolerances). The comparer names `lstm` as the first divergence, with the note
"nnx.Bidirectional merge_fn=backward_first: torch concatenates [forward, backward]".
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx
from torch import nn

VOCAB = 50
EMBED = 16
HIDDEN = 12  # per direction: the tag Linear reads 2·HIDDEN features
TAGS = 7
LENGTH = 10


# ---------------------------------------------------------------- torch
class TorchTagger(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, EMBED)
        self.lstm = nn.LSTM(EMBED, HIDDEN, batch_first=True, bidirectional=True)
        self.tags = nn.Linear(2 * HIDDEN, TAGS)

    def forward(self, ids):  # (N, L) int
        h, _ = self.lstm(self.embed(ids))  # (N, L, 2H): [forward, backward] per token; (h_n, c_n) unused
        return self.tags(h)  # (N, L, TAGS) tag scores


def torch_model() -> TorchTagger:
    """The tagger with torch's initialisation (the LSTM's weights and both biases uniform in ±1/√H,
    the embedding standard normal)."""
    torch.manual_seed(0)
    return TorchTagger().eval()


# ---------------------------------------------------------------- Flax NNX
def backward_first(forward, backward):
    """A merge_fn in the wrong order (the planted bug): torch's output is [forward, backward]."""
    return jnp.concatenate([backward, forward], axis=-1)


def _direction(rngs):
    return nnx.RNN(nnx.LSTMCell(EMBED, HIDDEN, rngs=rngs), rngs=rngs)


class FlaxTagger(nnx.Module):
    def __init__(self, buggy=False, *, rngs: nnx.Rngs):
        self.embed = nnx.Embed(VOCAB, EMBED, rngs=rngs)
        merge = {"merge_fn": backward_first} if buggy else {}  # BUG when buggy: [backward, forward]
        self.lstm = nnx.Bidirectional(_direction(rngs), _direction(rngs), **merge, rngs=rngs)
        self.tags = nnx.Linear(2 * HIDDEN, TAGS, rngs=rngs)

    def __call__(self, ids):  # (N, L) int
        return self.tags(self.lstm(self.embed(ids)))  # batch-first: time_major=False, nnx's default


def flax_model(buggy: bool = False, *, rngs: nnx.Rngs | None = None) -> FlaxTagger:
    return FlaxTagger(buggy, rngs=rngs or nnx.Rngs(0))


def buggy_flax_model(*, rngs: nnx.Rngs | None = None) -> FlaxTagger:
    """The port whose Bidirectional merges [backward, forward] (for the command line: FILE.py:buggy_flax_model)."""
    return flax_model(True, rngs=rngs)


def example_input(n: int = 2, length: int = LENGTH, seed: int = 0) -> np.ndarray:
    """Token ids (N, L), int64, in [0, VOCAB)."""
    return np.random.default_rng(seed).integers(0, VOCAB, (n, length)).astype(np.int64)
