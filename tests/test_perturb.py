"""nerbook.perturb: label-preserving perturbations and the robustness report."""

from __future__ import annotations

import random

import pytest

from nerbook.data import CONLL2003, Sentence, conll_lines, sentences_to_dataset, tag_names, to_iob2
from nerbook.metrics import entity_scores, spans
from nerbook.perturb import (
    HOLDOUT_LOCALES,
    KEYBOARD_NEIGHBOURS,
    PERTURBATIONS,
    char_noise,
    holdout_names,
    perturb_dataset,
    perturb_sentence,
    robustness_report,
    sentence_rng,
)
from nerbook.synthetic import LOCALES, name_pools, synthetic_sentences


@pytest.fixture(scope="module")
def sents() -> list[Sentence]:
    """Test-split sentences (unseen names), a dateline among them."""
    return synthetic_sentences(120, "test", seed=0)


@pytest.fixture(scope="module")
def ds(sents):
    return sentences_to_dataset(sents, CONLL2003)


def osa_distance(a: str, b: str) -> int:
    """Edits (insert, delete, substitute, swap two adjacent characters) from ``a`` to ``b``."""
    d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[-1][-1]


def entity_types(tags) -> list[str]:
    return [t for t, _, _ in spans(tags)]


@pytest.mark.parametrize("name", list(PERTURBATIONS))
@pytest.mark.parametrize("rate", [0.3, 1.0])
def test_every_perturbation_preserves_the_labels(name, rate, sents):
    changed = 0
    for i, s in enumerate(sents):
        words, tags = perturb_sentence(s.tokens, s.tags, name, rate, sentence_rng(0, name, i))
        assert len(words) == len(tags) > 0
        assert all(w and not any(ch.isspace() for ch in w) for w in words), words
        assert to_iob2(tags) == tags and set(tags) <= set(CONLL2003.names)  # valid IOB2
        assert entity_types(tags) == entity_types(s.tags)  # same entities, same order
        changed += words != s.tokens
        if name == "entity_swap":
            for (typ, a, b), (_, c, d) in zip(spans(s.tags), spans(tags)):
                if typ != "MISC":
                    assert words[c:d + 1] != s.tokens[a:b + 1]
    assert changed > len(sents) // 2


@pytest.mark.parametrize("rate", [0.02, 0.1, 0.3])
def test_char_noise_edits_about_rate_of_the_characters(rate, sents):
    chars = edits = 0
    for i, s in enumerate(sents[:60]):
        words, _ = char_noise(s.tokens, s.tags, rate, sentence_rng(0, "char_noise", i))
        chars += sum(ch.isalnum() for w in s.tokens for ch in w)
        edits += sum(osa_distance(a, b) for a, b in zip(s.tokens, words))
    assert chars > 3000
    assert abs(edits / chars - rate) < 0.25 * rate + 0.005, (edits / chars, rate)


def test_char_noise_at_rate_zero_changes_nothing_and_never_empties_a_word(sents):
    for i, s in enumerate(sents):
        assert char_noise(s.tokens, s.tags, 0.0, random.Random(i)) == (s.tokens, s.tags)
    outputs = {tuple(char_noise(["a", "I", "0", "rn", ","], ["O"] * 5, 1.0, random.Random(k))[0])
               for k in range(300)}
    assert all(all(o) for o in outputs)  # no word became empty
    assert all(o[4] == "," for o in outputs)  # punctuation is never edited
    seen = {o[3] for o in outputs}
    assert {"m", "nr"} <= seen and any(len(w) == 1 and w != "m" for w in seen)  # OCR, swap, deletion


def test_keyboard_neighbours_are_qwerty_and_symmetric():
    assert KEYBOARD_NEIGHBOURS["s"] == "adewxz" and KEYBOARD_NEIGHBOURS["q"] == "12aw"
    for c, near in KEYBOARD_NEIGHBOURS.items():
        assert all(c in KEYBOARD_NEIGHBOURS[n] for n in near)


def test_swapped_names_are_held_out(sents):
    assert not set(HOLDOUT_LOCALES) & set(LOCALES)
    seen = {name.lower() for split in name_pools().values() for names in split.values() for name in names}
    pools = holdout_names()
    assert set(pools) == {"PER", "ORG", "LOC"} and all(len(p) > 200 for p in pools.values())
    assert not {" ".join(w).lower() for p in pools.values() for w in p} & seen
    for i, s in enumerate(sents):
        words, tags = perturb_sentence(s.tokens, s.tags, "entity_swap", rng=random.Random(i))
        for (typ, a, b), (_, c, d) in zip(spans(s.tags), spans(tags)):
            if typ == "MISC":
                assert words[c:d + 1] == s.tokens[a:b + 1]  # MISC is left as it is
            else:
                assert " ".join(words[c:d + 1]).lower() not in seen
                assert tuple(words[c:d + 1]) in pools[typ] or all(w.isupper() for w in words[c:d + 1])


def test_a_capitalised_dateline_gets_a_capitalised_name():
    words, tags = perturb_sentence(["BERLIN", "1996-08-22"], ["B-LOC", "O"], "entity_swap")
    assert all(w == w.upper() for w in words) and words != ["BERLIN", "1996-08-22"]
    assert tags[-1] == "O" and entity_types(tags) == ["LOC"]


def test_casings_do_what_they_say(sents):
    s = sents[1]
    up, tags = perturb_sentence(s.tokens, s.tags, "upper")
    assert up == [w.upper() for w in s.tokens] and tags == s.tags
    low, _ = perturb_sentence(s.tokens, s.tags, "lower")
    assert low == [w.lower() for w in s.tokens]
    tit, _ = perturb_sentence(["mcDONALD", "rocks", "1996-08-22", "é"], ["B-PER", "O", "O", "O"], "title")
    assert tit == ["Mcdonald", "Rocks", "1996-08-22", "É"]


def test_punct_noise_never_alters_entity_words(sents):
    ops = set()
    for i, s in enumerate(sents):
        words, tags = perturb_sentence(s.tokens, s.tags, "punct_noise", 0.5, random.Random(i))
        assert [w for w, t in zip(words, tags) if t != "O"] == [w for w, t in zip(s.tokens, s.tags) if t != "O"]
        assert [t for t in tags if t != "O"] == [t for t in s.tags if t != "O"]
        ops |= {"drop" if len(words) < len(s.tokens) else "add" if len(words) > len(s.tokens) else "same"}
        ops |= {"attach" for a, b in zip(s.tokens, words) if a != b and b[:-1] == a}
        assert perturb_sentence(s.tokens, s.tags, "punct_noise", 0.0) == (s.tokens, s.tags)
    assert ops >= {"drop", "add", "attach"}
    assert perturb_sentence([",", "."], ["O", "O"], "punct_noise", 1.0)[0]  # never emptied


def test_perturb_dataset_is_reproducible_and_independent_of_order(ds):
    def text(d):
        return "\n".join(conll_lines(d["tokens"], tag_names(d), doc_ids=d["doc_id"]))

    for name in PERTURBATIONS:
        a, b = perturb_dataset(ds, name, 0.1, seed=3), perturb_dataset(ds, name, 0.1, seed=3)
        assert text(a) == text(b) and a.features == ds.features and len(a) == len(ds)
        assert a["doc_id"] == ds["doc_id"]
    a = perturb_dataset(ds, "char_noise", 0.1, seed=3)
    assert text(a) != text(perturb_dataset(ds, "char_noise", 0.1, seed=4))
    gold = tag_names(ds)
    for i in reversed(range(len(ds))):  # each sentence from its own stream, whatever the order
        rng = sentence_rng(3, "char_noise", i)
        assert perturb_sentence(ds[i]["tokens"], gold[i], "char_noise", 0.1, rng)[0] == a[i]["tokens"]


def test_bad_names_and_rates_raise(sents):
    with pytest.raises(ValueError, match="unknown perturbation 'typos'; choose from char_noise, entity_swap"):
        perturb_sentence(["a"], ["O"], "typos")
    with pytest.raises(ValueError, match="rate must be in"):
        perturb_sentence(["a"], ["O"], "char_noise", 1.5)


@pytest.fixture(scope="module")
def tagger(tiny_ckpt):
    from nerbook.predict import Tagger

    return Tagger.from_checkpoint(str(tiny_ckpt), device="cpu")


def test_report_on_gold_data(tagger, ds):
    small = ds.select(range(40))
    r = robustness_report(tagger, small, ["char_noise", "upper"], rate=0.0, seed=0)
    assert r["reference"] == "gold" and list(r["results"]) == ["clean", "char_noise", "upper"]
    clean = r["results"]["clean"]
    assert clean["f1"] > 0 and clean["f1"] == tagger.score(small)["overall"]["f1"]
    independent = entity_scores(tag_names(small), tagger.tag(small["tokens"], small["doc_id"]))
    assert clean["f1"] == independent["overall"]["f1"] and clean["drop"] == 0.0
    assert clean["per_type"] == {t: v["f1"] for t, v in independent["per_type"].items()}
    noise = r["results"]["char_noise"]  # rate 0: nothing changes, the scores are the clean ones
    assert {k: noise[k] for k in clean} == clean
    upper = r["results"]["upper"]
    assert upper["sentences_changed"] > 0 and upper["drop"] == pytest.approx(clean["f1"] - upper["f1"])


def test_report_without_gold_scores_consistency(tagger, sents):
    plain = sentences_to_dataset([Sentence(s.tokens, None, i, 0) for i, s in enumerate(sents[:30])], CONLL2003)
    r = robustness_report(tagger, plain, ["char_noise", "entity_swap"], rate=0.0)
    assert r["reference"] == "clean predictions"
    assert r["results"]["clean"]["support"] > 0
    assert r["results"]["clean"]["f1"] == r["results"]["char_noise"]["f1"] == 1.0
    assert 0.0 <= r["results"]["entity_swap"]["f1"] <= 1.0
