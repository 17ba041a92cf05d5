"""nerbook.multimodal: the contrastive loss, late fusion, cross-attention fusion, text features.

Expectations are computed independently: InfoNCE by explicit sums of exponentials, late fusion
by Bayes' rule on a small table, masking by perturbing what must not matter.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from nerbook.multimodal import (
    CrossAttentionFusion,
    encode_texts,
    info_nce,
    late_fusion,
    load_text_encoder,
    mean_pool,
)


def info_nce_by_hand(a: list[list[float]], b: list[list[float]], t: float) -> float:
    """Both directions of CLIP's loss with Python floats: normalise, dot, log-sum-exp."""
    def unit(v):
        n = math.sqrt(sum(x * x for x in v))
        return [x / n for x in v]

    a, b = [unit(v) for v in a], [unit(v) for v in b]
    s = [[sum(x * y for x, y in zip(ai, bj)) / t for bj in b] for ai in a]
    n = len(a)
    rows = sum(-s[i][i] + math.log(sum(math.exp(s[i][j]) for j in range(n))) for i in range(n)) / n
    cols = sum(-s[j][j] + math.log(sum(math.exp(s[i][j]) for i in range(n))) for j in range(n)) / n
    return (rows + cols) / 2


def test_info_nce_matches_a_hand_computation_and_the_cross_entropy_form() -> None:
    a = [[1.0, 0.0], [0.6, 0.8], [-1.0, 0.5]]
    b = [[0.9, 0.1], [0.0, 1.0], [-0.5, -0.5]]
    got = info_nce(torch.tensor(a), torch.tensor(b), temperature=0.5)
    assert got.item() == pytest.approx(info_nce_by_hand(a, b, 0.5), rel=1e-6)
    ta, tb = F.normalize(torch.tensor(a), dim=1), F.normalize(torch.tensor(b), dim=1)
    logits = ta @ tb.T / 0.5
    # image->text: softmax over the columns of each row; text->image: over the rows of each column
    i2t = -torch.log_softmax(logits, 1).diagonal().mean()
    t2i = -torch.log_softmax(logits, 0).diagonal().mean()
    assert got.item() == pytest.approx(((i2t + t2i) / 2).item(), rel=1e-6)


def test_info_nce_is_symmetric_small_when_aligned_and_chance_when_not() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(8, 16, generator=g), torch.randn(8, 16, generator=g)
    assert info_nce(a, b).item() == pytest.approx(info_nce(b, a).item(), rel=1e-6)
    assert info_nce(a, a, temperature=0.01).item() < 1e-3      # each row finds itself
    same = torch.ones(8, 16)                                   # nothing to tell apart: log n
    assert info_nce(same, same).item() == pytest.approx(math.log(8), rel=1e-5)


def test_info_nce_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="one shape"):
        info_nce(torch.zeros(3, 4), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="temperature"):
        info_nce(torch.ones(3, 4), torch.ones(3, 4), temperature=0.0)


def test_late_fusion_is_bayes_rule_for_independent_modalities() -> None:
    # Two classes, prior (0.75, 0.25); expert a says p(y|a) = (0.6, 0.4), expert b (0.3, 0.7).
    prior = torch.tensor([0.75, 0.25])
    pa, pb = torch.tensor([[0.6, 0.4]]), torch.tensor([[0.3, 0.7]])
    # p(y|a,b) is proportional to p(y|a) p(y|b) / p(y): (0.24, 1.12), normalised.
    want = torch.tensor([[0.24, 1.12]]) / 1.36
    got = late_fusion(pa.log(), pb.log(), log_prior=prior.log()).exp()
    assert torch.allclose(got, want, atol=1e-6)
    flat = late_fusion(pa.log(), pb.log()).exp()               # uniform prior: product, renormalised
    assert torch.allclose(flat, torch.tensor([[0.18, 0.28]]) / 0.46, atol=1e-6)
    assert torch.allclose(late_fusion(pa.log()).exp(), pa)
    with pytest.raises(ValueError):
        late_fusion()


def test_mean_pool_averages_only_the_real_tokens() -> None:
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    assert mean_pool(hidden, torch.tensor([[1, 1, 0]])).tolist() == [[2.0, 3.0]]


def test_cross_attention_fusion_shapes_and_padding() -> None:
    torch.manual_seed(0)
    fuse = CrossAttentionFusion(d_query=16, d_context=12, d_model=8, n_heads=2).eval()
    query, context = torch.randn(3, 4, 16), torch.randn(3, 5, 12)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]])
    out, weights = fuse(query, context, mask)
    assert out.shape == (3, 4, 8) and weights.shape == (3, 2, 4, 5)
    assert torch.allclose(weights.sum(-1), torch.ones(3, 2, 4))
    assert (weights[1, :, :, 2:] == 0).all() and (weights[2, :, :, 1:] == 0).all()
    # Whatever sits at the padded positions changes nothing.
    noisy = context.clone()
    noisy[1, 2:] = 1e3 * torch.randn(3, 12)
    noisy[2, 1:] = -1e3
    assert torch.allclose(fuse(query, noisy, mask)[0], out, atol=1e-6)
    # A context of one real token: every query attends to it with weight 1.
    assert torch.allclose(weights[2, :, :, 0], torch.ones(2, 4))
    # No mask = every token real.
    assert torch.allclose(fuse(query, context)[0], fuse(query, context, torch.ones(3, 5))[0])


def test_cross_attention_fusion_learns_from_the_context() -> None:
    """Gradients reach both projections: the fused output depends on the context tokens."""
    torch.manual_seed(0)
    fuse = CrossAttentionFusion(4, 6, d_model=8, n_heads=2)
    out, _ = fuse(torch.randn(2, 3, 4), torch.randn(2, 5, 6))
    out.sum().backward()
    assert fuse.context_proj.weight.grad.abs().sum() > 0
    assert fuse.query_proj.weight.grad.abs().sum() > 0


@pytest.fixture(scope="module")
def encoder():
    return load_text_encoder("offline")


def test_encode_texts_pools_normalises_and_reuses_duplicates(encoder) -> None:
    model, tokenizer = encoder
    assert not any(p.requires_grad for p in model.parameters()) and not model.training
    texts = ["an even number", "the digit is odd and large", "an even number"]
    feats = encode_texts(texts, model, tokenizer)
    n_tok = len(tokenizer("the digit is odd and large")["input_ids"])
    assert feats.tokens.shape == (3, n_tok, model.config.hidden_size)
    assert feats.mask.sum(1).tolist() == [len(tokenizer(t)["input_ids"]) for t in texts]
    assert torch.allclose(feats.sentence.norm(dim=1), torch.ones(3))
    assert torch.equal(feats.sentence[0], feats.sentence[2])
    # Padding to the longest text does not change a sentence's vector: encode it alone.
    alone = encode_texts(["an even number"], model, tokenizer)
    assert torch.allclose(alone.sentence[0], feats.sentence[0], atol=1e-5)
    # Different meanings, different vectors; the same meaning in other words, closer.
    s = encode_texts(["an even number", "a number divisible by two", "a photo of a cat"],
                     model, tokenizer).sentence
    assert s[0] @ s[1] > s[0] @ s[2]
    with pytest.raises(ValueError):
        encode_texts([], model, tokenizer)
