"""nerbook.calibration: checked against hand computations and a generic optimiser (scipy)."""

from __future__ import annotations

import math
import random

import pytest
import torch

from nerbook.calibration import (
    entity_confidences,
    expected_calibration_error,
    fit_temperature,
    reliability_bins,
    span_correct,
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
