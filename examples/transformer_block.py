"""A small transformer-style block (pre-norm, one attention layer, one MLP), written once with stock
`torch.nn` and once with stock `flax.nnx`; attention is spelled out with matmul and softmax.

    parity compare examples/transformer_block.py:TorchTransformerBlock \
        examples/transformer_block.py:FlaxTransformerBlock --input-shape 4,16 --input-int 50

What the port has to get right, and where it does:

* LayerNorm's epsilon: torch 1e-5, nnx.LayerNorm 1e-6 (docs/traps.md, trap 14): passed explicitly;
* GELU: torch's nn.GELU is exact (erf), jax.nn.gelu defaults to the tanh approximation (trap 15):
  approximate=False;
* Embedding padding_idx: torch never updates the padding row (its gradient is zero); nnx.Embed has no
  such option, so the Flax model stops the gradient at padding positions;
* Dropout: the same rate in both; the comparison runs in eval mode unless asked for training mode,
  which then gives both the same masks.

Token ids are integers (N, T) and pass to both models unchanged; the learned positional embedding
is a parameter outside any layer, paired by its name `pos`.
"""
import math

import jax
import jax.numpy as jnp
import torch
from flax import nnx
from torch import nn

PAD = 0


class TorchAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x):
        n, t, d = x.shape
        split = lambda z: z.view(n, t, self.heads, d // self.heads).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        scores = q @ k.transpose(-2, -1) / math.sqrt(d // self.heads)
        causal = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        scores = scores.masked_fill(~causal, float("-inf"))
        h = torch.softmax(scores, dim=-1) @ v
        return self.o(h.transpose(1, 2).reshape(n, t, d))


class TorchTransformerBlock(nn.Module):
    def __init__(self, vocab=50, dim=32, heads=4, seq=16, p=0.1):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim, padding_idx=PAD)
        self.pos = nn.Parameter(0.02 * torch.randn(1, seq, dim))
        self.ln1 = nn.LayerNorm(dim)
        self.attn = TorchAttention(dim, heads)
        self.drop1 = nn.Dropout(p)
        self.ln2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(4 * dim, dim)
        self.drop2 = nn.Dropout(p)
        self.ln_f = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab)

    def forward(self, ids):
        x = self.embed(ids) + self.pos[:, :ids.shape[1]]
        x = x + self.drop1(self.attn(self.ln1(x)))
        x = x + self.drop2(self.fc2(self.act(self.fc1(self.ln2(x)))))
        return self.head(self.ln_f(x))


class FlaxAttention(nnx.Module):
    def __init__(self, dim, heads, *, rngs: nnx.Rngs):
        self.heads = heads
        self.q, self.k, self.v, self.o = (nnx.Linear(dim, dim, rngs=rngs) for _ in range(4))

    def __call__(self, x):
        n, t, d = x.shape
        split = lambda z: z.reshape(n, t, self.heads, d // self.heads).transpose(0, 2, 1, 3)  # noqa: E731
        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(d // self.heads)
        causal = jnp.tril(jnp.ones((t, t), bool))
        scores = jnp.where(causal, scores, -jnp.inf)
        h = jax.nn.softmax(scores, axis=-1) @ v
        return self.o(h.transpose(0, 2, 1, 3).reshape(n, t, d))


class FlaxTransformerBlock(nnx.Module):
    def __init__(self, vocab=50, dim=32, heads=4, seq=16, p=0.1, *, rngs: nnx.Rngs):
        self.embed = nnx.Embed(vocab, dim, rngs=rngs)
        self.pos = nnx.Param(0.02 * jax.random.normal(rngs.params(), (1, seq, dim)))
        self.ln1 = nnx.LayerNorm(dim, epsilon=1e-5, rngs=rngs)  # torch's eps (trap 14)
        self.attn = FlaxAttention(dim, heads, rngs=rngs)
        self.drop1 = nnx.Dropout(p, rngs=rngs)
        self.ln2 = nnx.LayerNorm(dim, epsilon=1e-5, rngs=rngs)
        self.fc1 = nnx.Linear(dim, 4 * dim, rngs=rngs)
        self.fc2 = nnx.Linear(4 * dim, dim, rngs=rngs)
        self.drop2 = nnx.Dropout(p, rngs=rngs)
        self.ln_f = nnx.LayerNorm(dim, epsilon=1e-5, rngs=rngs)
        self.head = nnx.Linear(dim, vocab, rngs=rngs)

    def __call__(self, ids):
        e = self.embed(ids)
        e = jnp.where((ids == PAD)[..., None], jax.lax.stop_gradient(e), e)  # torch's padding_idx
        x = e + self.pos[:, :ids.shape[1]]
        x = x + self.drop1(self.attn(self.ln1(x)))
        x = x + self.drop2(self.fc2(jax.nn.gelu(self.fc1(self.ln2(x)), approximate=False)))  # exact (trap 15)
        return self.head(self.ln_f(x))
