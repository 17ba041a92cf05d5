"""nerbook.attribution: gradient x input, integrated gradients and the randomisation sanity check.

Expectations computed independently of the module: the score ``f`` from ``model(input_ids)``
(not ``inputs_embeds``), perturbations through a forward hook on the embedding layer
(:func:`nerbook.adversarial.perturbed_embeddings`), central finite differences in float64, the
one-step integral by hand, and Spearman's correlation by hand and from scipy.
"""

from __future__ import annotations

import copy
import math
import random
from contextlib import nullcontext

import pytest
import torch

from nerbook.adversarial import perturbed_embeddings
from nerbook.attribution import (
    attribution_sanity,
    gradient_x_input,
    integrated_gradients,
    randomized_copy,
    span_score,
    spearman,
)
from nerbook.data import LabelSchema, tag_names
from nerbook.metrics import spans as entity_spans
from nerbook.model import load_model

WORDS = ["Marianne", "Oppenheimer", "visited", "Kraków", "yesterday", "."]
SPAN = (0, 1)
TAGS = ["B-PER", "I-PER"]


@pytest.fixture(scope="module")
def tiny():
    """A tiny random BERT (float64 for finite differences) and its tokenizer."""
    from nerbook.synthetic import synthetic_sentences

    texts = [s.tokens for s in synthetic_sentences(300, "train", seed=0)]
    model, tok = load_model("tiny", LabelSchema.from_types(), texts=texts, seed=0,
                            tiny_kwargs={"hidden": 32, "layers": 2, "heads": 2})
    return model.double().eval(), tok


def encoded(tok, words=WORDS):
    enc = tok([words], is_split_into_words=True, return_tensors="pt")
    ids = enc.word_ids(0)
    first = [ids.index(w) for w in range(len(words))]
    return enc, ids, first


def hand_f(model, tok, words=WORDS, span=SPAN, tags=TAGS, delta=None) -> torch.Tensor:
    """``f`` through ``input_ids`` and, optionally, a perturbation of the embedding output."""
    enc, _, first = encoded(tok, words)
    tag_ids = [model.config.label2id[t] for t in tags]
    with perturbed_embeddings(model, delta) if delta is not None else nullcontext():
        logp = model(**enc).logits[0].log_softmax(-1)
    return sum(logp[first[w], t] for w, t in zip(range(span[0], span[1] + 1), tag_ids))


def word_mask(ids, w) -> torch.Tensor:
    return torch.tensor([i == w for i in ids], dtype=torch.float64)[None, :, None]


def words_mask(ids) -> torch.Tensor:
    return torch.tensor([i is not None for i in ids], dtype=torch.float64)[None, :, None]


def test_the_score_is_the_log_probability_of_the_tags_at_first_subwords(tiny) -> None:
    model, tok = tiny
    enc, ids, _ = encoded(tok)
    assert len(ids) > len(WORDS) + 2          # some word is split into several subwords
    with torch.no_grad():
        assert span_score(model, tok, WORDS, SPAN, TAGS) == pytest.approx(hand_f(model, tok).item(), abs=1e-9)
        predicted = model(**enc).logits[0].argmax(-1)
    _, _, first = encoded(tok)
    own = [model.config.id2label[predicted[first[w]].item()] for w in (0, 1)]
    assert span_score(model, tok, WORDS, SPAN) == pytest.approx(span_score(model, tok, WORDS, SPAN, own))
    with pytest.raises(ValueError, match="span"):
        span_score(model, tok, WORDS, (4, 6))


def test_gradient_x_input_matches_finite_differences(tiny) -> None:
    """d/de f(x + e * x_w) at 0 is the sum over word w's subwords of grad . x: its attribution."""
    model, tok = tiny
    _, ids, _ = encoded(tok)
    attr = gradient_x_input(model, tok, WORDS, SPAN, TAGS)
    assert len(attr) == len(WORDS)
    eps = 1e-5
    with torch.no_grad():
        for w in range(len(WORDS)):
            up = hand_f(model, tok, delta=lambda out, w=w: eps * word_mask(ids, w) * out)
            down = hand_f(model, tok, delta=lambda out, w=w: -eps * word_mask(ids, w) * out)
            assert attr[w] == pytest.approx(((up - down) / (2 * eps)).item(), rel=1e-5, abs=1e-8)


def test_one_midpoint_step_is_the_difference_times_the_gradient_half_way(tiny) -> None:
    model, tok = tiny
    _, ids, _ = encoded(tok)
    x = model.get_input_embeddings()(encoded(tok)[0]["input_ids"]).detach()
    mask_row = model.get_input_embeddings().weight[tok.mask_token_id].detach()
    for baseline, b in (("zeros", torch.zeros_like(x)), ("mask", mask_row.expand_as(x))):
        b = torch.where(words_mask(ids).bool(), b, x)         # [CLS]/[SEP] stay themselves
        d = (0.5 * (b - x)).requires_grad_(True)               # embedding output -> (x + b) / 2
        (g,) = torch.autograd.grad(hand_f(model, tok, delta=d), d)
        token = ((x - b) * g).sum(-1)[0]
        expected = [token[[i for i, v in enumerate(ids) if v == w]].sum().item() for w in range(len(WORDS))]
        got = integrated_gradients(model, tok, WORDS, SPAN, TAGS, steps=1, baseline=baseline)
        assert got == pytest.approx(expected, rel=1e-7, abs=1e-10)
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("baseline", ["pad", "mask"])
def test_integrated_gradients_are_complete_and_the_gap_shrinks_with_steps(tiny, baseline) -> None:
    model, tok = tiny
    _, ids, _ = encoded(tok)
    emb = model.get_input_embeddings().weight
    row = emb[tok.pad_token_id if baseline == "pad" else tok.mask_token_id].detach()
    with torch.no_grad():
        gain = (hand_f(model, tok) - hand_f(model, tok, delta=lambda out: words_mask(ids) * (row - out))).item()
    assert abs(gain) > 0.02                 # measured: 0.049 (pad), 0.12 (mask)
    gaps = []
    for steps in (4, 16, 64):
        attr, delta = integrated_gradients(model, tok, WORDS, SPAN, TAGS, steps=steps, baseline=baseline,
                                           return_delta=True, batch_size=7)
        assert delta == pytest.approx(sum(attr) - gain, abs=1e-9)   # delta as documented
        gaps.append(abs(delta))
    assert gaps[2] < 1e-2 * abs(gain)
    assert gaps[1] < gaps[0] / 4 and gaps[2] < gaps[1] / 4   # midpoint rule: error O(1 / steps^2)
    _, trapezoid = integrated_gradients(model, tok, WORDS, SPAN, TAGS, steps=64, baseline=baseline,
                                        rule="trapezoid", return_delta=True)
    assert abs(trapezoid) < 1e-2 * abs(gain)


def test_one_float_per_word_and_no_side_effects(tiny) -> None:
    model, tok = copy.deepcopy(tiny[0]).train(), tiny[1]
    frozen = model.get_input_embeddings().weight
    frozen.requires_grad_(False)
    words = ["Zyxwvut", "Qwertyuiopasdf", "met", "Ng", "."]
    assert len(tok(words, is_split_into_words=True)["input_ids"]) > len(words) + 4
    with torch.no_grad():                                     # works inside no_grad as well
        ig = integrated_gradients(model, tok, words, (0, 1), steps=8)
    gxi = gradient_x_input(model, tok, words, (3, 3))
    assert len(ig) == len(gxi) == len(words) and all(isinstance(v, float) for v in ig + gxi)
    assert model.training                                      # its mode back
    assert all(p.grad is None for p in model.parameters())
    assert not frozen.requires_grad and all(p.requires_grad for n, p in model.named_parameters()
                                            if "word_embeddings" not in n)
    assert gradient_x_input(model, tok, words, (3, 3)) == gxi   # eval inside: no dropout noise
    assert gxi == gradient_x_input(model.eval(), tok, words, (3, 3))


def test_randomized_copy_changes_the_top_and_leaves_the_original(tiny) -> None:
    model = tiny[0]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rand = randomized_copy(model, seed=1)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    new = rand.state_dict()
    changed = {k for k in before if not torch.equal(before[k], new[k])}
    assert {"classifier.weight"} <= changed
    assert any(k.startswith("bert.encoder.layer.0.") for k in changed)
    assert any(k.startswith("bert.encoder.layer.1.") for k in changed)
    assert not any(k.startswith("bert.embeddings.") for k in changed)
    again = randomized_copy(model, seed=1).state_dict()
    assert all(torch.equal(new[k], again[k]) for k in new)   # seeded
    top = randomized_copy(model, seed=1, layers=1).state_dict()
    top_changed = {k for k in before if not torch.equal(before[k], top[k])}
    assert "classifier.weight" in top_changed and not any(".layer.0." in k for k in top_changed)
    assert any(".layer.1." in k for k in top_changed)
    head = randomized_copy(model, seed=1, layers=0).state_dict()
    assert {k for k in before if not torch.equal(before[k], head[k])} <= {"classifier.weight", "classifier.bias"}
    with pytest.raises(ValueError, match="layers"):
        randomized_copy(model, layers=3)


def test_spearman_by_hand_and_against_scipy() -> None:
    assert spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    # ties: ranks (1, 2.5, 2.5, 4) against (1, 2, 3, 4): 4.5 / sqrt(4.5 * 5) = 3 / sqrt(10)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(3 / math.sqrt(10))
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3])) and math.isnan(spearman([1], [2]))
    stats = pytest.importorskip("scipy.stats")
    rng = random.Random(0)
    for n in (2, 5, 17, 40):
        a = [rng.randint(0, 5) for _ in range(n)]
        b = [rng.choice([0.5, -1.0, 2.0, rng.random()]) for _ in range(n)]
        if len(set(a)) > 1 and len(set(b)) > 1:
            assert spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic, abs=1e-12)


def test_randomising_the_trained_model_changes_its_attributions(tiny_ckpt, synth) -> None:
    model, tok = load_model(str(tiny_ckpt))
    sentences, spans = [], []
    for words, tags in zip(synth["test"]["tokens"], tag_names(synth["test"])):
        found = entity_spans(tags)
        if found:
            sentences.append(words)
            spans.append(found[0][1:])
        if len(sentences) == 12:
            break
    ig = attribution_sanity(model, tok, sentences, spans, steps=16)
    gxi = attribution_sanity(model, tok, sentences, spans, method="grad_x_input")
    for r in (ig, gxi):
        assert r["n"] == 12 and len(r["per_example"]) == 12
        assert -1 <= r["spearman"] < 0.9 and -1 <= r["spearman_abs"] <= 1
        assert 0 <= r["top_in_span"] <= 1 and 0 <= r["top_in_span_random"] <= 1
    assert ig["top_in_span"] >= 0.75       # the trained model's IG points at the entity itself
    with pytest.raises(ValueError, match="method"):
        attribution_sanity(model, tok, sentences, spans, method="lime")
