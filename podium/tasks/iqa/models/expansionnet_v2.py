"""ExpansionNet v2 (Hu et al. 2022): a captioner that expands sequences to learned lengths instead of attending.

Module and parameter names follow jchenghu/ExpansionNet_v2 (``ExpansionNet_v2`` / ``End_ExpansionNet_v2``)
so that its released ``xe_model.pth`` / ``rf_model.pth`` (``model_state_dict``) load with ``strict=True``
and decode to the same captions. ``ExpansionNetV2`` reads precomputed backbone tokens (Swin-L: 144 x 1536);
``ExpansionNetV2E2E`` puts timm's Swin in front as ``swin_transf`` (load an original end-to-end state dict
through :func:`convert_end_to_end_state_dict`).

Padding is given as counts of padded positions at the end of each row (``*_pads``, shape (batch,)), as in
the original: padded key columns are masked, and so are padded decoder rows, which matters only for the
outputs at those rows.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from podium.tasks.iqa.models import register_model
from podium.tasks.iqa.models.decoding import LogitsCaptioner

EPS = 1e-9  # added to every L1 normaliser
ATTENTION_MASK_VALUE = -1e4  # the original masks attention scores with -1e4, not -inf
SWIN_BUFFERS = ("relative_position_index", "attn_mask")  # persistent in Microsoft's Swin, not in timm's


def _l1_normalise(weights: Tensor) -> Tensor:
    return weights / (weights.sum(dim=-1, keepdim=True) + EPS)


def _keep_columns(length: int, pads: Tensor | None, like: Tensor) -> Tensor:
    """(batch, length) bool: True where a position is not padding; all True when ``pads`` is None."""
    if pads is None:
        return torch.ones(like.shape[0], length, dtype=torch.bool, device=like.device)
    return torch.arange(length, device=like.device) < (length - pads.to(like.device)).unsqueeze(-1)


class EmbeddingLayer(nn.Module):
    """Word embedding, dropout, then the sqrt(d_model) scale (dropout comes before the scale)."""

    def __init__(self, vocab_size: int, d_model: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.embed = nn.Embedding(vocab_size, d_model)
        self.scale = math.sqrt(float(d_model))

    def forward(self, tokens: Tensor) -> Tensor:
        return self.dropout(self.embed(tokens)) * self.scale


class FeedForward(nn.Module):
    """Linear, ReLU, dropout, linear."""

    def __init__(self, d_model: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(d_model, d_ff)
        self.dropout = nn.Dropout(dropout)
        self.linear_2 = nn.Linear(d_ff, d_model)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear_2(self.dropout(F.relu(self.linear_1(x))))


class MultiHeadAttention(nn.Module):
    """Scaled dot-product attention over ``num_heads`` heads; masked scores are set to -1e4 (no dropout)."""

    def __init__(self, d_model: int, num_heads: int) -> None:
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model={d_model} is not a multiple of num_heads={num_heads}")
        self.num_heads = num_heads
        self.d_k = d_model // num_heads
        self.Wq = nn.Linear(d_model, d_model)
        self.Wk = nn.Linear(d_model, d_model)
        self.Wv = nn.Linear(d_model, d_model)
        self.out_linear = nn.Linear(d_model, d_model)

    def _heads(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], x.shape[1], self.num_heads, self.d_k).transpose(1, 2)

    def forward(self, q: Tensor, kv: Tensor, mask: Tensor) -> Tensor:
        """``mask`` (batch, len_q, len_kv) is True where query i may read key j."""
        scores = self._heads(self.Wq(q)) @ self._heads(self.Wk(kv)).transpose(2, 3) / self.d_k**0.5
        scores = scores.masked_fill(~mask.unsqueeze(1), ATTENTION_MASK_VALUE)
        out = scores.softmax(dim=-1) @ self._heads(self.Wv(kv))
        return self.out_linear(out.transpose(1, 2).reshape(q.shape[0], q.shape[1], -1))


class StaticExpansionBlock(nn.Module):
    """Encoder expansion: the input is read by sum(num_exp_list) learned queries, then read back per token.

    z = queries · key(x) / sqrt(d); ReLU(z) and ReLU(-z) make two classes. Forward: each query averages the
    (non-padded) tokens with its L1-normalised weights, plus its bias vector. Backward: each token averages
    the queries of every block with weights normalised within the block, and the blocks are averaged.
    A sigmoid selector mixes the two classes per channel.
    """

    def __init__(self, d_model: int, num_exp_list: Sequence[int], dropout: float) -> None:
        super().__init__()
        self.num_exp_list = list(num_exp_list)
        self.query_exp_vectors = nn.Embedding(sum(self.num_exp_list), d_model)
        self.bias_exp_vectors = nn.Embedding(sum(self.num_exp_list), d_model)
        self.key_embed = nn.Linear(d_model, d_model)
        self.class_a_embed = nn.Linear(d_model, d_model)
        self.class_b_embed = nn.Linear(d_model, d_model)
        self.selector_embed = nn.Linear(d_model, d_model)
        self.Z_dropout = nn.Dropout(dropout)
        self.dropout_class_a_fw = nn.Dropout(dropout)
        self.dropout_class_b_fw = nn.Dropout(dropout)
        self.dropout_class_a_bw = nn.Dropout(dropout)
        self.dropout_class_b_bw = nn.Dropout(dropout)

    def _read_back(self, weights: Tensor) -> Tensor:
        return torch.cat([_l1_normalise(block) for block in weights.split(self.num_exp_list, dim=-1)], dim=-1)

    def forward(self, x: Tensor, keep: Tensor) -> Tensor:
        """``keep`` (batch, 1, length) is True on non-padded tokens."""
        queries = self.query_exp_vectors.weight.expand(x.shape[0], -1, -1)
        bias = self.bias_exp_vectors.weight
        z = self.Z_dropout(queries @ self.key_embed(x).transpose(1, 2) / x.shape[-1] ** 0.5)
        class_a = _l1_normalise(F.relu(z).masked_fill(~keep, 0.0)) @ self.class_a_embed(x) + bias
        class_b = _l1_normalise(F.relu(-z).masked_fill(~keep, 0.0)) @ self.class_b_embed(x) + bias
        class_a, class_b = self.dropout_class_a_fw(class_a), self.dropout_class_b_fw(class_b)
        z_t = z.transpose(1, 2)
        blocks = len(self.num_exp_list)
        class_a = self.dropout_class_a_bw(self._read_back(F.relu(z_t)) @ class_a / blocks)
        class_b = self.dropout_class_b_bw(self._read_back(F.relu(-z_t)) @ class_b / blocks)
        selector = torch.sigmoid(self.selector_embed(x))
        return selector * class_a + (1 - selector) * class_b


class DynamicExpansionBlock(nn.Module):
    """Decoder expansion: every token makes ``num_exp`` queries (learned vectors + its condition embedding).

    Forward: query (t, e) averages tokens it may see (causal mask) with L1-normalised ReLU(±z) weights.
    Backward: token t averages the queries of tokens it may see, normalised over all of them, after the
    per-query bias (vector + condition) is added. A sigmoid selector mixes the two classes.
    """

    def __init__(self, d_model: int, num_exp: int, dropout: float) -> None:
        super().__init__()
        self.num_exp = num_exp
        self.cond_embed = nn.Linear(d_model, d_model)
        self.query_exp_vectors = nn.Embedding(num_exp, d_model)
        self.bias_exp_vectors = nn.Embedding(num_exp, d_model)
        self.key_linear = nn.Linear(d_model, d_model)
        self.class_a_embed = nn.Linear(d_model, d_model)
        self.class_b_embed = nn.Linear(d_model, d_model)
        self.selector_embed = nn.Linear(d_model, d_model)
        self.Z_dropout = nn.Dropout(dropout)
        self.dropout_class_a_fw = nn.Dropout(dropout)
        self.dropout_class_b_fw = nn.Dropout(dropout)
        self.dropout_class_a_bw = nn.Dropout(dropout)
        self.dropout_class_b_bw = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """``mask`` (batch, length, length) is True where token t may read token s."""
        batch, length, d_model = x.shape
        cond = self.cond_embed(x).unsqueeze(2)  # (batch, length, 1, d): queries are token-major
        queries = (self.query_exp_vectors.weight + cond).reshape(batch, length * self.num_exp, d_model)
        bias = (self.bias_exp_vectors.weight + cond).reshape(batch, length * self.num_exp, d_model)
        z = self.Z_dropout(queries @ self.key_linear(x).transpose(1, 2) / d_model**0.5)
        query_blocked = ~mask.repeat_interleave(self.num_exp, dim=1)
        class_a = _l1_normalise(F.relu(z).masked_fill(query_blocked, 0.0)) @ self.class_a_embed(x)
        class_b = _l1_normalise(F.relu(-z).masked_fill(query_blocked, 0.0)) @ self.class_b_embed(x)
        class_a, class_b = self.dropout_class_a_fw(class_a), self.dropout_class_b_fw(class_b)
        token_blocked = ~mask.repeat_interleave(self.num_exp, dim=2)
        z_t = z.transpose(1, 2)
        class_a = _l1_normalise(F.relu(z_t).masked_fill(token_blocked, 0.0)) @ (class_a + bias)
        class_b = _l1_normalise(F.relu(-z_t).masked_fill(token_blocked, 0.0)) @ (class_b + bias)
        class_a, class_b = self.dropout_class_a_bw(class_a), self.dropout_class_b_bw(class_b)
        selector = torch.sigmoid(self.selector_embed(x))
        return selector * class_a + (1 - selector) * class_b


class EncoderLayer(nn.Module):
    """Pre-LN: x + static expansion, then x + feed-forward (no self-attention)."""

    def __init__(self, d_model: int, d_ff: int, num_exp_list: Sequence[int], dropout: float) -> None:
        super().__init__()
        self.norm_1 = nn.LayerNorm(d_model)
        self.norm_2 = nn.LayerNorm(d_model)
        self.dropout_1 = nn.Dropout(dropout)
        self.dropout_2 = nn.Dropout(dropout)
        self.stc_exp = StaticExpansionBlock(d_model, num_exp_list, dropout)
        self.ff = FeedForward(d_model, d_ff, dropout)

    def forward(self, x: Tensor, keep: Tensor) -> Tensor:
        x = x + self.dropout_1(self.stc_exp(self.norm_1(x), keep))
        return x + self.dropout_2(self.ff(self.norm_2(x)))


class DecoderLayer(nn.Module):
    """Pre-LN: x + dynamic expansion (causal), x + cross-attention to the encoder, x + feed-forward."""

    def __init__(self, d_model: int, num_heads: int, d_ff: int, num_exp: int, dropout: float) -> None:
        super().__init__()
        self.norm_1 = nn.LayerNorm(d_model)
        self.norm_2 = nn.LayerNorm(d_model)
        self.norm_3 = nn.LayerNorm(d_model)
        self.dropout_1 = nn.Dropout(dropout)
        self.dropout_2 = nn.Dropout(dropout)
        self.dropout_3 = nn.Dropout(dropout)
        self.mha = MultiHeadAttention(d_model, num_heads)
        self.dyn_exp = DynamicExpansionBlock(d_model, num_exp, dropout)
        self.ff = FeedForward(d_model, d_ff, dropout)

    def forward(self, x: Tensor, memory: Tensor, self_mask: Tensor, cross_mask: Tensor) -> Tensor:
        x = x + self.dropout_1(self.dyn_exp(self.norm_1(x), self_mask))
        x = x + self.dropout_2(self.mha(self.norm_2(x), memory, cross_mask))
        return x + self.dropout_3(self.ff(self.norm_3(x)))


@register_model("expansionnet_v2")
class ExpansionNetV2(LogitsCaptioner):
    """ExpansionNet v2 on precomputed image tokens (batch, tokens, img_feature_dim), e.g. Swin-L's 144 x 1536.

    Defaults are the original's (train.py): 3 + 3 layers of width 512, 8 heads, FFN 2048, static expansion
    blocks [32, 64, 128, 256, 512], 16 dynamic queries, dropout 0.1 everywhere, 74 positions (the COCO
    checkpoint's). ``forward`` is teacher forcing; decoding is ``beam_search`` / ``sample``.
    """

    def __init__(
        self,
        vocab_size: int,
        max_seq_len: int = 74,
        d_model: int = 512,
        N_enc: int = 3,
        N_dec: int = 3,
        ff: int = 2048,
        num_heads: int = 8,
        num_exp_enc_list: Sequence[int] = (32, 64, 128, 256, 512),
        num_exp_dec: int = 16,
        img_feature_dim: int = 1536,
        enc_drop: float = 0.1,
        dec_drop: float = 0.1,
        enc_input_drop: float = 0.1,
        dec_input_drop: float = 0.1,
        drop_other: float = 0.1,
    ) -> None:
        super().__init__()
        self.max_seq_len = max_seq_len
        self.encoders = nn.ModuleList([EncoderLayer(d_model, ff, num_exp_enc_list, enc_drop) for _ in range(N_enc)])
        self.decoders = nn.ModuleList(
            [DecoderLayer(d_model, num_heads, ff, num_exp_dec, dec_drop) for _ in range(N_dec)]
        )
        self.input_embedder_dropout = nn.Dropout(enc_input_drop)
        self.input_linear = nn.Linear(img_feature_dim, d_model)
        self.vocab_linear = nn.Linear(d_model, vocab_size)
        self.out_enc_dropout = nn.Dropout(drop_other)
        self.out_dec_dropout = nn.Dropout(drop_other)
        self.out_embedder = EmbeddingLayer(vocab_size, d_model, dec_input_drop)
        self.pos_encoder = nn.Embedding(max_seq_len, d_model)
        self.enc_reduce_group = nn.Linear(d_model * N_enc, d_model)
        self.enc_reduce_norm = nn.LayerNorm(d_model)
        self.dec_reduce_group = nn.Linear(d_model * N_dec, d_model)
        self.dec_reduce_norm = nn.LayerNorm(d_model)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def encode(self, inputs: Tensor, input_pads: Tensor | None = None) -> Tensor:
        """Image tokens (batch, tokens, img_feature_dim) -> memory (batch, tokens, d_model).

        Every layer's output is concatenated, reduced to d_model, added to the last one and normalised.
        """
        x = self.input_embedder_dropout(self.input_linear(inputs.to(self.input_linear.weight.dtype)))
        keep = _keep_columns(x.shape[1], input_pads, x).unsqueeze(1)
        outputs = []
        for layer in self.encoders:
            x = layer(x, keep)
            outputs.append(x)
        return self.enc_reduce_norm(x + self.out_enc_dropout(self.enc_reduce_group(torch.cat(outputs, dim=-1))))

    def logits(
        self, memory: Tensor, tokens: Tensor, memory_pads: Tensor | None = None, token_pads: Tensor | None = None
    ) -> Tensor:
        """Next-word logits (batch, length, vocab) for the prefixes of ``tokens`` (batch, length)."""
        length = tokens.shape[1]
        if length > self.max_seq_len:
            raise ValueError(f"{length} decoder positions exceed max_seq_len={self.max_seq_len}")
        rows = _keep_columns(length, token_pads, tokens)
        causal = torch.ones(length, length, dtype=torch.bool, device=tokens.device).tril()
        self_mask = causal & rows.unsqueeze(1) & rows.unsqueeze(2)
        cross_mask = rows.unsqueeze(2) & _keep_columns(memory.shape[1], memory_pads, memory).unsqueeze(1)
        y = self.out_embedder(tokens) + self.pos_encoder.weight[:length]
        outputs = []
        for layer in self.decoders:
            y = layer(y, memory, self_mask, cross_mask)
            outputs.append(y)
        y = self.dec_reduce_norm(y + self.out_dec_dropout(self.dec_reduce_group(torch.cat(outputs, dim=-1))))
        return self.vocab_linear(y)

    def forward(
        self, inputs: Tensor, tokens: Tensor, input_pads: Tensor | None = None, token_pads: Tensor | None = None
    ) -> Tensor:
        """Teacher forcing: log-probs (batch, length, vocab) of the word after each prefix of ``tokens``."""
        return self.log_probs(self.encode(inputs, input_pads), tokens, input_pads, token_pads)


@register_model("expansionnet_v2_e2e")
class ExpansionNetV2E2E(ExpansionNetV2):
    """ExpansionNet v2 behind a timm Swin (``swin_transf``), from 384 x 384 images (normalised with ImageNet's).

    The backbone is built with ``pretrained=False`` (load weights through ``load_state_dict``); its final
    normalised tokens (batch, 12, 12, 1536) are flattened row-major to the 144 tokens the body reads. Only
    the body is Xavier-initialised (the original also re-initialises Swin, then overwrites it by loading).
    The original trains end to end with ``backbone_kwargs={"drop_path_rate": 0.1}`` and infers with 0.
    """

    def __init__(
        self,
        vocab_size: int,
        backbone: str = "swin_large_patch4_window12_384",
        backbone_kwargs: Mapping[str, Any] | None = None,
        **body_kwargs: Any,
    ) -> None:
        swin = timm.create_model(backbone, pretrained=False, num_classes=0, **dict(backbone_kwargs or {}))
        super().__init__(vocab_size, img_feature_dim=swin.num_features, **body_kwargs)
        self.swin_transf = swin

    def image_tokens(self, images: Tensor) -> Tensor:
        """Images (batch, 3, H, W) -> backbone tokens (batch, H/32 * W/32, num_features)."""
        return self.swin_transf.forward_features(images).flatten(1, 2)

    def encode(self, inputs: Tensor, input_pads: Tensor | None = None) -> Tensor:
        if input_pads is not None and bool(input_pads.any()):
            raise ValueError("images have no padding: input_pads must be None or zeros")
        return super().encode(self.image_tokens(inputs))


def swin_keys_to_timm(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Microsoft-layout Swin keys -> timm's (same tensors).

    Microsoft's Swin downsamples at the end of stage i, timm's at the start of stage i + 1, and timm's head
    is ``head.fc``; the relative-position index and the attention masks are non-persistent in timm.
    """
    out = {}
    for key, value in state_dict.items():
        if key.rsplit(".", 1)[-1] in SWIN_BUFFERS:
            continue
        key = re.sub(r"^layers\.(\d+)\.downsample\.", lambda m: f"layers.{int(m.group(1)) + 1}.downsample.", key)
        out[re.sub(r"^head\.", "head.fc.", key)] = value
    return out


def body_state_dict(state_dict: Mapping[str, Tensor], prefix: str = "swin_transf.") -> dict[str, Tensor]:
    """The body's entries of an end-to-end state dict, for :class:`ExpansionNetV2` on features.

    The released COCO checkpoints (``xe_model.pth``, ``rf_model.pth``) are end-to-end: Swin-L + body.
    """
    return {k: v for k, v in state_dict.items() if not k.startswith(prefix)}


def convert_end_to_end_state_dict(state_dict: Mapping[str, Tensor], prefix: str = "swin_transf.") -> dict[str, Tensor]:
    """An original ``End_ExpansionNet_v2`` state dict -> :class:`ExpansionNetV2E2E`'s (body keys unchanged)."""
    swin = swin_keys_to_timm({k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)})
    return body_state_dict(state_dict, prefix) | {prefix + k: v for k, v in swin.items()}
