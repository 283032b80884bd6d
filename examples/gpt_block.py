"""A small GPT-style decoder: token and learned position embeddings, two pre-norm blocks (RMSNorm →
causal self-attention → residual, RMSNorm → SwiGLU MLP → residual), a final RMSNorm and the LM head,
written once with stock `torch.nn` and once with stock `flax.nnx`. Attention is spelled out with
separate q/k/v/out Linear layers, matmul, a causal mask and softmax (no nn.MultiheadAttention).

    parity compare examples/gpt_block.py:torch_model examples/gpt_block.py:flax_model \
        --input-shape 2,12 --input-int 64

What the port has to get right:

* token ids (N, L) are integers and pass to both models unchanged; no layout change anywhere
  (a sequence (N, L, D) is the same in both);
* Linear weights are (out, in) in torch and (in, out) in Flax (docs/traps.md, trap 2; the weight
  conversion does it); bias=False ⇔ use_bias=False;
* RMSNorm: x / sqrt(mean(x²) + eps) · scale in both; torch's nn.RMSNorm takes eps=1e-6 here and
  nnx.RMSNorm epsilon=1e-6 (nnx's default; torch's own default eps=None means the dtype's machine
  epsilon, so torch is given it explicitly: trap 14 and "RMSNorm's eps");
* attention scores scaled by 1/sqrt(head_dim), the causal mask applied as −inf before the softmax
  (both softmaxes subtract the maximum, trap 24), heads split as (N, L, H, D) → (N, H, L, D);
* SwiGLU: down(silu(gate(x)) · up(x)), silu being x·sigmoid(x) in both.

Initialisation differs (trap 16), which does not matter here: the comparer copies torch's weights.

`flax_model(buggy=True)` plants one typical porting bug: the MLP's RMSNorm in the second block gets
epsilon 1e-5 (a value copied from a LayerNorm). It moves that layer's outputs by about 4e-6 relative
(1.1e-5 max abs): far beyond float64's tolerance, at the edge of float32's. Compared in float64, the
comparer names `layers.1.mlp_norm`, with the eps note.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F
from flax import nnx
from torch import nn

VOCAB = 64
DIM = 32
HEADS = 4
HIDDEN = 32  # the SwiGLU width
MAX_LEN = 16
LAYERS = 2
EPS = 1e-6
BUG_AT = 1  # the block whose mlp_norm gets epsilon 1e-5 in the buggy port


# ---------------------------------------------------------------- torch
class TorchAttention(nn.Module):
    def __init__(self, dim=DIM, heads=HEADS):
        super().__init__()
        self.heads = heads
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim, bias=False)
        self.o_proj = nn.Linear(dim, dim, bias=False)

    def forward(self, x):  # (N, L, D)
        n, t, d = x.shape
        hd = d // self.heads

        def split(z):
            return z.view(n, t, self.heads, hd).transpose(1, 2)  # (N, H, L, hd)
        q, k, v = split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x))
        scores = q @ k.transpose(-2, -1) / math.sqrt(hd)
        causal = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        scores = scores.masked_fill(~causal, float("-inf"))
        h = torch.softmax(scores, dim=-1) @ v
        return self.o_proj(h.transpose(1, 2).reshape(n, t, d))


class TorchSwiGLU(nn.Module):
    def __init__(self, dim=DIM, hidden=HIDDEN):
        super().__init__()
        self.gate_proj = nn.Linear(dim, hidden, bias=False)
        self.up_proj = nn.Linear(dim, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, dim, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class TorchBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn_norm = nn.RMSNorm(DIM, eps=EPS)
        self.attn = TorchAttention()
        self.mlp_norm = nn.RMSNorm(DIM, eps=EPS)
        self.mlp = TorchSwiGLU()

    def forward(self, x):
        x = x + self.attn(self.attn_norm(x))
        return x + self.mlp(self.mlp_norm(x))


class TorchGPT(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, DIM)
        self.pos_embed = nn.Embedding(MAX_LEN, DIM)
        self.layers = nn.ModuleList([TorchBlock() for _ in range(LAYERS)])
        self.norm = nn.RMSNorm(DIM, eps=EPS)
        self.lm_head = nn.Linear(DIM, VOCAB, bias=False)

    def forward(self, ids):  # (N, L) int
        x = self.embed(ids) + self.pos_embed(torch.arange(ids.shape[1], device=ids.device))
        for layer in self.layers:
            x = layer(x)
        return self.lm_head(self.norm(x))  # (N, L, VOCAB) logits


def torch_model() -> TorchGPT:
    """The decoder with torch's initialisation, and RMSNorm scales away from 1, as a trained model has
    them."""
    torch.manual_seed(0)
    model = TorchGPT().eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.RMSNorm):
                m.weight.copy_(0.75 + 0.5 * torch.rand(m.weight.shape, generator=g))
    return model


# ---------------------------------------------------------------- Flax NNX
class Attention(nnx.Module):
    def __init__(self, dim=DIM, heads=HEADS, *, rngs: nnx.Rngs):
        self.heads = heads
        self.q_proj = nnx.Linear(dim, dim, use_bias=False, rngs=rngs)
        self.k_proj = nnx.Linear(dim, dim, use_bias=False, rngs=rngs)
        self.v_proj = nnx.Linear(dim, dim, use_bias=False, rngs=rngs)
        self.o_proj = nnx.Linear(dim, dim, use_bias=False, rngs=rngs)

    def __call__(self, x):  # (N, L, D)
        n, t, d = x.shape
        hd = d // self.heads

        def split(z):
            return z.reshape(n, t, self.heads, hd).transpose(0, 2, 1, 3)  # (N, H, L, hd)
        q, k, v = split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(hd)
        causal = jnp.tril(jnp.ones((t, t), bool))
        scores = jnp.where(causal, scores, -jnp.inf)
        h = jax.nn.softmax(scores, axis=-1) @ v
        return self.o_proj(h.transpose(0, 2, 1, 3).reshape(n, t, d))


class SwiGLU(nnx.Module):
    def __init__(self, dim=DIM, hidden=HIDDEN, *, rngs: nnx.Rngs):
        self.gate_proj = nnx.Linear(dim, hidden, use_bias=False, rngs=rngs)
        self.up_proj = nnx.Linear(dim, hidden, use_bias=False, rngs=rngs)
        self.down_proj = nnx.Linear(hidden, dim, use_bias=False, rngs=rngs)

    def __call__(self, x):
        return self.down_proj(jax.nn.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nnx.Module):
    def __init__(self, mlp_eps=EPS, *, rngs: nnx.Rngs):
        self.attn_norm = nnx.RMSNorm(DIM, epsilon=EPS, rngs=rngs)
        self.attn = Attention(rngs=rngs)
        self.mlp_norm = nnx.RMSNorm(DIM, epsilon=mlp_eps, rngs=rngs)
        self.mlp = SwiGLU(rngs=rngs)

    def __call__(self, x):
        x = x + self.attn(self.attn_norm(x))
        return x + self.mlp(self.mlp_norm(x))


class FlaxGPT(nnx.Module):
    def __init__(self, buggy=False, *, rngs: nnx.Rngs):
        self.embed = nnx.Embed(VOCAB, DIM, rngs=rngs)
        self.pos_embed = nnx.Embed(MAX_LEN, DIM, rngs=rngs)
        # BUG when buggy: one RMSNorm with epsilon 1e-5
        self.layers = nnx.List([Block(1e-5 if buggy and i == BUG_AT else EPS, rngs=rngs) for i in range(LAYERS)])
        self.norm = nnx.RMSNorm(DIM, epsilon=EPS, rngs=rngs)
        self.lm_head = nnx.Linear(DIM, VOCAB, use_bias=False, rngs=rngs)

    def __call__(self, ids):  # (N, L) int
        x = self.embed(ids) + self.pos_embed(jnp.arange(ids.shape[1]))
        for layer in self.layers:
            x = layer(x)
        return self.lm_head(self.norm(x))


def flax_model(buggy: bool = False, *, rngs: nnx.Rngs | None = None) -> FlaxGPT:
    return FlaxGPT(buggy, rngs=rngs or nnx.Rngs(0))


def buggy_flax_model(*, rngs: nnx.Rngs | None = None) -> FlaxGPT:
    """The port with one RMSNorm's epsilon wrong (for the command line: FILE.py:buggy_flax_model)."""
    return flax_model(True, rngs=rngs)


def example_input(n: int = 2, length: int = 12, seed: int = 0) -> np.ndarray:
    """Token ids (N, L), int64, in [0, VOCAB)."""
    return np.random.default_rng(seed).integers(0, VOCAB, (n, length)).astype(np.int64)
