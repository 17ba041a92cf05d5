"""nerbook.metrics: entity-level scores by conlleval's rules (written out here), token-level contrast."""

from __future__ import annotations

import random

import pytest

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


def conlleval_chunks(tags):
    """Entities of one sentence as ``(type, first, last)``, by the rules of ``conlleval.pl``
    (its ``startOfChunk``/``endOfChunk`` for B/I/O tags), written out independently of nerbook
    and seqeval: an ``I-X`` after ``O`` or after another type starts an entity."""
    out, start, prev, prev_type = [], None, "O", ""
    for i, tag in enumerate([*tags, "O"]):  # a final O closes the last entity
        prefix, typ = ("O", "") if tag == "O" else tag.split("-", 1)
        ends = (prev in "BI" and prefix in "BO") or (prev != "O" and prev_type != typ)
        starts = prefix == "B" or (prev == "O" and prefix == "I") or (prefix != "O" and prev_type != typ)
        if ends and start is not None:
            out.append((prev_type, start, i - 1))
            start = None
        if starts:
            start = i
        prev, prev_type = prefix, typ
    return out


def strict_chunks(tags):
    """Entities well-formed in IOB2: ``B-X`` then ``I-X``...; an ``I-`` that starts nothing is no entity."""
    out, i = [], 0
    while i < len(tags):
        if tags[i].startswith("B-"):
            typ, j = tags[i][2:], i + 1
            while j < len(tags) and tags[j] == "I-" + typ:
                j += 1
            out.append((typ, i, j - 1))
            i = j
        else:
            i += 1
    return out


def reference_scores(gold, pred, chunks=conlleval_chunks):
    """Micro P/R/F1 overall and per type from counts of gold, predicted and exact-match entities."""
    def prf(c, p, g):
        prec, rec = (c / p if p else 0.0), (c / g if g else 0.0)
        return prec, rec, (2 * prec * rec / (prec + rec) if prec + rec else 0.0)

    g_ents = {(s, *e) for s, sent in enumerate(gold) for e in chunks(sent)}
    p_ents = {(s, *e) for s, sent in enumerate(pred) for e in chunks(sent)}
    types = sorted({e[1] for e in g_ents | p_ents})
    per_type = {}
    for t in types:
        g = {e for e in g_ents if e[1] == t}
        p = {e for e in p_ents if e[1] == t}
        per_type[t] = prf(len(g & p), len(p), len(g))
    return prf(len(g_ents & p_ents), len(p_ents), len(g_ents)), per_type


def test_reference_chunkers():
    # conlleval: I- after O or after another type starts an entity; strict: only B- starts one
    assert conlleval_chunks(["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-ORG"]) == [
        ("PER", 0, 1), ("LOC", 3, 3), ("LOC", 4, 4), ("ORG", 5, 5)]
    assert strict_chunks(["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-ORG"]) == [("LOC", 4, 4)]


#: Five sentences with every kind of mistake; entities (type, first, last) in the comments.
FIXTURE_GOLD = [
    ["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O", "B-ORG"],  # PER(0,1) LOC(3,4) ORG(6,6)
    ["O", "B-MISC", "I-MISC", "O", "B-PER"],                  # MISC(1,2) PER(4,4)
    ["B-LOC", "O", "O", "B-PER", "I-PER"],                    # LOC(0,0) PER(3,4)
    ["B-ORG", "B-ORG", "O", "B-MISC"],                        # ORG(0,0) ORG(1,1) MISC(3,3)
    ["O", "O"],                                               # -
]
FIXTURE_PRED = [
    ["B-PER", "I-PER", "O", "B-LOC", "O", "O", "B-LOC"],      # PER(0,1) ok, LOC(3,3) boundary, LOC(6,6) type
    ["O", "I-MISC", "I-MISC", "O", "I-PER"],                  # MISC(1,2) ok, PER(4,4) ok: I- starts after O
    ["I-ORG", "I-LOC", "O", "B-PER", "I-LOC"],                # ORG(0,0) type, LOC(1,1) I- after another type,
                                                              # PER(3,3) + LOC(4,4) boundary + I- after PER
    ["B-ORG", "I-ORG", "O", "O"],                             # ORG(0,1): two gold ORGs merged; MISC missed
    ["B-PER", "O"],                                           # PER(0,0) spurious
]


def test_entity_scores_by_hand_conlleval():
    """conlleval counts: gold 10 (PER 3, LOC 2, ORG 3, MISC 2), predicted 11 (PER 4, LOC 4,
    ORG 2, MISC 1), correct 3 (PER 2: sentences 0 and 1; MISC 1: sentence 1)."""
    s = entity_scores(FIXTURE_GOLD, FIXTURE_PRED)
    approx = pytest.approx
    # overall: P = 3/11, R = 3/10, F1 = 2*3/(11+10) = 2/7
    assert s["overall"] == approx({"precision": 3 / 11, "recall": 3 / 10, "f1": 2 / 7, "support": 10})
    expected = {
        "PER": {"precision": 2 / 4, "recall": 2 / 3, "f1": 2 * 2 / (4 + 3), "support": 3},  # F1 4/7
        "LOC": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2},                 # 0/4, 0/2
        "ORG": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 3},                 # 0/2, 0/3
        "MISC": {"precision": 1 / 1, "recall": 1 / 2, "f1": 2 * 1 / (1 + 2), "support": 2},  # F1 2/3
    }
    assert set(s["per_type"]) == set(expected)
    for typ, scores in expected.items():
        assert s["per_type"][typ] == approx(scores), typ
    # macro = unweighted mean over the four types:
    # P = (1/2 + 0 + 0 + 1) / 4 = 3/8, R = (2/3 + 0 + 0 + 1/2) / 4 = 7/24, F1 = (4/7 + 0 + 0 + 2/3) / 4 = 13/42
    assert s["macro"]["precision"] == approx(3 / 8)
    assert s["macro"]["recall"] == approx(7 / 24)
    assert s["macro"]["f1"] == approx(13 / 42)
    assert s["macro"]["f1"] != approx(s["overall"]["f1"])  # macro is not the micro average


def test_entity_scores_by_hand_strict():
    """Strict IOB2: the five entities that start with I- are no entities. Predicted 6: PER(0,1),
    LOC(3,3), LOC(6,6) in sentence 0, PER(3,3) in sentence 2, ORG(0,1), PER(0,0); correct 1."""
    s = entity_scores(FIXTURE_GOLD, FIXTURE_PRED, mode="strict")
    # P = 1/6, R = 1/10, F1 = 2*1/(6+10) = 1/8
    assert s["overall"] == pytest.approx({"precision": 1 / 6, "recall": 1 / 10, "f1": 1 / 8, "support": 10})
    # PER: 1 correct of 3 predicted, 3 gold -> 1/3 each; every other type 0 (MISC: none predicted)
    assert s["per_type"]["PER"] == pytest.approx({"precision": 1 / 3, "recall": 1 / 3, "f1": 1 / 3, "support": 3})
    assert all(s["per_type"][t]["f1"] == 0.0 for t in ("LOC", "ORG", "MISC"))
    assert s["macro"]["f1"] == pytest.approx((1 / 3) / 4)  # 1/12


def test_macro_averages_types_only_predicted():
    """A type never in gold but predicted counts in the macro average with F1 0."""
    s = entity_scores([["B-PER", "I-PER"], ["O", "O"]], [["B-PER", "I-PER"], ["B-LOC", "O"]])
    assert s["per_type"]["LOC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert s["macro"]["f1"] == pytest.approx((1.0 + 0.0) / 2)
    # micro: 1 correct of 2 predicted, 1 gold -> P 1/2, R 1, F1 2/3
    assert s["overall"]["f1"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("mode", [None, "strict"])
def test_macro_is_zero_without_entities(mode):
    """No entity in gold or predictions: every score is 0, none is nan (seqeval's macro average
    of no types is the mean of an empty list)."""
    s = entity_scores([["O", "O"]], [["O", "O"]], mode=mode)
    assert s["overall"]["f1"] == 0.0 and s["macro"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert s["per_type"] == {}


@pytest.mark.parametrize("seed", range(5))
def test_entity_scores_match_conlleval_rules(seed, synth):
    from nerbook.data import tag_names

    gold = tag_names(synth["valid"])
    pred = perturb(gold, seed)
    for mode, chunks in ((None, conlleval_chunks), ("strict", strict_chunks)):
        ours = entity_scores(gold, pred, mode=mode)
        (p, r, f), per_type = reference_scores(gold, pred, chunks)
        assert (ours["overall"]["precision"], ours["overall"]["recall"], ours["overall"]["f1"]) == pytest.approx(
            (p, r, f), abs=1e-12), mode
        assert set(ours["per_type"]) == set(per_type), mode
        for t, v in ours["per_type"].items():
            assert (v["precision"], v["recall"], v["f1"]) == pytest.approx(per_type[t], abs=1e-12), (mode, t)
        assert ours["macro"]["f1"] == pytest.approx(sum(v[2] for v in per_type.values()) / len(per_type), abs=1e-12)
    assert entity_scores(gold, pred, mode="strict")["overall"]["f1"] != entity_scores(gold, pred)["overall"]["f1"]


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


def test_entity_strings():
    from nerbook.metrics import entity_strings

    words = [["Angela", "Merkel", "met", "Obama"], ["Obama", "in", "New", "York"]]
    tags = [["B-PER", "I-PER", "O", "B-PER"], ["B-PER", "O", "I-LOC", "I-LOC"]]  # an I- start: conlleval
    assert entity_strings(words, tags) == {"Angela Merkel", "Obama", "New York"}
    with pytest.raises(ValueError):
        entity_strings(words, tags[:1])
