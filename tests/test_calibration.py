"""nerbook.calibration: checked against hand computations and a generic optimiser (scipy)."""

from __future__ import annotations

import math
import random

import pytest
import torch

from nerbook.calibration import (
    abstain,
    entity_confidences,
    entity_outcomes,
    expected_calibration_error,
    fit_temperature,
    nll,
    precision_at_coverage,
    reliability_bins,
    risk_coverage,
    span_correct,
    tags_and_probs,
)


def test_entity_confidences_take_the_least_sure_word_or_the_product():
    tags = [["B-PER", "I-PER", "O", "B-LOC"], ["O"]]
    probs = [[0.9, 0.6, 0.99, 0.8], [0.7]]
    assert entity_confidences(tags, probs) == [[("PER", 0, 1, 0.6), ("LOC", 3, 3, 0.8)], []]
    prod = entity_confidences(tags, probs, how="product")
    assert prod[0][0][3] == pytest.approx(0.54) and prod[0][1][3] == pytest.approx(0.8)
    with pytest.raises(ValueError):
        entity_confidences(tags, probs, how="mean")
    with pytest.raises(ValueError):
        entity_confidences([["O", "O"]], [[0.5]])


def test_span_correct_needs_type_and_boundaries():
    gold = [["B-PER", "I-PER", "O", "B-LOC"]]
    pred = [[("PER", 0, 1, 0.6), ("LOC", 3, 3, 0.8), ("ORG", 2, 2, 0.5)]]
    assert span_correct(gold, pred) == [[True, True, False]]
    assert span_correct(gold, [[("PER", 0, 0, 0.9)]]) == [[False]]  # a boundary error is wrong


def test_ece_by_hand():
    # bin [0.9, 1.0): confidence 0.9, accuracy 1/2; bin [0.6, 0.7): confidence 0.6, accuracy 1
    conf, ok = [0.9, 0.9, 0.6, 0.6], [True, False, True, True]
    bins = reliability_bins(conf, ok)
    assert [(b["count"], b["confidence"], b["accuracy"]) for b in bins] == [(2, 0.6, 1.0), (2, 0.9, 0.5)]
    assert expected_calibration_error(conf, ok) == pytest.approx(2 / 4 * 0.4 + 2 / 4 * 0.4)
    assert reliability_bins([1.0], [True])[0]["low"] == 0.9  # exactly 1 goes to the last bin


def test_ece_is_near_zero_when_confidence_is_the_chance_of_being_right():
    rng = random.Random(0)
    conf = [rng.random() for _ in range(20000)]
    ok = [rng.random() < c for c in conf]
    assert expected_calibration_error(conf, ok) < 0.02
    assert expected_calibration_error(conf, [True] * len(conf)) == pytest.approx(1 - sum(conf) / len(conf), abs=0.01)


def test_bad_calibration_input_raises():
    with pytest.raises(ValueError):
        reliability_bins([0.5], [True, False])
    with pytest.raises(ValueError):
        reliability_bins([1.5], [True])
    with pytest.raises(ValueError):
        expected_calibration_error([], [])


def overconfident(n=4000, classes=5, scale=3.0, seed=0):
    """Labels drawn from softmax(z); the model reports z * scale: overconfident by T = scale."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, classes, generator=g) * 1.5
    y = torch.multinomial(z.softmax(-1), 1, generator=g).squeeze(1)
    return z * scale, y


def test_fit_temperature_recovers_the_overconfidence_and_matches_scipy():
    from scipy.optimize import minimize_scalar

    logits, labels = overconfident()
    t = fit_temperature(logits, labels)
    assert t == pytest.approx(3.0, rel=0.1)

    def nll(temp):
        return torch.nn.functional.cross_entropy(logits / temp, labels).item()

    ref = minimize_scalar(nll, bounds=(0.05, 20.0), method="bounded", options={"xatol": 1e-6}).x
    assert t == pytest.approx(ref, rel=1e-3)
    assert nll(t) <= nll(1.0) and nll(t) <= nll(t * 1.05) and nll(t) <= nll(t / 1.05)


def test_temperature_ignores_unlabelled_positions_and_keeps_the_argmax():
    logits, labels = overconfident(n=600)
    padded_logits = torch.cat([logits, 100 * torch.randn(50, 5)])
    padded_labels = torch.cat([labels, torch.full((50,), -100)])
    assert fit_temperature(padded_logits, padded_labels) == pytest.approx(fit_temperature(logits, labels), rel=1e-4)
    t = fit_temperature(logits, labels)
    assert torch.equal((logits / t).argmax(-1), logits.argmax(-1))
    with pytest.raises(ValueError):
        fit_temperature(logits[:0], labels[:0])


def test_scaled_confidences_are_better_calibrated():
    logits, labels = overconfident(n=8000, seed=1)
    fit, held_out = slice(0, 4000), slice(4000, 8000)
    t = fit_temperature(logits[fit], labels[fit])

    def ece(temp):
        p = (logits[held_out] / temp).softmax(-1)
        conf, pred = p.max(-1)
        return expected_calibration_error(conf.tolist(), (pred == labels[held_out]).tolist())

    assert ece(t) < 0.5 * ece(1.0)
    assert math.isfinite(ece(t))


def test_tagger_temperature_changes_confidence_not_tags(tiny_ckpt, synth):
    from nerbook.predict import Tagger

    ds = synth["test"].select(range(20))
    base = Tagger.from_checkpoint(tiny_ckpt).predict_dataset(ds)
    hot = Tagger.from_checkpoint(tiny_ckpt, temperature=2.0).predict_dataset(ds)
    assert base[0] == hot[0]                                   # the same tags
    pairs = [(a, b) for pa, pb in zip(base[1], hot[1]) for a, b in zip(pa, pb)]
    assert all(b <= a + 1e-6 for a, b in pairs)                # T > 1 flattens: no top probability rises
    assert any(b < a - 1e-3 for a, b in pairs)
    tagger = Tagger.from_checkpoint(tiny_ckpt)
    with pytest.raises(ValueError, match="temperature"):
        Tagger(tagger.model, tagger.tokenizer, temperature=0.0)


def test_word_logits_give_the_tags_and_probabilities(tiny_ckpt, synth):
    from nerbook.predict import Tagger

    ds = synth["test"].select(range(12))
    tagger = Tagger.from_checkpoint(tiny_ckpt, temperature=1.7)
    logits = tagger.word_logits(ds)
    tags, probs = tagger.predict_dataset(ds)
    assert [len(x) for x in logits] == [len(t) for t in ds["tokens"]]
    for lg, t, p in zip(logits, tags, probs):
        assert [tagger.schema.names[i] for i in lg.argmax(-1).tolist()] == t
        # the top probability of softmax(z / T), by hand: 1 / sum_j exp((z_j - z_max) / T)
        by_hand = [1 / sum(math.exp((z - max(row)) / 1.7) for z in row) for row in lg.tolist()]
        assert p == pytest.approx(by_hand, rel=1e-5)


def test_predict_text_scores_an_entity_by_its_least_sure_word(tiny_ckpt):
    from nerbook.predict import Tagger, split_words

    tagger = Tagger.from_checkpoint(tiny_ckpt)
    texts = ["Maria Rossi , the chief executive of Acme Holdings , said on Monday that it would grow .",
             "Jan de Vries told reporters in Rotterdam that Lindqvist AB had no comment ."]
    _, probs = tagger.tag_with_scores([[w for w, _, _ in split_words(t)] for t in texts])
    for text, ents, p in zip(texts, tagger.predict_text(texts), probs):
        words = split_words(text)
        starts = {w[1]: i for i, w in enumerate(words)}
        ends = {w[2]: i for i, w in enumerate(words)}
        for e in ents:
            assert e.score == pytest.approx(min(p[starts[e.start]:ends[e.end] + 1]))
    assert any(ents for ents in tagger.predict_text(texts))


def test_risk_coverage_by_hand():
    conf = [0.9, 0.8, 0.8, 0.6, 0.3]
    ok = [True, True, False, True, False]
    rows = risk_coverage(conf, ok)
    # ties at 0.8 go together: the thresholds are the distinct confidences
    assert [(r["threshold"], r["kept"]) for r in rows] == [(0.9, 1), (0.8, 3), (0.6, 4), (0.3, 5)]
    assert [r["precision"] for r in rows] == pytest.approx([1.0, 2 / 3, 3 / 4, 3 / 5])
    assert [r["coverage"] for r in rows] == pytest.approx([0.2, 0.6, 0.8, 1.0])
    assert precision_at_coverage(conf, ok, 0.5)["threshold"] == 0.8      # 0.2 is too few: the next row
    assert precision_at_coverage(conf, ok, 0.8)["precision"] == pytest.approx(0.75)
    assert precision_at_coverage(conf, ok, 1.0)["kept"] == 5
    with pytest.raises(ValueError, match="coverage"):
        precision_at_coverage(conf, ok, 0.0)
    with pytest.raises(ValueError, match="outcomes"):
        risk_coverage(conf, ok[:2])


def test_risk_falls_with_coverage_when_confidence_is_informative():
    rng = random.Random(0)
    conf = [rng.random() for _ in range(4000)]
    ok = [rng.random() < c for c in conf]                 # right with probability = confidence
    at = {c: precision_at_coverage(conf, ok, c)["precision"] for c in (0.2, 0.5, 1.0)}
    assert at[0.2] > at[0.5] > at[1.0]
    assert at[0.2] == pytest.approx(0.9, abs=0.03)        # the top fifth: mean confidence 0.9
    assert at[1.0] == pytest.approx(0.5, abs=0.03)


def test_abstain_turns_unsure_entities_into_o():
    tags = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    probs = [[0.95, 0.55, 0.99, 0.8], [0.7, 0.9]]
    kept, dropped = abstain(tags, probs, 0.6)
    assert kept == [["O", "O", "O", "B-LOC"], ["B-ORG", "O"]] and dropped == 1
    assert abstain(tags, probs, 0.0) == (tags, 0)
    assert abstain(tags, probs, 0.75)[1] == 2
    assert abstain(tags, probs, 0.75, how="product")[0][0] == ["O", "O", "O", "B-LOC"]


def test_tags_probs_outcomes_and_nll_by_hand():
    names = ["O", "B-PER", "I-PER"]
    logits = [torch.tensor([[0.0, 2.0, 0.0], [0.0, 0.0, 1.0], [3.0, 0.0, 0.0]]), torch.tensor([[0.0, 0.0, 0.0]])]
    tags, probs = tags_and_probs(logits, names, temperature=2.0)
    assert tags == [["B-PER", "I-PER", "O"], ["O"]]
    e1, e05, e15 = math.exp(1.0), math.exp(0.5), math.exp(1.5)  # logits / T
    assert probs[0] == pytest.approx([e1 / (e1 + 2), e05 / (e05 + 2), e15 / (e15 + 2)])
    assert probs[1] == pytest.approx([1 / 3])
    conf, ok = entity_outcomes([["B-PER", "O", "O"], ["O"]], tags, probs)
    assert conf == pytest.approx([e05 / (e05 + 2)]) and ok == [False]   # the gold entity is one word long
    gold_ids = [[1, 2, 0], [1]]
    by_hand = -(math.log(e1 / (e1 + 2)) + math.log(e05 / (e05 + 2)) + math.log(e15 / (e15 + 2)) + math.log(1 / 3)) / 4
    assert nll(logits, gold_ids, temperature=2.0) == pytest.approx(by_hand)
