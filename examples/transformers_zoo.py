"""A zoo of Hugging Face `transformers` architectures, each built from a tiny random config (never a
download: no `from_pretrained`, no hub config), for measuring how much of real model code
`parity port` can port.

`ARCHITECTURES` maps a name to an `Arch(name, domain, build)`; `build()` returns `(model, inputs)`:
`model` a `torch.nn.Module` in eval mode, float32, its weights drawn after `torch.manual_seed(0)`
(MobileNetV1/V2 then take their BatchNorm statistics from one training-mode pass: `_with_batch_statistics`);
`inputs` a tuple of tensors for the positional call `model(*inputs)`, which returns ONE tensor.

What is ported: the *base model* of each architecture (`BertModel`, `ResNetModel`, `WhisperEncoder`, …,
no task head), and the tensor compared is its first output, the last hidden state
(`last_hidden_state`: (N, T, D) tokens for transformers, the (N, C, H, W) final feature map for
convolutional nets; for Wav2Vec2 / HuBERT the encoder's (N, T, D) output). The base model is the
part every task head sits on and the part that holds the architecture; a head is one Linear. Each HF
model returns several outputs (last hidden state, pooled output, …), so it is wrapped in a thin
`FirstOutput` module whose `forward(x)` is `model(x)[0]`: one tensor, as the comparer and the
tracers expect. The configs say `return_dict=False` (a plain tuple, which tracers handle better than
a `ModelOutput`), except ConvNeXt, ConvNeXtV2, Swin, Dinov2, OPT and HuBERT, whose code in
transformers 5.25 breaks on it (an inner module returns a tuple where the outer one reads
`.last_hidden_state`): they return a `ModelOutput`, whose [0] is the same first field. The wrapper holds the HF model as `.model` and adds nothing else (no parameter, no
op). Decoder-only language models are built with `use_cache=False` so that no cache object is built
in the forward. Attention runs with `attn_implementation="eager"` (plain matmul + softmax, no SDPA
kernel) where the config accepts it; dropout probabilities are left at their defaults (eval mode
turns them off).

Inputs: images (2, 3, 32, 32) (or as small as the model allows); text `input_ids` (2, 8) int64
below a vocabulary of 100, no attention mask; audio a few thousand raw samples (Wav2Vec2, HuBERT),
or a small log-mel spectrogram (Whisper's encoder: (2, 16 mel bins, 64 frames); AST: (2, 64 frames,
16 mel bins)).

Dropped: none — all 32 architectures asked for build and run in transformers 5.25 (14 vision, 14
text, 4 audio; tests/test_transformers_zoo.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

__all__ = ["Arch", "ARCHITECTURES", "FirstOutput", "model"]


@dataclass(frozen=True)
class Arch:
    name: str
    domain: str  # "vision" | "text" | "audio"
    build: Callable[[], tuple[nn.Module, tuple[torch.Tensor, ...]]]


class FirstOutput(nn.Module):
    """A Hugging Face model reduced to its first output (the last hidden state, or the logits)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)[0]


# ---------------------------------------------------------------- inputs
def _gen():
    return torch.Generator().manual_seed(1)


def _image(n=2, c=3, size=32):
    return (torch.randn(n, c, size, size, generator=_gen()),)


def _tokens(n=2, t=8, vocab=100):
    return (torch.randint(0, vocab, (n, t), generator=_gen(), dtype=torch.int64),)


def _wave(n=2, samples=4000):
    return (torch.randn(n, samples, generator=_gen()),)


def _spectrogram(*shape):
    return (torch.randn(*shape, generator=_gen()),)


def _make(model_cls, config, inputs, tuple_out=True):
    """Seed, build the model from `config`, wrap it, eval, float32. `tuple_out=False` for the models
    whose code breaks on `return_dict=False` in transformers 5.25 (an inner module returns a tuple
    where the outer one reads `.last_hidden_state`): they return a ModelOutput, whose [0] is the same
    first field."""
    if tuple_out:
        config.return_dict = False
    torch.manual_seed(0)
    model = FirstOutput(model_cls(config)).float().eval()
    return model, inputs


ATTN = dict(attn_implementation="eager")
TEXT = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=64, max_position_embeddings=64, **ATTN)
VIT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
           image_size=32, patch_size=8, num_channels=3, **ATTN)


# ---------------------------------------------------------------- vision
def resnet():
    from transformers import ResNetConfig, ResNetModel
    cfg = ResNetConfig(num_channels=3, embedding_size=32, hidden_sizes=[32, 64], depths=[1, 1],
                       layer_type="basic")
    return _make(ResNetModel, cfg, _image())


def convnext():
    from transformers import ConvNextConfig, ConvNextModel
    cfg = ConvNextConfig(num_channels=3, hidden_sizes=[32, 64], depths=[1, 1], num_stages=2)
    return _make(ConvNextModel, cfg, _image(), tuple_out=False)


def convnextv2():
    from transformers import ConvNextV2Config, ConvNextV2Model
    cfg = ConvNextV2Config(num_channels=3, hidden_sizes=[32, 64], depths=[1, 1], num_stages=2)
    return _make(ConvNextV2Model, cfg, _image(), tuple_out=False)


def vit():
    from transformers import ViTConfig, ViTModel
    return _make(ViTModel, ViTConfig(**VIT), _image())


def deit():
    from transformers import DeiTConfig, DeiTModel
    return _make(DeiTModel, DeiTConfig(**VIT), _image())


def swin():
    from transformers import SwinConfig, SwinModel
    # two blocks in the first stage: the second shifts its windows (torch.roll and the shifted-window mask)
    cfg = SwinConfig(image_size=32, patch_size=4, num_channels=3, embed_dim=32, depths=[2, 1],
                     num_heads=[2, 4], window_size=4, mlp_ratio=2.0, **ATTN)
    return _make(SwinModel, cfg, _image(), tuple_out=False)


def _with_batch_statistics(built):
    """(model, inputs) with every BatchNorm's running statistics taken from one training-mode pass
    (no gradient) on a random image batch other than the example's (their momentum, 0.9997 in V1 and
    0.997 in V2, makes them that batch's), as a trained network's are the statistics of its
    activations. Freshly built, they are mean 0 and variance 1, so in eval mode no BatchNorm rescales,
    and with Hugging Face's convolution init (normal, std `initializer_range` 0.02) each layer shrinks
    its input ~17× (measured: MobileNetV1's largest activation 0.36 after the stem, 6.8e-33 after the
    27th layer; MobileNetV2's last feature map 7e-26), through float32's subnormal range (below
    1.18e-38), which XLA on the CPU flushes to zero and torch does not (docs/traps.md, "Other
    differences found along the way": subnormal float32 numbers). With these statistics every
    layer's largest activation is 1–6."""
    model, inputs = built
    model.train()
    with torch.no_grad():
        model(torch.randn(inputs[0].shape, generator=torch.Generator().manual_seed(2)))
    return model.eval(), inputs


def mobilenet_v1():
    from transformers import MobileNetV1Config, MobileNetV1Model
    cfg = MobileNetV1Config(num_channels=3, image_size=32, depth_multiplier=0.25, min_depth=8)
    return _with_batch_statistics(_make(MobileNetV1Model, cfg, _image()))


def mobilenet_v2():
    from transformers import MobileNetV2Config, MobileNetV2Model
    cfg = MobileNetV2Config(num_channels=3, image_size=32, depth_multiplier=0.25, min_depth=8,
                            finegrained_output=False)
    return _with_batch_statistics(_make(MobileNetV2Model, cfg, _image()))


def regnet():
    from transformers import RegNetConfig, RegNetModel
    cfg = RegNetConfig(num_channels=3, embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1],
                       groups_width=8, layer_type="y")
    return _make(RegNetModel, cfg, _image())


def efficientnet():
    from transformers import EfficientNetConfig, EfficientNetModel
    cfg = EfficientNetConfig(num_channels=3, image_size=32, width_coefficient=0.25, depth_coefficient=0.25,
                             hidden_dim=320)  # hidden_dim must be round_filters(1280) = 1280 · 0.25
    return _make(EfficientNetModel, cfg, _image())


def dinov2():
    from transformers import Dinov2Config, Dinov2Model
    return _make(Dinov2Model, Dinov2Config(**VIT, mlp_ratio=2), _image(), tuple_out=False)


def beit():
    from transformers import BeitConfig, BeitModel
    cfg = BeitConfig(vocab_size=100, **VIT, use_relative_position_bias=True)
    return _make(BeitModel, cfg, _image())


def poolformer():
    from transformers import PoolFormerConfig, PoolFormerModel
    cfg = PoolFormerConfig(num_channels=3, hidden_sizes=[32, 64], depths=[1, 1], num_encoder_blocks=2,
                           patch_sizes=[7, 3], strides=[4, 2], padding=[2, 1], mlp_ratio=2.0)
    return _make(PoolFormerModel, cfg, _image())


def segformer():
    from transformers import SegformerConfig, SegformerModel
    cfg = SegformerConfig(num_channels=3, num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1],
                          hidden_sizes=[32, 64], patch_sizes=[7, 3], strides=[4, 2],
                          num_attention_heads=[2, 4], mlp_ratios=[2, 2], decoder_hidden_size=32, **ATTN)
    return _make(SegformerModel, cfg, _image())


# ---------------------------------------------------------------- text
def bert():
    from transformers import BertConfig, BertModel
    return _make(BertModel, BertConfig(**TEXT), _tokens())


def roberta():
    from transformers import RobertaConfig, RobertaModel
    # RoBERTa numbers positions from pad_token_id + 1: room for 8 tokens after the offset
    return _make(RobertaModel, RobertaConfig(**TEXT, pad_token_id=1), _tokens())


def distilbert():
    from transformers import DistilBertConfig, DistilBertModel
    cfg = DistilBertConfig(vocab_size=100, dim=32, n_layers=2, n_heads=2, hidden_dim=64,
                           max_position_embeddings=64, **ATTN)
    return _make(DistilBertModel, cfg, _tokens())


def albert():
    from transformers import AlbertConfig, AlbertModel
    return _make(AlbertModel, AlbertConfig(**TEXT, embedding_size=16), _tokens())


def electra():
    from transformers import ElectraConfig, ElectraModel
    return _make(ElectraModel, ElectraConfig(**TEXT, embedding_size=16), _tokens())


def gpt2():
    from transformers import GPT2Config, GPT2Model
    cfg = GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=2, n_inner=64, n_positions=64,
                     bos_token_id=0, eos_token_id=0, use_cache=False, **ATTN)
    return _make(GPT2Model, cfg, _tokens())


def gpt_neo():
    from transformers import GPTNeoConfig, GPTNeoModel
    cfg = GPTNeoConfig(vocab_size=100, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                       max_position_embeddings=64, attention_types=[[["global", "local"], 1]],
                       window_size=4, bos_token_id=0, eos_token_id=0, use_cache=False, **ATTN)
    return _make(GPTNeoModel, cfg, _tokens())


def _decoder(config_cls, model_cls, **extra):
    cfg = config_cls(**{**TEXT, "num_key_value_heads": 2, "use_cache": False, **extra})
    return _make(model_cls, cfg, _tokens())


def llama():
    from transformers import LlamaConfig, LlamaModel
    return _decoder(LlamaConfig, LlamaModel)


def mistral():
    from transformers import MistralConfig, MistralModel
    return _decoder(MistralConfig, MistralModel, sliding_window=None)


def qwen2():
    from transformers import Qwen2Config, Qwen2Model
    return _decoder(Qwen2Config, Qwen2Model)


def gemma():
    from transformers import GemmaConfig, GemmaModel
    return _decoder(GemmaConfig, GemmaModel, head_dim=16)


def phi():
    from transformers import PhiConfig, PhiModel
    return _decoder(PhiConfig, PhiModel)


def opt():
    from transformers import OPTConfig, OPTModel
    cfg = OPTConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                    ffn_dim=64, word_embed_proj_dim=32, max_position_embeddings=64, use_cache=False,
                    **ATTN)
    return _make(OPTModel, cfg, _tokens(), tuple_out=False)


def t5_encoder():
    from transformers import T5Config, T5EncoderModel
    cfg = T5Config(vocab_size=100, d_model=32, d_kv=16, d_ff=64, num_layers=2, num_heads=2,
                   use_cache=False, **ATTN)
    return _make(T5EncoderModel, cfg, _tokens())


# ---------------------------------------------------------------- audio
def whisper_encoder():
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder
    cfg = WhisperConfig(vocab_size=100, num_mel_bins=16, d_model=32, encoder_layers=2, decoder_layers=2,
                        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
                        decoder_ffn_dim=64, max_source_positions=32, max_target_positions=32,
                        pad_token_id=0, bos_token_id=0, eos_token_id=0, decoder_start_token_id=0,
                        use_cache=False, **ATTN)
    # the encoder wants exactly 2 · max_source_positions frames (its conv stem halves them)
    return _make(WhisperEncoder, cfg, _spectrogram(2, 16, 64))


_W2V = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            conv_dim=(32, 32, 32), conv_kernel=(10, 3, 3), conv_stride=(5, 2, 2),
            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, vocab_size=100, **ATTN)


def wav2vec2():
    from transformers import Wav2Vec2Config, Wav2Vec2Model
    return _make(Wav2Vec2Model, Wav2Vec2Config(**_W2V), _wave())


def hubert():
    from transformers import HubertConfig, HubertModel
    return _make(HubertModel, HubertConfig(**_W2V), _wave(), tuple_out=False)


def ast():
    from transformers import ASTConfig, ASTModel
    cfg = ASTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                    patch_size=16, frequency_stride=8, time_stride=8, max_length=64, num_mel_bins=16,
                    **ATTN)
    return _make(ASTModel, cfg, _spectrogram(2, 64, 16))


_ALL = [
    ("resnet", "vision", resnet), ("convnext", "vision", convnext), ("convnextv2", "vision", convnextv2),
    ("vit", "vision", vit), ("deit", "vision", deit), ("swin", "vision", swin),
    ("mobilenet_v1", "vision", mobilenet_v1), ("mobilenet_v2", "vision", mobilenet_v2),
    ("regnet", "vision", regnet), ("efficientnet", "vision", efficientnet), ("dinov2", "vision", dinov2),
    ("beit", "vision", beit), ("poolformer", "vision", poolformer), ("segformer", "vision", segformer),
    ("bert", "text", bert), ("roberta", "text", roberta), ("distilbert", "text", distilbert),
    ("albert", "text", albert), ("electra", "text", electra), ("gpt2", "text", gpt2),
    ("gpt_neo", "text", gpt_neo), ("llama", "text", llama), ("mistral", "text", mistral),
    ("qwen2", "text", qwen2), ("gemma", "text", gemma), ("phi", "text", phi), ("opt", "text", opt),
    ("t5_encoder", "text", t5_encoder),
    ("whisper_encoder", "audio", whisper_encoder), ("wav2vec2", "audio", wav2vec2),
    ("hubert", "audio", hubert), ("ast", "audio", ast),
]

ARCHITECTURES: dict[str, Arch] = {name: Arch(name, domain, fn) for name, domain, fn in _ALL}


def model(name: str) -> nn.Module:
    """The model alone, for the command line (its inputs are given there):

        parity port examples/transformers_zoo.py:model --args '{"name": "bert"}' \\
            --input-shape 2,8 --input-int 100 --out ported/bert
    """
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; known: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[name].build()[0]
