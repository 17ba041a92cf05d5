"""Scaled dot-product attention from scratch (chapter "Attention from scratch").

Everything a BERT-style encoder does to mix information between tokens, written out in a
few lines each and checked against PyTorch in ``tests/test_attention.py``:

- :func:`scaled_dot_product_attention`  softmax(Q K^T / sqrt(d_k)) V, with a boolean mask
- :func:`padding_mask`, :func:`causal_mask`  the two masks every transformer uses
- :class:`MultiHeadAttention`  h heads side by side, weights interchangeable with
  :class:`torch.nn.MultiheadAttention`
- :func:`sinusoidal_positional_encoding`  the position signal of the original Transformer
- :class:`TransformerEncoderBlock`  attention + residual + LayerNorm + feed-forward (post-LN),
  weights interchangeable with :class:`torch.nn.TransformerEncoderLayer`

**Mask convention.** Every mask in this module is a boolean tensor where ``True`` means
*may attend* (the key is visible to the query), as in
:func:`torch.nn.functional.scaled_dot_product_attention` and in Hugging Face's
``attention_mask`` (1 = real token). Beware: :class:`torch.nn.MultiheadAttention` uses the
opposite convention for its boolean ``attn_mask`` and ``key_padding_mask`` (``True`` =
*ignore*), so pass ``~mask`` there. A query whose row is fully masked attends to nothing:
its weights are all zero and its output is the zero vector (no NaN).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes

__all__ = [
    "MultiHeadAttention",
    "TransformerEncoderBlock",
    "causal_mask",
    "padding_mask",
    "plot_attention",
    "scaled_dot_product_attention",
    "sinusoidal_positional_encoding",
]


def scaled_dot_product_attention(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, temperature: float = 1.0
) -> tuple[Tensor, Tensor]:
    """Return ``(output, weights)`` of softmax(q k^T / sqrt(d_k) / temperature) v.

    Shapes: ``q`` (..., n_q, d_k), ``k`` (..., n_k, d_k), ``v`` (..., n_k, d_v); ``output``
    (..., n_q, d_v) and ``weights`` (..., n_q, n_k), each row of weights summing to 1.
    ``mask`` is boolean and broadcastable to the weights, ``True`` = may attend; a fully
    masked row gets zero weights and a zero output. ``temperature`` > 1 flattens the
    weights, < 1 sharpens them (1 = the standard attention).

    Chapter: Attention from scratch.
    """
    d_k = q.size(-1)
    scores = q @ k.transpose(-2, -1) / (math.sqrt(d_k) * temperature)
    if mask is None:
        weights = torch.softmax(scores, dim=-1)
    else:
        mask = mask.to(torch.bool)
        scores = scores.masked_fill(~mask, float("-inf"))
        # A row with no visible key would be softmax(-inf, ..., -inf) = NaN: give it finite
        # scores, then zero its weights below, so it contributes (and back-propagates) nothing.
        any_visible = mask.any(dim=-1, keepdim=True)
        scores = scores.masked_fill(~any_visible, 0.0)
        weights = torch.softmax(scores, dim=-1).masked_fill(~mask, 0.0)
    return weights @ v, weights


def padding_mask(lengths_or_attention_mask: Tensor, max_len: int | None = None) -> Tensor:
    """Boolean key mask of shape (batch, 1, n): ``True`` at real tokens, ``False`` at padding.

    Accepts either a 1-D tensor of sequence lengths (``max_len`` defaults to the longest)
    or a 2-D Hugging Face ``attention_mask`` (batch, n) of 1 (token) / 0 (padding). The
    middle axis broadcasts over queries, so the result masks scores of shape
    (batch, n_q, n); use ``.unsqueeze(1)`` for scores with a head axis (batch, h, n_q, n).

    Chapter: Attention from scratch.
    """
    x = lengths_or_attention_mask
    if x.dim() == 1:
        n = int(x.max()) if max_len is None else max_len
        keep = torch.arange(n, device=x.device)[None, :] < x[:, None]
    elif x.dim() == 2:
        keep = x.to(torch.bool)
    else:
        raise ValueError(f"expected lengths (batch,) or attention_mask (batch, n), got {tuple(x.shape)}")
    return keep[:, None, :]


def causal_mask(n: int, device: torch.device | str | None = None) -> Tensor:
    """Boolean (n, n) mask, ``True`` on and below the diagonal: token i sees tokens 0..i.

    Chapter: Attention from scratch.
    """
    return torch.ones(n, n, dtype=torch.bool, device=device).tril()


class MultiHeadAttention(nn.Module):
    """Multi-head attention: h scaled dot-product attentions on d_model/h-dim projections.

    ``forward`` returns ``(output, weights)`` with weights per head (batch, h, n_q, n_k).
    :meth:`load_from_torch` / :meth:`to_torch` copy the weights from / to a
    ``torch.nn.MultiheadAttention(d_model, h, batch_first=True)``.

    Chapter: Attention from scratch.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, bias: bool = True) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.d_model, self.n_heads, self.d_head = d_model, n_heads, d_model // n_heads
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def _split(self, x: Tensor) -> Tensor:  # (b, n, d_model) -> (b, h, n, d_head)
        b, n, _ = x.shape
        return x.view(b, n, self.n_heads, self.d_head).transpose(1, 2)

    def forward(
        self,
        query: Tensor,
        key: Tensor | None = None,
        value: Tensor | None = None,
        mask: Tensor | None = None,
        attention_mask: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Attend from ``query`` (b, n_q, d_model) to ``key``/``value`` (default: self-attention).

        ``mask``: boolean, broadcastable to (b, h, n_q, n_k), ``True`` = may attend (e.g.
        :func:`causal_mask`). ``attention_mask``: (b, n_k), 1 = real token, 0 = padding.
        """
        key = query if key is None else key
        value = key if value is None else value
        q, k, v = self._split(self.q_proj(query)), self._split(self.k_proj(key)), self._split(self.v_proj(value))
        if attention_mask is not None:
            pad = padding_mask(attention_mask).unsqueeze(1)  # (b, 1, 1, n_k)
            mask = pad if mask is None else mask.to(torch.bool) & pad
        out, weights = scaled_dot_product_attention(q, k, v, mask)
        if self.dropout.p and self.training:  # dropout on the weights, as in torch and BERT
            out = self.dropout(weights) @ v
        b, _, n_q, _ = out.shape
        out = out.transpose(1, 2).reshape(b, n_q, self.d_model)  # concatenate the heads
        return self.out_proj(out), weights

    @torch.no_grad()
    def load_from_torch(self, mha: nn.MultiheadAttention) -> MultiHeadAttention:
        """Copy the weights of a ``torch.nn.MultiheadAttention`` into this module."""
        if not mha._qkv_same_embed_dim or mha.embed_dim != self.d_model or mha.num_heads != self.n_heads:
            raise ValueError("need nn.MultiheadAttention(d_model, n_heads) with kdim = vdim = d_model")
        for proj, w in zip((self.q_proj, self.k_proj, self.v_proj), mha.in_proj_weight.chunk(3), strict=True):
            proj.weight.copy_(w)
        if mha.in_proj_bias is not None:
            for proj, b in zip((self.q_proj, self.k_proj, self.v_proj), mha.in_proj_bias.chunk(3), strict=True):
                proj.bias.copy_(b)
        self.out_proj.load_state_dict(mha.out_proj.state_dict())
        return self

    @torch.no_grad()
    def to_torch(self) -> nn.MultiheadAttention:
        """A ``torch.nn.MultiheadAttention(batch_first=True)`` with this module's weights."""
        p = self.q_proj.weight
        mha = nn.MultiheadAttention(
            self.d_model, self.n_heads, dropout=self.dropout.p, bias=self.q_proj.bias is not None,
            batch_first=True, device=p.device, dtype=p.dtype,
        )
        mha.in_proj_weight.copy_(torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight]))
        if mha.in_proj_bias is not None:
            mha.in_proj_bias.copy_(torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias]))
        mha.out_proj.load_state_dict(self.out_proj.state_dict())
        return mha


def sinusoidal_positional_encoding(n_positions: int, d_model: int) -> Tensor:
    """The (n_positions, d_model) sinusoids of Vaswani et al. (2017).

    PE[pos, 2i] = sin(pos / 10000^(2i/d_model)), PE[pos, 2i+1] = cos(pos / 10000^(2i/d_model)):
    every value lies in [-1, 1], and row 0 is (0, 1, 0, 1, ...).

    Chapter: Attention from scratch.
    """
    pos = torch.arange(n_positions, dtype=torch.float64)[:, None]
    inv_freq = 10000.0 ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    angles = pos * inv_freq  # (n_positions, ceil(d_model / 2))
    pe = torch.zeros(n_positions, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angles)
    pe[:, 1::2] = torch.cos(angles[:, : d_model // 2])
    return pe.to(torch.get_default_dtype())


class TransformerEncoderBlock(nn.Module):
    """One post-LN encoder layer, as in the original Transformer and BERT.

    ``x = LayerNorm(x + Dropout(MultiHeadAttention(x)))``, then
    ``x = LayerNorm(x + Dropout(W2 Dropout(act(W1 x))))``. ``forward`` returns
    ``(output, weights)``. :meth:`load_from_torch` / :meth:`to_torch` exchange weights with
    ``torch.nn.TransformerEncoderLayer(batch_first=True, norm_first=False)``, and
    :meth:`load_from_bert` loads a layer of a pretrained Hugging Face BERT.

    Chapter: Attention from scratch.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int,
        dropout: float = 0.1,
        activation: Literal["relu", "gelu"] = "relu",
        layer_norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if activation not in ("relu", "gelu"):
            raise ValueError(f"activation must be 'relu' or 'gelu', got {activation!r}")
        self.activation = activation
        self.attn = MultiHeadAttention(d_model, n_heads, dropout=dropout)
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.ff1 = nn.Linear(d_model, d_ff)
        self.ff2 = nn.Linear(d_ff, d_model)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.dropout = nn.Dropout(dropout)  # on the residual branches
        self.ff_dropout = nn.Dropout(dropout)  # inside the feed-forward

    def feed_forward(self, x: Tensor) -> Tensor:
        """The position-wise feed-forward network W2 act(W1 x + b1) + b2."""
        act = F.relu if self.activation == "relu" else F.gelu
        return self.ff2(self.ff_dropout(act(self.ff1(x))))

    def forward(
        self, x: Tensor, mask: Tensor | None = None, attention_mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """``x`` (b, n, d_model) -> (output of the same shape, attention weights (b, h, n, n))."""
        a, weights = self.attn(x, mask=mask, attention_mask=attention_mask)
        x = self.norm1(x + self.dropout(a))
        x = self.norm2(x + self.dropout(self.feed_forward(x)))
        return x, weights

    @torch.no_grad()
    def load_from_torch(self, layer: nn.TransformerEncoderLayer) -> TransformerEncoderBlock:
        """Copy the weights of a ``torch.nn.TransformerEncoderLayer`` into this block."""
        if layer.norm_first:
            raise ValueError("this block is post-LN: need TransformerEncoderLayer(norm_first=False)")
        self.attn.load_from_torch(layer.self_attn)
        for mine, theirs in ((self.ff1, layer.linear1), (self.ff2, layer.linear2),
                             (self.norm1, layer.norm1), (self.norm2, layer.norm2)):
            mine.load_state_dict(theirs.state_dict())
        return self

    @torch.no_grad()
    def load_from_bert(self, layer: nn.Module) -> TransformerEncoderBlock:
        """Copy a Hugging Face ``BertLayer`` (e.g. ``model.encoder.layer[0]``) into this block.

        BERT's layer is exactly this post-LN block with GELU: build the block with the
        model's ``hidden_size``, ``num_attention_heads``, ``intermediate_size`` and
        ``activation="gelu"``; the LayerNorm epsilon (1e-12 in BERT) is copied along.
        """
        attn, self_out = layer.attention.self, layer.attention.output
        pairs = ((self.attn.q_proj, attn.query), (self.attn.k_proj, attn.key),
                 (self.attn.v_proj, attn.value), (self.attn.out_proj, self_out.dense),
                 (self.norm1, self_out.LayerNorm), (self.ff1, layer.intermediate.dense),
                 (self.ff2, layer.output.dense), (self.norm2, layer.output.LayerNorm))
        for mine, theirs in pairs:
            mine.load_state_dict(theirs.state_dict())
        self.norm1.eps, self.norm2.eps = self_out.LayerNorm.eps, layer.output.LayerNorm.eps
        return self

    @torch.no_grad()
    def to_torch(self) -> nn.TransformerEncoderLayer:
        """A ``torch.nn.TransformerEncoderLayer(batch_first=True)`` with this block's weights."""
        p = self.ff1.weight
        layer = nn.TransformerEncoderLayer(
            self.attn.d_model, self.attn.n_heads, dim_feedforward=self.ff1.out_features,
            dropout=self.dropout.p, activation=self.activation, layer_norm_eps=self.norm1.eps,
            batch_first=True, norm_first=False, device=p.device, dtype=p.dtype,
        )
        layer.self_attn.load_state_dict(self.attn.to_torch().state_dict())
        for mine, theirs in ((self.ff1, layer.linear1), (self.ff2, layer.linear2),
                             (self.norm1, layer.norm1), (self.norm2, layer.norm2)):
            theirs.load_state_dict(mine.state_dict())
        return layer


# --------------------------------------------------------------------------------------------
# Plot helpers for the chapter (matplotlib is imported lazily).


def plot_attention(
    weights: Tensor,
    tokens: list[str],
    keys: list[str] | None = None,
    ax: Axes | None = None,
    title: str | None = None,
    cmap: str = "viridis",
    annotate: bool = False,
    colorbar: bool = False,
) -> Axes:
    """Heatmap of a (n_q, n_k) attention matrix: rows = queries (``tokens``), columns = keys.

    ``keys`` default to ``tokens`` (self-attention). ``annotate`` writes each weight in its
    cell; ``colorbar`` adds a colour scale. Colours run from 0 to the largest weight.

    Chapter: Attention from scratch.
    """
    import matplotlib.pyplot as plt

    w = weights.detach().float().cpu().numpy()
    keys = tokens if keys is None else keys
    if ax is None:
        size = max(3.0, 0.35 * max(len(tokens), len(keys)) + 1.5)
        _, ax = plt.subplots(figsize=(size, size))
    im = ax.imshow(w, cmap=cmap, vmin=0.0, vmax=max(float(w.max()), 1e-12), aspect="equal")
    ax.set_xticks(range(len(keys)), keys, rotation=90)
    ax.set_yticks(range(len(tokens)), tokens)
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query (attending)")
    if annotate:
        for i in range(w.shape[0]):
            for j in range(w.shape[1]):
                ax.text(j, i, f"{w[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if w[i, j] < 0.6 * w.max() else "black")
    if colorbar:
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="attention weight")
    if title:
        ax.set_title(title)
    return ax
