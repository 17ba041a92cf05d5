"""Attention from scratch (nerbook.attention) agrees with PyTorch's implementations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nerbook.attention import (
    MultiHeadAttention,
    TransformerEncoderBlock,
    causal_mask,
    padding_mask,
    scaled_dot_product_attention,
    sinusoidal_positional_encoding,
)

B, H, N, D = 3, 4, 7, 16


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _qkv(dtype: torch.dtype, n_q: int = N, n_k: int = N) -> tuple[torch.Tensor, ...]:
    return (torch.randn(B, H, n_q, D, dtype=dtype), torch.randn(B, H, n_k, D, dtype=dtype),
            torch.randn(B, H, n_k, 5, dtype=dtype))


def _masks() -> dict[str, torch.Tensor | None]:
    pad = padding_mask(torch.tensor([7, 4, 1])).unsqueeze(1)  # (B, 1, 1, N)
    return {
        "none": None,
        "padding": pad,
        "causal": causal_mask(N),
        "padding+causal": pad & causal_mask(N),
        "random": torch.rand(B, H, N, N) > 0.3,
    }


@pytest.mark.parametrize("dtype,atol", [(torch.float64, 1e-6), (torch.float32, 1e-5)])
@pytest.mark.parametrize("mask_name", list(_masks()))
def test_sdpa_matches_torch(dtype: torch.dtype, atol: float, mask_name: str) -> None:
    q, k, v = _qkv(dtype)
    mask = _masks()[mask_name]
    out, weights = scaled_dot_product_attention(q, k, v, mask)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(out, ref, atol=atol, rtol=atol)
    assert weights.shape == (B, H, N, N)
    visible = torch.ones(B, H, N, N, dtype=torch.bool) if mask is None else mask.expand(B, H, N, N)
    has_key = visible.any(-1)
    torch.testing.assert_close(weights.sum(-1)[has_key], torch.ones_like(weights.sum(-1)[has_key]))
    assert (weights[~visible] == 0).all()


def test_sdpa_cross_attention_shapes() -> None:
    q, k, v = _qkv(torch.float64, n_q=3, n_k=9)
    out, weights = scaled_dot_product_attention(q, k, v)
    assert out.shape == (B, H, 3, 5) and weights.shape == (B, H, 3, 9)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v))


def test_sdpa_fully_masked_row_is_zero_not_nan() -> None:
    q, k, v = _qkv(torch.float64)
    q.requires_grad_(True)
    mask = torch.ones(N, N, dtype=torch.bool)
    mask[2] = False  # query 2 may see nothing
    out, weights = scaled_dot_product_attention(q, k, v, mask)
    assert torch.isfinite(out).all() and torch.isfinite(weights).all()
    assert (weights[..., 2, :] == 0).all() and (out[..., 2, :] == 0).all()
    out.sum().backward()
    assert torch.isfinite(q.grad).all()
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))


def test_sdpa_temperature() -> None:
    q, k, v = _qkv(torch.float64)
    _, w1 = scaled_dot_product_attention(q, k, v)
    _, w2 = scaled_dot_product_attention(q, k, v, temperature=2.0)
    torch.testing.assert_close(w2, torch.softmax(torch.log(w1) / 2.0, dim=-1))


def test_masks() -> None:
    m = causal_mask(4)
    assert m.dtype == torch.bool and m.shape == (4, 4)
    assert m.tril().equal(m) and m.diagonal().all()
    assert not m.triu(1).any()
    by_len = padding_mask(torch.tensor([3, 1]), max_len=4)
    by_attn = padding_mask(torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]]))
    assert by_len.shape == (2, 1, 4) and by_len.equal(by_attn)
    assert by_len.sum().item() == 4
    with pytest.raises(ValueError):
        padding_mask(torch.ones(2, 3, 4))


def test_causal_weights_zero_above_diagonal() -> None:
    q, k, v = _qkv(torch.float64)
    _, weights = scaled_dot_product_attention(q, k, v, causal_mask(N))
    assert (weights.triu(1) == 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(B, H, N, dtype=torch.float64))
    assert (weights[..., 0, 0] == 1).all()  # the first token can only see itself


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("use_padding", [False, True])
@pytest.mark.parametrize("use_causal", [False, True])
def test_mha_matches_torch(bias: bool, use_padding: bool, use_causal: bool) -> None:
    d_model, heads = 32, 4
    ref = nn.MultiheadAttention(d_model, heads, bias=bias, batch_first=True, dtype=torch.float64).eval()
    mine = MultiHeadAttention(d_model, heads, bias=bias).double().load_from_torch(ref).eval()
    x = torch.randn(B, N, d_model, dtype=torch.float64)
    attn = torch.tensor([[1] * N, [1] * 5 + [0] * 2, [1] * 2 + [0] * 5])
    kw_mine: dict = {}
    kw_ref: dict = {"average_attn_weights": False}
    if use_padding:
        kw_mine["attention_mask"] = attn
        kw_ref["key_padding_mask"] = attn == 0  # torch: True = ignore
    if use_causal:
        kw_mine["mask"] = causal_mask(N)
        kw_ref["attn_mask"] = ~causal_mask(N)  # torch: True = ignore
    out, w = mine(x, **kw_mine)
    ref_out, ref_w = ref(x, x, x, **kw_ref)
    assert out.shape == (B, N, d_model) and w.shape == (B, heads, N, N)
    torch.testing.assert_close(out, ref_out, atol=1e-10, rtol=1e-8)
    torch.testing.assert_close(w, ref_w, atol=1e-10, rtol=1e-8)
    torch.testing.assert_close(w.sum(-1), torch.ones(B, heads, N, dtype=torch.float64))


def test_mha_float32_and_cross_attention() -> None:
    mine = MultiHeadAttention(24, 3).eval()
    ref = mine.to_torch().eval()
    q, kv = torch.randn(2, 5, 24), torch.randn(2, 9, 24)
    out, w = mine(q, kv)
    ref_out, ref_w = ref(q, kv, kv, average_attn_weights=False)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w, ref_w, atol=1e-5, rtol=1e-5)
    # round trip torch -> mine -> torch keeps every weight
    back = MultiHeadAttention(24, 3).load_from_torch(ref).to_torch()
    for (name, a), (_, b) in zip(ref.state_dict().items(), back.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_mha_rejects_bad_heads() -> None:
    with pytest.raises(ValueError):
        MultiHeadAttention(10, 3)


def test_sinusoidal_positional_encoding() -> None:
    pe = sinusoidal_positional_encoding(50, 16)
    assert pe.shape == (50, 16) and pe.dtype == torch.float32
    assert torch.equal(pe[0, 0::2], torch.zeros(8)) and torch.equal(pe[0, 1::2], torch.ones(8))
    assert pe.abs().max() <= 1.0
    # (sin, cos) pairs lie on the unit circle; dimension 0 is sin(pos), dimension 1 cos(pos)
    torch.testing.assert_close(pe[:, 0::2] ** 2 + pe[:, 1::2] ** 2, torch.ones(50, 8))
    torch.testing.assert_close(pe[:, 0], torch.sin(torch.arange(50.0)))
    assert math.isclose(pe[3, 2].item(), math.sin(3 / 10000 ** (2 / 16)), abs_tol=1e-6)
    odd = sinusoidal_positional_encoding(5, 7)
    assert odd.shape == (5, 7)
    torch.testing.assert_close(odd[:, 6], torch.sin(torch.arange(5.0) / 10000 ** (6 / 7)))


@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_encoder_block_matches_torch(activation: str) -> None:
    d_model, heads, d_ff = 32, 4, 64
    ref = nn.TransformerEncoderLayer(d_model, heads, d_ff, dropout=0.0, activation=activation,
                                     batch_first=True, norm_first=False, dtype=torch.float64)
    mine = TransformerEncoderBlock(d_model, heads, d_ff, dropout=0.0, activation=activation)
    mine = mine.double().load_from_torch(ref)
    # train mode keeps torch off its fused inference fast path; dropout is 0 anyway
    ref.train()
    mine.train()
    x = torch.randn(B, N, d_model, dtype=torch.float64)
    attn = torch.tensor([[1] * N, [1] * 5 + [0] * 2, [1] * 2 + [0] * 5])
    out, w = mine(x, attention_mask=attn)
    assert out.shape == (B, N, d_model) and w.shape == (B, heads, N, N)
    ref_out = ref(x, src_key_padding_mask=attn == 0)
    torch.testing.assert_close(out, ref_out, atol=1e-10, rtol=1e-8)
    out_c, _ = mine(x, mask=causal_mask(N))
    torch.testing.assert_close(out_c, ref(x, src_mask=~causal_mask(N)), atol=1e-10, rtol=1e-8)
    # and back: to_torch gives the same function
    back = mine.to_torch().train()
    torch.testing.assert_close(back(x), mine(x)[0], atol=1e-10, rtol=1e-8)


def test_encoder_block_float32_eval_and_dropout() -> None:
    block = TransformerEncoderBlock(16, 2, 32, dropout=0.5).eval()
    x = torch.randn(2, 6, 16)
    with torch.no_grad():
        torch.testing.assert_close(block(x)[0], block.to_torch().eval()(x), atol=1e-5, rtol=1e-5)
    block.train()
    a, b = block(x)[0], block(x)[0]
    assert not torch.allclose(a, b)  # dropout is active in training
    # post-LN: every output vector is layer-normalised (mean 0, std 1 with default affine)
    torch.testing.assert_close(a.mean(-1), torch.zeros(2, 6), atol=1e-5, rtol=0)


def test_encoder_block_matches_hf_bert_layers() -> None:
    """A tiny random BERT: our block, loaded layer by layer, reproduces every hidden state."""
    from transformers import BertConfig, BertModel

    cfg = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=48, hidden_act="gelu", max_position_embeddings=16,
                     attn_implementation="eager")
    bert = BertModel(cfg, add_pooling_layer=False).eval()
    ids = torch.randint(1, 50, (2, 9))
    attn = torch.ones(2, 9, dtype=torch.long)
    attn[1, 6:] = 0
    with torch.no_grad():
        out = bert(input_ids=ids, attention_mask=attn, output_hidden_states=True, output_attentions=True)
        for i, layer in enumerate(bert.encoder.layer):
            block = TransformerEncoderBlock(32, 4, 48, dropout=0.0, activation="gelu").load_from_bert(layer).eval()
            assert block.norm1.eps == cfg.layer_norm_eps
            h, w = block(out.hidden_states[i], attention_mask=attn)
            real = attn.bool()  # hidden states at padding positions are not meaningful
            torch.testing.assert_close(h[real], out.hidden_states[i + 1][real], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(w, out.attentions[i], atol=1e-6, rtol=1e-5)
