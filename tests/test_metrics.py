"""nerbook.metrics: entity-level scores identical to seqeval/conlleval, token-level contrast."""

from __future__ import annotations

import random

import pytest
from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
from seqeval.scheme import IOB2

from nerbook.metrics import confusion, entity_errors, entity_scores, token_scores

GOLD = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-ORG", "I-ORG", "I-ORG", "O", "B-MISC"]]


def perturb(gold, seed):
    """Predictions with boundary errors, type errors and I- starts."""
    rng = random.Random(seed)
    types = ["PER", "ORG", "LOC", "MISC"]
    out = []
    for sent in gold:
        pred = []
        for t in sent:
            r = rng.random()
            if r < 0.1:
                pred.append("I-" + rng.choice(types))  # I- start / continuation noise
            elif r < 0.2 and t != "O":
                pred.append(t[:2] + rng.choice(types))  # type error
            elif r < 0.25:
                pred.append("O")  # boundary error / miss
            else:
                pred.append(t)
        out.append(pred)
    return out


@pytest.mark.parametrize("seed", range(5))
def test_entity_scores_identical_to_seqeval(seed, synth):
    from nerbook.data import tag_names

    gold = tag_names(synth["valid"])
    pred = perturb(gold, seed)
    ours = entity_scores(gold, pred)
    assert ours["overall"]["precision"] == pytest.approx(precision_score(gold, pred), abs=1e-12)
    assert ours["overall"]["recall"] == pytest.approx(recall_score(gold, pred), abs=1e-12)
    assert ours["overall"]["f1"] == pytest.approx(f1_score(gold, pred), abs=1e-12)
    rep = classification_report(gold, pred, output_dict=True)
    for typ, s in ours["per_type"].items():
        assert s["f1"] == pytest.approx(rep[typ]["f1-score"], abs=1e-12)
    strict = entity_scores(gold, pred, mode="strict")
    assert strict["overall"]["f1"] == pytest.approx(f1_score(gold, pred, mode="strict", scheme=IOB2), abs=1e-12)
    assert strict["overall"]["f1"] != ours["overall"]["f1"]  # I- starts count only in conlleval mode


def test_i_start_counts_as_entity_in_conlleval_mode():
    gold = [["B-PER", "I-PER", "O"]]
    pred = [["I-PER", "I-PER", "O"]]
    assert entity_scores(gold, pred)["overall"]["f1"] == 1.0
    assert entity_scores(gold, pred, mode="strict")["overall"]["f1"] == 0.0


def test_token_level_flatters_an_all_o_predictor():
    pred = [["O"] * len(s) for s in GOLD]
    assert token_scores(GOLD, pred)["accuracy"] == pytest.approx(3 / 10)
    big_gold = [["O"] * 30 + ["B-PER"]] * 4
    big_pred = [["O"] * 31] * 4
    assert token_scores(big_gold, big_pred)["accuracy"] > 0.96
    assert entity_scores(big_gold, big_pred)["overall"]["f1"] == 0.0


def test_errors_are_classified():
    gold = [["B-PER", "I-PER", "O", "B-LOC", "O", "B-ORG", "O", "O"]]
    pred = [["B-PER", "O", "O", "B-ORG", "O", "B-ORG", "O", "B-MISC"]]
    e = entity_errors(gold, pred)["counts"]
    assert e == {"correct": 1, "boundary": 1, "type": 1, "spurious": 1, "boundary+type": 0, "missed": 0}
    assert entity_errors([["B-PER"]], [["O"]])["counts"]["missed"] == 1


def test_confusion_and_length_checks():
    labels = ["O", "B-PER", "I-PER", "B-LOC", "B-ORG", "I-ORG", "B-MISC"]
    m = confusion(GOLD, GOLD, labels)
    assert m.sum() == 10 and (m.diagonal().sum() == 10)
    with pytest.raises(ValueError, match="sentence 0"):
        entity_scores([["O", "O"]], [["O"]])
