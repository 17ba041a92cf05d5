"""The bias audit: locale checks, origin names, the audit set, recall with cluster-bootstrap
intervals, the report on a tiny model, and the name-diversifying mitigation."""

from __future__ import annotations

import math

import pytest

from nerbook.bias import (
    AUDIT_TEMPLATES,
    ORIGINS,
    REFERENCE_LOCALE,
    audit_dataset,
    audit_locales,
    bias_report,
    bootstrap_ci,
    check_locale,
    diversify_person_names,
    origin_names,
    person_recall,
)
from nerbook.data import tag_names
from nerbook.metrics import spans
from nerbook.synthetic import name_pools, tokenize_words


@pytest.fixture(scope="module")
def names():
    return origin_names()


# --- locales ---------------------------------------------------------------------------------

@pytest.mark.parametrize("locale", ["ar_EG", "fil_PH", "es_VE", "sq_AL", "en_AU"])
def test_a_locale_that_falls_back_to_us_first_names_is_rejected(locale):
    check = check_locale(locale)
    assert check.share_us == 1.0 and check.latin and not check.real


def test_a_placeholder_first_name_list_is_rejected():
    check = check_locale("vi_VN")  # first_name() gives Faker's base "John" / "Jane"
    assert check.n_first_names <= 2 and not check.real


@pytest.mark.parametrize("locale", ["de_DE", "tr_TR", "yo_NG"])
def test_a_locale_with_names_of_its_own_is_accepted(locale):
    check = check_locale(locale)
    assert check.real and check.latin and check.share_us < 0.5 and check.n_first_names > 50


def test_script_and_reference():
    assert check_locale("ar_SA").real and not check_locale("ar_SA").latin
    assert check_locale("ja_JP").latin  # romanised names
    ref = check_locale(REFERENCE_LOCALE)
    assert ref.share_us == 1.0 and ref.real  # the reference, real by definition


def test_the_check_is_seeded():
    assert check_locale("tr_TR", seed=3) == check_locale("tr_TR", seed=3)
    assert audit_locales(["de_DE", "es_VE"]) == [check_locale("de_DE"), check_locale("es_VE")]


def test_every_origin_locale_passes_the_check():
    assert 6 <= len(ORIGINS) <= 10
    for origin, locales in ORIGINS.items():
        for check in audit_locales(locales):
            assert check.usable, check
            if not origin.startswith("Anglo"):
                assert check.share_us < 0.5, check  # distinct from the US names, not just real


# --- names -----------------------------------------------------------------------------------

def test_origin_names_are_unseen_disjoint_and_seeded(names):
    assert list(names) == list(ORIGINS)
    seen = {n.lower() for split in name_pools().values() for ns in split.values() for n in ns}
    every = []
    for halves in names.values():
        audit, train = halves["audit"], halves["train"]
        assert audit == sorted(audit) and train == sorted(train)
        assert not set(audit) & set(train)
        assert len(audit) >= 25 and len(train) >= 25 and len(audit) + len(train) >= 75
        every += audit + train
    assert len(every) == len(set(every))  # no name in two origins
    assert not {n.lower() for n in every} & seen
    assert all(len(tokenize_words(n)) >= 2 for n in every)
    assert origin_names() == names


def test_the_halves_do_not_depend_on_how_many_names():
    small = origin_names({"Turkish": ORIGINS["Turkish"]}, per_origin=30)["Turkish"]
    large = origin_names({"Turkish": ORIGINS["Turkish"]}, per_origin=60)["Turkish"]
    assert set(small["audit"]) <= set(large["audit"]) and set(small["train"]) <= set(large["train"])


# --- the audit set ---------------------------------------------------------------------------

def test_audit_dataset_puts_every_name_in_every_template():
    by_origin = {"A": ["Ana Lima", "Juan Gabriel Ortega"], "B": ["Chao Li"]}
    ds = audit_dataset(by_origin, AUDIT_TEMPLATES[:4])
    assert len(ds) == 3 * 4
    assert {"tokens", "ner_tags", "doc_id", "origin", "name_id", "template"} <= set(ds.column_names)
    flat = [(o, n) for o, ns in by_origin.items() for n in ns]
    for row, tags in zip(ds, tag_names(ds)):
        origin, name = flat[row["name_id"]]
        assert row["origin"] == origin
        per = [(s, e) for t, s, e in spans(tags) if t == "PER"]
        assert len(per) == 1
        s, e = per[0]
        assert row["tokens"][s:e + 1] == tokenize_words(name)
    assert ds["template"] == [0, 1, 2, 3] * 3
    assert len(set(ds["doc_id"])) == len(ds)


def test_audit_dataset_reads_the_audit_halves(names):
    ds = audit_dataset({o: names[o] for o in list(names)[:2]}, AUDIT_TEMPLATES[:1])
    assert len(ds) == sum(len(names[o]["audit"]) for o in list(names)[:2])


# --- recall and intervals --------------------------------------------------------------------

def test_person_recall_counts_exact_person_spans_only():
    gold = [["B-PER", "I-PER", "O"], ["O", "B-PER", "I-PER"], ["B-PER", "O"], ["B-LOC", "O"],
            ["B-PER", "O", "B-PER"]]
    pred = [["B-PER", "I-PER", "O"],  # found
            ["O", "B-PER", "O"],      # partial: a miss
            ["B-ORG", "O"],           # wrong type: a miss
            ["B-LOC", "O"],           # no person: no outcome
            ["B-PER", "O", "O"]]      # two persons, one found
    assert person_recall(gold, pred) == [True, False, False, True, False]
    with pytest.raises(ValueError):
        person_recall(gold, pred[:2])


def test_bootstrap_ci_basics():
    outcomes = [1] * 30 + [0] * 10
    mean, low, high = bootstrap_ci(outcomes)
    assert mean == 0.75 and low < mean < high
    assert bootstrap_ci(outcomes, seed=5) == bootstrap_ci(outcomes, seed=5)
    _, low4, high4 = bootstrap_ci(outcomes * 4)
    assert high4 - low4 < (high - low) * 0.7  # four times the data: about half the width
    assert bootstrap_ci([1] * 25) == (1.0, 1.0, 1.0)
    assert bootstrap_ci([0, 0, 0], groups=[1, 1, 2]) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        bootstrap_ci([])


def test_cluster_bootstrap_is_wider_when_a_name_decides_all_its_sentences():
    names, per_name = 40, 10
    groups = [g for g in range(names) for _ in range(per_name)]
    outcomes = [g % 2 for g in groups]  # every sentence of a name right, or every one wrong
    z = 1.959964
    independent = 2 * z * math.sqrt(0.25 / (names * per_name))  # normal width, p = 0.5
    clustered = 2 * z * math.sqrt(0.25 / names)
    _, low, high = bootstrap_ci(outcomes, n_boot=2000)
    _, clow, chigh = bootstrap_ci(outcomes, groups, n_boot=2000)
    assert high - low == pytest.approx(independent, rel=0.2)
    assert chigh - clow == pytest.approx(clustered, rel=0.2)
    assert chigh - clow > 2.5 * (high - low)


# --- the report ------------------------------------------------------------------------------

def test_bias_report_on_a_tiny_model(tiny_ckpt, names):
    from nerbook.predict import Tagger

    tagger = Tagger.from_checkpoint(str(tiny_ckpt), device="cpu")
    small = {o: names[o]["audit"][:6] for o in list(names)[:3]}
    ds = audit_dataset(small, AUDIT_TEMPLATES[:2])
    report = bias_report(tagger, ds, n_boot=200)
    assert [r["origin"] for r in report["origins"]] == list(small)
    for row in report["origins"]:
        assert row["names"] == 6 and row["sentences"] == 12
        assert 0 <= row["low"] <= row["recall"] <= row["high"] <= 1
    gap = report["gap"]
    recalls = {r["origin"]: r["recall"] for r in report["origins"]}
    assert gap["value"] == pytest.approx(max(recalls.values()) - min(recalls.values()))
    assert recalls[gap["best"]] == max(recalls.values()) and recalls[gap["worst"]] == min(recalls.values())
    assert gap["low"] <= gap["value"] <= gap["high"]
    assert 0 <= report["overall"] <= 1 and report["n_boot"] == 200
    assert bias_report(tagger, ds, n_boot=200) == report


# --- the mitigation --------------------------------------------------------------------------

def _without_persons(words, tags):
    return [(w, t) for w, t in zip(words, tags) if not t.endswith("PER")]


def test_diversify_person_names_only_renames_persons(synth, names):
    ds = synth["train"].select(range(150))
    pool = {o: h["train"] for o, h in names.items()}
    new = diversify_person_names(ds, pool, rate=1.0, seed=1)
    assert len(new) == len(ds) and new.features == ds.features and new["doc_id"] == ds["doc_id"]
    drawn = {w for h in pool.values() for n in h for w in tokenize_words(n)}
    changed = 0
    for words, tags, new_words, new_tags in zip(ds["tokens"], tag_names(ds), new["tokens"], tag_names(new)):
        assert _without_persons(words, tags) == _without_persons(new_words, new_tags)
        assert len(new_words) == len(new_tags)
        old_per = [(t, words[s:e + 1]) for t, s, e in spans(tags) if t == "PER"]
        new_per = [(t, new_words[s:e + 1]) for t, s, e in spans(new_tags) if t == "PER"]
        assert len(old_per) == len(new_per)
        for (_, old), (_, renamed) in zip(old_per, new_per):
            assert set(renamed) <= drawn and (len(renamed) == 1) == (len(old) == 1)
        changed += any(o != n for o, n in zip(old_per, new_per))
        for t, s, e in spans(new_tags):  # well-formed IOB2: B- then I- of the same type
            assert new_tags[s] == f"B-{t}" and all(x == f"I-{t}" for x in new_tags[s + 1:e + 1])
    assert changed > 20


def test_diversify_person_names_is_seeded_and_rate_zero_is_a_no_op(synth, names):
    ds = synth["train"].select(range(80))
    flat = [n for h in names.values() for n in h["train"]]
    assert diversify_person_names(ds, flat, rate=0.0).to_dict() == ds.to_dict()
    a = diversify_person_names(ds, flat, rate=0.5, seed=2)
    assert a.to_dict() == diversify_person_names(ds, flat, rate=0.5, seed=2).to_dict()
    assert a.to_dict() != diversify_person_names(ds, flat, rate=0.5, seed=3).to_dict()
    with pytest.raises(ValueError):
        diversify_person_names(ds, flat, rate=1.5)
    with pytest.raises(ValueError):
        diversify_person_names(ds, [])
