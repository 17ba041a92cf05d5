"""nerbook.continual: a second data domain, replay mixes, and the continual experiment."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from nerbook import synthetic
from nerbook.continual import (
    DOMAIN_LOCALES,
    TEMPLATES,
    continual_experiment,
    domain_pools,
    replay_mix,
    synthetic_domain,
    synthetic_domain_splits,
)
from nerbook.data import CONLL2003, tag_names, to_iob2
from nerbook.metrics import spans
from nerbook.perturb import HOLDOUT_LOCALES, holdout_names
from nerbook.synthetic import LOCALES, name_pools, synthetic_conll, tokenize_words

SLOT_TYPE = {"PER": "PER", "ORG": "ORG", "LOC": "LOC", "PROD": "MISC", "EVENT": "MISC"}


@pytest.fixture(scope="module")
def b():
    return synthetic_domain_splits(300, 60, 300, seed=0)


@pytest.fixture(scope="module")
def a():
    return synthetic_conll(300, 0, 100, seed=0)


def entities(ds) -> list[tuple[str, tuple[str, ...]]]:
    """Every entity of a dataset: (type, words)."""
    return [(typ, tuple(words[s:e + 1])) for words, tags in zip(ds["tokens"], tag_names(ds))
            for typ, s, e in spans(tags)]


def skeleton(words, tags) -> tuple[str, ...]:
    """A sentence with its entities replaced by their type and its digits by 0: its template."""
    out: list[str] = []
    for w, t in zip(words, tags):
        if t.startswith("B-"):
            out.append(t[2:])
        elif t == "O":
            out.append(re.sub(r"\d+", "0", w.lower()))
    return tuple(out)


def test_domain_b_is_seeded_with_the_conll_columns(b):
    again = synthetic_domain(300, seed=0, split="train")
    assert again.to_dict() == b["train"].to_dict()
    assert synthetic_domain(300, seed=1, split="train")["tokens"] != b["train"]["tokens"]
    assert b["train"].features == synthetic_conll(5, 0, 0)["train"].features
    assert {k: len(v) for k, v in b.items()} == {"train": 300, "valid": 60, "test": 300}
    assert list(synthetic_domain_splits(10, 0, 5)) == ["train", "test"]
    assert synthetic_domain(20, domain="a", split="test")["tokens"] == synthetic_conll(0, 0, 20)["test"]["tokens"]
    with pytest.raises(ValueError, match="domain"):
        synthetic_domain(5, domain="c")


def test_tags_match_the_names_they_came_from(b):
    pools = domain_pools(0)
    for split, ds in b.items():
        names = {typ: set() for typ in ("PER", "ORG", "LOC", "MISC")}
        for slot, pool in pools[split].items():
            names[SLOT_TYPE[slot]] |= {tuple(tokenize_words(n)) for n in pool}
        for tokens, tags in zip(ds["tokens"], tag_names(ds)):
            assert len(tokens) == len(tags) > 0 and to_iob2(tags) == tags
        found = entities(ds)
        assert all(words in names[typ] for typ, words in found), [e for e in found if e[1] not in names[e[0]]][:5]
        assert {typ for typ, _ in found} == {"PER", "ORG", "LOC", "MISC"}


def test_names_are_new_and_split_by_name(b):
    assert not set(DOMAIN_LOCALES) & (set(LOCALES) | set(HOLDOUT_LOCALES))
    old = {n.lower() for split in name_pools(0).values() for names in split.values() for n in names}
    old |= {" ".join(w).lower() for names in holdout_names().values() for w in names}
    pools = domain_pools(0)
    mine = {split: {n for names in pools[split].values() for n in names} for split in pools}
    assert all(len(pools["train"][slot]) >= 30 for slot in SLOT_TYPE)
    assert not {n.lower() for names in mine.values() for n in names} & old
    assert not mine["train"] & mine["test"] and not mine["train"] & mine["valid"]
    first = {split: {n.split()[0] for slot in ("ORG", "PROD") for n in pools[split][slot]} for split in pools}
    assert not first["train"] & first["test"]  # no test brand is seen in training, in any name
    seen = {words for _, words in entities(b["train"])}
    assert not seen & {words for _, words in entities(b["test"])}


def test_the_style_differs_from_domain_a(a, b):
    assert 15 <= len(TEMPLATES) <= 25 and len(set(TEMPLATES)) == len(TEMPLATES)
    assert not set(TEMPLATES) & set(synthetic._TEMPLATES)
    sk_a = {skeleton(w, t) for w, t in zip(a["train"]["tokens"], tag_names(a["train"]))}
    sk_b = {skeleton(w, t) for w, t in zip(b["train"]["tokens"], tag_names(b["train"]))}
    assert not sk_a & sk_b and len(sk_b) >= 15
    lower = [w for ws, ts in zip(b["train"]["tokens"], tag_names(b["train"])) for w, t in zip(ws, ts) if t == "O"]
    assert sum(w == w.lower() for w in lower) / len(lower) > 0.95  # posts in lower case, names capitalised
    assert all(w[0].isupper() for typ, ws in entities(b["train"]) if typ == "PER" for w in ws[:1])


def test_replay_mix_adds_a_seeded_share_of_old_sentences(a, b):
    new, old = b["train"].select(range(100)), a["train"]
    assert replay_mix(new, old, 0.0) is new
    mix = replay_mix(new, old, 0.5, seed=3)
    assert len(mix) == 150 and mix.features == new.features
    old_rows = Counter(tuple(t) for t in old["tokens"])
    from_old = [tuple(t) for t in mix["tokens"] if tuple(t) in old_rows]
    assert len(from_old) == 50 and all(n <= old_rows[r] for r, n in Counter(from_old).items())  # no replacement
    assert Counter(tuple(t) for t in mix["tokens"] if tuple(t) not in old_rows) == Counter(tuple(t) for t in new["tokens"])
    assert mix["tokens"][:100] != new["tokens"]  # shuffled
    assert min(d for t, d in zip(mix["tokens"], mix["doc_id"]) if tuple(t) in old_rows) > max(new["doc_id"])
    assert replay_mix(new, old, 0.5, seed=3).to_dict() == mix.to_dict()
    assert replay_mix(new, old, 0.5, seed=4)["tokens"] != mix["tokens"]
    assert len(replay_mix(new, old, 0.25)) == 125
    with pytest.raises(ValueError, match="share"):
        replay_mix(new, old, -0.1)
    with pytest.raises(ValueError, match="old sentences"):
        replay_mix(new, old.select(range(10)), 0.5)
    with pytest.raises(ValueError, match="features"):
        replay_mix(new, synthetic_domain(20, schema=CONLL2003.from_types(("PER", "ORG", "LOC", "MISC"), "bioes")), 0.5)


def test_continual_experiment_rows(a, b, monkeypatch):
    import nerbook.train
    from nerbook.train import TrainConfig

    real_train, starts, ends = nerbook.train.train, [], []

    def weights(model) -> float:
        return float(sum(p.detach().double().sum() for p in model.parameters()))

    def spy(model, *args, **kwargs):  # what each stage starts from, and what it ends with
        starts.append(weights(model))
        res = real_train(model, *args, **kwargs)
        ends.append(weights(res.model))
        return res

    monkeypatch.setattr(nerbook.train, "train", spy)
    old = {"train": a["train"].select(range(120)), "test": a["test"].select(range(30))}
    new = {"train": b["train"].select(range(120)), "test": b["test"].select(range(30))}
    cfg = TrainConfig(epochs=1, batch_size=32, lr=3e-3, max_length=64, stride=16, progress=False, seed=99)
    out = continual_experiment("tiny", old, new, cfg, shares=(0.0, 0.5), seed=1)
    assert out["seed"] == 1 and out["shares"] == [0.0, 0.5]
    assert (out["n_old_train"], out["n_new_train"]) == (120, 120)
    rows = out["rows"]
    assert [(r["stage"], r["share"], r["n_train"]) for r in rows] == [
        ("A", None, 120), ("A->B", 0.0, 120), ("A->B", 0.5, 180)]
    assert all(0.0 <= r["f1_old"] <= 1.0 and 0.0 <= r["f1_new"] <= 1.0 and r["seconds"] > 0 for r in rows)
    # every continuation starts from its own copy of the stage-A weights, not from the last one's
    assert starts[1:] == pytest.approx([ends[0]] * 2) and ends[1] != pytest.approx(ends[0])
