"""A small Vision Transformer: a patch embedding (a Conv2d whose kernel and stride are the patch size),
the patches flattened to tokens, a class token prepended and a learned position embedding added, two
pre-norm encoder blocks (LayerNorm → multi-head self-attention → residual, LayerNorm → GELU MLP →
residual), a final LayerNorm and a Linear head on the class token, written once with stock `torch.nn`
(attention by `nn.MultiheadAttention(batch_first=True)`) and once with stock `flax.nnx` (attention by
`nnx.MultiHeadAttention`). The input is a batch of NCHW images; the comparer hands them to the Flax
model as NHWC.

    parity compare examples/vit.py:torch_model examples/vit.py:flax_model --input-shape 2,3,16,16

What the port has to get right:

* layout: the patch embedding runs on NHWC with an HWIO kernel (docs/traps.md, trap 3). Its output
  (N, H/p, W/p, D) reshaped to (N, H/p·W/p, D) lists the patches row by row, as torch's
  `flatten(2).transpose(1, 2)` of (N, D, H/p, W/p) does, so the tokens agree without a permutation
  (trap 4's permutation is for a map flattened into one feature vector; here each token's features are
  its channels);
* the patch convolution pads nothing: padding='VALID' (nnx.Conv pads 'SAME' by default, traps 5 and
  6; with kernel = stride = 4 on 16×16 'SAME' happens to pad nothing either, but not on sizes that
  are no multiple of the patch);
* the class token (1, 1, D) and the position embedding (1, 1 + P, D) are `nn.Parameter`s of the
  model itself in torch and `nnx.Param`s in Flax, under the same names: outside any layer, the
  comparer pairs them by name (and shape) and copies them unchanged;
* attention: torch packs q, k, v into `in_proj_weight` (3D, D); nnx.MultiHeadAttention keeps one
  LinearGeneral per projection, (D, H, D/H) kernels, and `out` (H, D/H, D): the attention kind's
  conversion splits and reshapes them per head (parity/porting/attention_kinds.py). Both scale the
  query by 1/√(D/H). nnx is batch-first only, as torch is here with batch_first=True. The nnx layer is
  built with decode=False (no cache) and deterministic=True with dropout_rate=0 (torch's dropout=0),
  and called as self-attention `attn(h)` where torch's is `attn(h, h, h, need_weights=False)[0]`;
* attention precision: nnx.MultiHeadAttention's default attention_fn goes through
  jax.nn.dot_product_attention, whose softmax is float32 whatever the inputs (1e-7 off torch in
  float64, over float64's tolerance; see parity/porting/attention_kinds.py). The port passes
  `attention_fn=attention_in_input_dtype` from that file, whatever the dtype: it computes
  nnx.dot_product_attention's own softmax(q·k/√d)·v in the inputs' dtype, so float64 is float64
  throughout and float32 is what the default computes in float32;
* LayerNorm: ViTs use eps 1e-6, given to torch explicitly (its default is 1e-5) and to nnx.LayerNorm
  explicitly as well (its default happens to be 1e-6: trap 14); use_fast_variance=False for torch's
  two-pass variance (trap 13);
* GELU: torch's nn.GELU is exact (erf); jax.nn.gelu defaults to the tanh approximation (trap 15):
  approximate=False. The Flax MLP keeps the activation as a small parameterless `GELU` module, as torch
  does, so the comparer pairs the two by class name and checks its output;
* Linear: (out, in) ⇄ (in, out), done by the weight conversion (trap 2).

`flax_model(buggy=True)` plants one typical porting bug: the second block's MLP calls jax.nn.gelu
with its default approximate=True. Its input agrees and its output parts by 2.4e-4 max abs (the
tanh form's error, at most 4.7e-4: trap 15): far beyond float64's tolerance and about 600× torch
float32's own error there. The comparer names `blocks.1.mlp.act` as the first divergence in both
dtypes.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx
from torch import nn

from parity.porting.attention_kinds import attention_in_input_dtype

IMAGE = 16
PATCH = 4
CHANNELS = 3
DIM = 32
HEADS = 4
MLP = 64  # the MLP's hidden width (2 × DIM)
LAYERS = 2
CLASSES = 10
EPS = 1e-6
TOKENS = 1 + (IMAGE // PATCH) ** 2  # the class token and 16 patches
BUG_AT = 1  # the block whose MLP uses the tanh GELU in the buggy port


# ---------------------------------------------------------------- torch
class TorchMLP(nn.Module):
    def __init__(self, dim=DIM, hidden=MLP):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class TorchBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm1 = nn.LayerNorm(DIM, eps=EPS)
        self.attn = nn.MultiheadAttention(DIM, HEADS, batch_first=True)
        self.norm2 = nn.LayerNorm(DIM, eps=EPS)
        self.mlp = TorchMLP()

    def forward(self, x):  # (N, T, D)
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class TorchViT(nn.Module):
    def __init__(self):
        super().__init__()
        self.patch_embed = nn.Conv2d(CHANNELS, DIM, PATCH, stride=PATCH)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, DIM))
        self.pos_embed = nn.Parameter(torch.zeros(1, TOKENS, DIM))
        self.blocks = nn.ModuleList([TorchBlock() for _ in range(LAYERS)])
        self.norm = nn.LayerNorm(DIM, eps=EPS)
        self.head = nn.Linear(DIM, CLASSES)

    def forward(self, images):  # (N, C, H, W)
        x = self.patch_embed(images).flatten(2).transpose(1, 2)  # (N, P, D), patches row by row
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x)[:, 0])  # (N, CLASSES) logits from the class token


def torch_model() -> TorchViT:
    """The ViT with torch's initialisation, then what a trained model has and a fresh one lacks: class
    token and position embedding away from zero, LayerNorm affine parameters away from (1, 0), and the
    attention biases (zero at initialisation) non-zero, so a bias put in the wrong place would show."""
    torch.manual_seed(0)
    model = TorchViT().eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        model.cls_token.copy_(0.5 * torch.randn(model.cls_token.shape, generator=g))
        model.pos_embed.copy_(0.5 * torch.randn(model.pos_embed.shape, generator=g))
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.copy_(0.75 + 0.5 * torch.rand(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
            if isinstance(m, nn.MultiheadAttention):
                m.in_proj_bias.copy_(0.1 * torch.randn(m.in_proj_bias.shape, generator=g))
                m.out_proj.bias.copy_(0.1 * torch.randn(m.out_proj.bias.shape, generator=g))
    return model


# ---------------------------------------------------------------- Flax NNX (NHWC images)
class GELU(nnx.Module):
    """The activation as a layer, as torch has it (parameterless: paired with nn.GELU by class name)."""

    def __init__(self, approximate: bool = False):
        self.approximate = approximate

    def __call__(self, x):
        return jax.nn.gelu(x, approximate=self.approximate)


def _layer_norm(rngs):
    return nnx.LayerNorm(DIM, epsilon=EPS, use_fast_variance=False, rngs=rngs)


class MLP(nnx.Module):
    def __init__(self, dim=DIM, hidden=MLP, buggy=False, *, rngs: nnx.Rngs):
        self.fc1 = nnx.Linear(dim, hidden, rngs=rngs)
        self.act = GELU(approximate=buggy)  # BUG when buggy: jax.nn.gelu's default, the tanh form
        self.fc2 = nnx.Linear(hidden, dim, rngs=rngs)

    def __call__(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nnx.Module):
    def __init__(self, buggy=False, *, rngs: nnx.Rngs):
        self.norm1 = _layer_norm(rngs)
        self.attn = nnx.MultiHeadAttention(HEADS, DIM, decode=False, deterministic=True, dropout_rate=0.0,
                                           attention_fn=attention_in_input_dtype, rngs=rngs)
        self.norm2 = _layer_norm(rngs)
        self.mlp = MLP(buggy=buggy, rngs=rngs)

    def __call__(self, x):  # (N, T, D)
        x = x + self.attn(self.norm1(x))  # self-attention: keys and values are the queries' input
        return x + self.mlp(self.norm2(x))


class FlaxViT(nnx.Module):
    def __init__(self, buggy=False, *, rngs: nnx.Rngs):
        self.patch_embed = nnx.Conv(CHANNELS, DIM, (PATCH, PATCH), strides=(PATCH, PATCH), padding="VALID",
                                    rngs=rngs)
        init = nnx.initializers.truncated_normal(0.02)
        self.cls_token = nnx.Param(init(rngs.params(), (1, 1, DIM)))
        self.pos_embed = nnx.Param(init(rngs.params(), (1, TOKENS, DIM)))
        self.blocks = nnx.List([Block(buggy and i == BUG_AT, rngs=rngs) for i in range(LAYERS)])
        self.norm = _layer_norm(rngs)
        self.head = nnx.Linear(DIM, CLASSES, rngs=rngs)

    def __call__(self, images):  # (N, H, W, C)
        x = self.patch_embed(images)  # (N, H/p, W/p, D)
        n = x.shape[0]
        x = x.reshape(n, -1, DIM)  # (N, P, D), patches row by row as in torch
        cls = jnp.broadcast_to(self.cls_token[...], (n, 1, DIM))
        x = jnp.concatenate([cls, x], axis=1) + self.pos_embed[...]
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x)[:, 0])


def flax_model(buggy: bool = False, *, rngs: nnx.Rngs | None = None) -> FlaxViT:
    return FlaxViT(buggy, rngs=rngs or nnx.Rngs(0))


def buggy_flax_model(*, rngs: nnx.Rngs | None = None) -> FlaxViT:
    """The port whose second MLP uses the tanh GELU (for the command line: FILE.py:buggy_flax_model)."""
    return flax_model(True, rngs=rngs)


def example_input(n: int = 2, size: int = IMAGE, seed: int = 0) -> np.ndarray:
    """Images (N, 3, H, W), NCHW float32, roughly normalised."""
    return np.random.default_rng(seed).standard_normal((n, CHANNELS, size, size)).astype(np.float32)
