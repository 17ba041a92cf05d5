"""Label-preserving perturbations of NER data and a robustness report (chapter "Adversarial
training and robustness").

Adversarial training in embedding space (:mod:`nerbook.adversarial`) makes a model robust to
small moves nobody types. The inputs a tagger meets in the wild differ in other ways: typos
and OCR errors, names it never saw, SHOUTED or lower-cased text, stray punctuation. Each
perturbation here rewrites a sentence word by word, ``(words, tags) -> (words, tags)``, so that
the tags are still valid IOB2 and describe the same entities: the gold labels carry over, and
:func:`robustness_report` can score a tagger on the perturbed copy exactly as on the clean one.

- ``char_noise``: typos (a QWERTY neighbour), swaps of adjacent characters, deletions and OCR
  confusions (``0/O``, ``1/l/I``, ``5/S``, ``rn/m``, ...) in letters and digits.
- ``entity_swap``: every PER, ORG and LOC entity replaced by a held-out name of its type.
- ``upper``, ``lower``, ``title``: the casing of every word.
- ``punct_noise``: punctuation dropped, doubled, glued to or attached to words tagged ``O``.

Every sentence gets its own random stream, seeded by ``(seed, perturbation, sentence index)``:
the same seed gives the same output, byte for byte, whatever order sentences are processed in.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from functools import lru_cache

import datasets

from nerbook.data import features_of, schema_of, tag_names
from nerbook.metrics import entity_scores, spans
from nerbook.synthetic import name_pools, tokenize_words

__all__ = [
    "HOLDOUT_LOCALES", "KEYBOARD_NEIGHBOURS", "OCR_CONFUSIONS", "PERTURBATIONS", "char_noise",
    "entity_swap", "holdout_names", "lower", "perturb_dataset", "perturb_sentence", "punct_noise",
    "replace_spans", "robustness_report", "sentence_rng", "shouted", "title", "upper",
]

Words = list[str]
Tags = list[str]
Perturbation = Callable[[Sequence[str], Sequence[str], float, random.Random], tuple[Words, Tags]]


def _keyboard() -> dict[str, str]:
    """Each key of a QWERTY keyboard -> the keys that touch it (same row, and the staggered
    rows above and below)."""
    rows = ("1234567890", "qwertyuiop", "asdfghjkl", "zxcvbnm")
    near: dict[str, set[str]] = {c: set() for row in rows for c in row}
    for i, row in enumerate(rows):
        for j, c in enumerate(row):
            near[c] |= {row[k] for k in (j - 1, j + 1) if 0 <= k < len(row)}
            below = rows[i + 1] if i + 1 < len(rows) else ""
            for k in (j - 1, j):  # a key sits between the two keys above it
                if 0 <= k < len(below):
                    near[c].add(below[k])
                    near[below[k]].add(c)
    return {c: "".join(sorted(n)) for c, n in near.items()}


#: Lower-case key (letter or digit) -> its neighbours on a QWERTY keyboard.
KEYBOARD_NEIGHBOURS = _keyboard()

#: What OCR reads for a character or a pair of characters (each value: the choices).
OCR_CONFUSIONS = {
    "0": ("O",), "O": ("0",), "o": ("0",), "1": ("l", "I"), "l": ("1", "I"), "I": ("l", "1"),
    "5": ("S",), "S": ("5",), "8": ("B",), "B": ("8",), "2": ("Z",), "Z": ("2",), "e": ("c",),
    "c": ("e",), "rn": ("m",), "m": ("rn",), "cl": ("d",), "d": ("cl",), "vv": ("w",), "w": ("vv",),
}


def _char_edits(word: str, i: int, kept: int) -> dict[str, list[tuple[str, int]]]:
    """The edits possible at ``word[i]`` by kind: ``(replacement, characters consumed)``.
    ``kept``: the characters written so far, so that a deletion never leaves the word empty."""
    c, nxt = word[i], word[i + 1] if i + 1 < len(word) else ""
    near = KEYBOARD_NEIGHBOURS.get(c.lower(), "")
    edits = {
        "typo": [(n.upper() if c.isupper() else n, 1) for n in near],
        "swap": [(nxt + c, 2)] if nxt.isalnum() and nxt != c else [],
        "delete": [("", 1)] if kept + len(word) - i - 1 > 0 else [],
        "ocr": [(o, 2) for o in OCR_CONFUSIONS.get(word[i:i + 2], ()) if len(word[i:i + 2]) == 2]
        + [(o, 1) for o in OCR_CONFUSIONS.get(c, ())],
    }
    return {k: v for k, v in edits.items() if v}


def _noisy_word(word: str, rate: float, rng: random.Random) -> str:
    """``word`` with each letter or digit edited with probability ``rate``: first a kind of edit
    (so that a letter's many neighbouring keys do not crowd out the others), then one of them."""
    out: list[str] = []
    i = 0
    while i < len(word):
        c = word[i]
        edits = _char_edits(word, i, sum(map(len, out))) if c.isalnum() and rng.random() < rate else {}
        if not edits:
            out.append(c)
            i += 1
            continue
        repl, n = rng.choice(edits[rng.choice(sorted(edits))])
        out.append(repl)
        i += n
    return "".join(out)


def char_noise(words: Sequence[str], tags: Sequence[str], rate: float, rng: random.Random) -> tuple[Words, Tags]:
    """Typos, swaps, deletions and OCR confusions: each letter or digit of the sentence is edited
    with probability ``rate`` (a rate *per character* over the sentence: 0.05 edits about 5% of
    them; punctuation is never edited). An edit is one of: a QWERTY neighbour (case kept), the
    character swapped with the next one, deleted (never a word's last character: no word becomes
    empty) or an OCR confusion (``0/O``, ``1/l/I``, ``5/S``, ``rn/m``, ``cl/d``, ...). Tags are
    unchanged.

    Chapter: Adversarial training and robustness.
    """
    return [_noisy_word(w, rate, rng) for w in words], list(tags)


#: Faker locales of the held-out names: none of them is in :data:`nerbook.synthetic.LOCALES`.
HOLDOUT_LOCALES = ("en_AU", "en_IE", "en_NZ", "de_AT", "de_CH", "fr_CH", "es_MX", "pt_PT", "da_DK",
                   "fi_FI", "cs_CZ", "hr_HR")
_HOLDOUT_SEED = 20240917
_SEPARATORS = set(",;:()\"")


@lru_cache(maxsize=1)
def holdout_names(per_locale: int = 40) -> dict[str, tuple[tuple[str, ...], ...]]:
    """Names no model trained on synthetic data has seen: ``{"PER": ..., "ORG": ..., "LOC": ...}``,
    each a sorted tuple of names split into words (:func:`nerbook.synthetic.tokenize_words`).

    Built by Faker with a fixed seed from :data:`HOLDOUT_LOCALES`, disjoint from the locales of
    :func:`nerbook.synthetic.name_pools`; any name that still occurs in those pools (default
    seed, any split, any type, in any case: Faker falls back to ``en_US`` for some providers) is
    left out, as
    are names with commas or brackets. PER: person names; LOC: cities and countries; ORG:
    companies.

    Chapter: Adversarial training and robustness.
    """
    from faker import Faker

    fake = Faker(list(HOLDOUT_LOCALES))
    fake.seed_instance(_HOLDOUT_SEED)
    raw: dict[str, set[str]] = {"PER": set(), "ORG": set(), "LOC": set()}
    for loc in HOLDOUT_LOCALES:
        f = fake[loc]
        for k in range(per_locale):
            raw["PER"].add(f"{f.first_name()} {f.last_name()}")
            raw["ORG"].add(f.company())
            raw["LOC"].add(f.city() if k % 4 else f.country())
    seen = {name.lower() for split in name_pools().values() for names in split.values() for name in names}
    return {typ: tuple(sorted(tuple(tokenize_words(n)) for n in names
                              if n.lower() not in seen and tokenize_words(n) and not _SEPARATORS & set(n)))
            for typ, names in raw.items()}


def shouted(words: Sequence[str]) -> bool:
    """Whether a name is written in capitals (as in a CoNLL dateline: ``BERLIN``)."""
    return all(w == w.upper() for w in words) and any(sum(ch.isalpha() for ch in w) > 1 for w in words)


def entity_swap(words: Sequence[str], tags: Sequence[str], rate: float, rng: random.Random) -> tuple[Words, Tags]:
    """Every PER, ORG and LOC entity replaced by a held-out name of the same type
    (:func:`holdout_names`), in capitals if the original was; MISC entities (and types of other
    schemas) are left as they are: nationalities and events have no held-out pool. The new name
    may have another number of words: its tags are rebuilt (``B-X, I-X, ...``). ``rate`` is
    ignored: every entity is replaced.

    Chapter: Adversarial training and robustness.
    """
    pools = holdout_names()

    def held_out(typ: str, old: list[str]) -> list[str]:
        if typ not in pools:
            return old
        k = rng.randrange(len(pools[typ]))
        new = list(pools[typ][k])
        if new == old:
            new = list(pools[typ][(k + 1) % len(pools[typ])])
        return [w.upper() for w in new] if shouted(old) else new

    return replace_spans(words, tags, held_out)


def replace_spans(words: Sequence[str], tags: Sequence[str],
                  choose: Callable[[str, list[str]], list[str] | None]) -> tuple[Words, Tags]:
    """Each entity span, in order, replaced by ``choose(type, its words)``: new words, tagged
    ``B-X, I-X, ...`` whatever their number, or None to keep the span's words and tags as they
    are. Words outside entities keep their tags. The span logic of :func:`entity_swap` and of
    :func:`nerbook.bias.diversify_person_names`.
    """
    out_w: Words = []
    out_t: Tags = []
    prev = 0
    for typ, s, e in spans(tags):
        new = choose(typ, list(words[s:e + 1]))
        if new is None:
            continue
        out_w += list(words[prev:s]) + new
        out_t += list(tags[prev:s]) + [f"B-{typ}"] + [f"I-{typ}"] * (len(new) - 1)
        prev = e + 1
    return out_w + list(words[prev:]), out_t + list(tags[prev:])


def upper(words: Sequence[str], tags: Sequence[str], rate: float, rng: random.Random) -> tuple[Words, Tags]:
    """EVERY WORD IN CAPITALS (``rate`` is ignored; tags unchanged). Casing matters for cased
    models (``bert-base-cased``, the tiny BERT); not for the uncased offline MiniLM, whose
    tokenizer lower-cases every word first.

    Chapter: Adversarial training and robustness.
    """
    return [w.upper() for w in words], list(tags)


def lower(words: Sequence[str], tags: Sequence[str], rate: float, rng: random.Random) -> tuple[Words, Tags]:
    """every word in small letters (``rate`` is ignored; tags unchanged): a cased model loses
    the capital that marks most names; the uncased MiniLM sees no difference.

    Chapter: Adversarial training and robustness.
    """
    return [w.lower() for w in words], list(tags)


def title(words: Sequence[str], tags: Sequence[str], rate: float, rng: random.Random) -> tuple[Words, Tags]:
    """Every Word With A Capital First Letter And The Rest Small (``rate`` is ignored; tags
    unchanged): every word looks like a name to a cased model; the uncased MiniLM sees no
    difference.

    Chapter: Adversarial training and robustness.
    """
    return [w[:1].upper() + w[1:].lower() for w in words], list(tags)


_PUNCT = ",.;:!?"


def _is_punct(word: str) -> bool:
    return not any(ch.isalnum() for ch in word)


def punct_noise(words: Sequence[str], tags: Sequence[str], rate: float, rng: random.Random) -> tuple[Words, Tags]:
    """Punctuation and spacing noise on words tagged ``O``, each with probability ``rate``: a
    punctuation word is dropped, doubled (``,`` -> ``, ,``) or glued to the ``O`` word before it
    (``said ,`` -> ``said,``, a lost space); any other ``O`` word gets a punctuation mark attached
    (``said`` -> ``said;``). Entity words are never touched, so the entities stay the same
    (adjacent ones stay apart: in IOB2 each starts with ``B-``). A sentence is never emptied.

    Chapter: Adversarial training and robustness.
    """
    out_w: Words = []
    out_t: Tags = []
    for w, t in zip(words, tags):
        if t != "O" or rng.random() >= rate:
            out_w.append(w)
            out_t.append(t)
        elif not _is_punct(w):
            out_w.append(w + rng.choice(_PUNCT))
            out_t.append(t)
        else:
            glue = bool(out_w) and out_t[-1] == "O"
            op = rng.choice(("drop", "double", "glue") if glue else ("drop", "double"))
            if op == "glue":
                out_w[-1] += w
            elif op == "double":
                out_w += [w, w]
                out_t += [t, t]
    if not out_w:
        return list(words), list(tags)
    return out_w, out_t


#: Every perturbation by name: ``f(words, tags, rate, rng) -> (words, tags)``.
PERTURBATIONS: dict[str, Perturbation] = {
    "char_noise": char_noise, "entity_swap": entity_swap, "upper": upper, "lower": lower,
    "title": title, "punct_noise": punct_noise,
}


def _check(name: str, rate: float) -> None:
    if name not in PERTURBATIONS:
        raise ValueError(f"unknown perturbation {name!r}; choose from {', '.join(PERTURBATIONS)}")
    if not 0 <= rate <= 1:
        raise ValueError(f"rate must be in [0, 1], got {rate}")


def perturb_sentence(words: Sequence[str], tags: Sequence[str], name: str, rate: float = 0.05,
                     rng: random.Random | None = None) -> tuple[Words, Tags]:
    """Apply the perturbation ``name`` (see :data:`PERTURBATIONS`) to one sentence with IOB2
    tags; ``rng`` defaults to ``random.Random(0)``. Returns new lists; the inputs are unchanged.

    Chapter: Adversarial training and robustness.
    """
    _check(name, rate)
    if len(words) != len(tags):
        raise ValueError(f"{len(words)} words but {len(tags)} tags")
    return PERTURBATIONS[name](list(words), list(tags), rate, rng or random.Random(0))


def sentence_rng(seed: int, name: str, index: int) -> random.Random:
    """The random stream of sentence ``index`` under perturbation ``name``: seeded by all three
    (a string seed: hashed by SHA-512, the same in every process), so a sentence's perturbation
    depends on neither the order nor the number of the others.

    Chapter: Adversarial training and robustness.
    """
    return random.Random(f"nerbook-perturb-{seed}-{name}-{index}")


def perturb_dataset(ds: datasets.Dataset, name: str, rate: float = 0.05, seed: int = 0) -> datasets.Dataset:
    """A perturbed copy of a nerbook dataset (``tokens``, ``ner_tags``, ``doc_id``): the same
    features and schema, the same number of sentences in the same order, each perturbed with
    its own stream (:func:`sentence_rng`). Reproducible: the same seed gives the same copy.

    Chapter: Adversarial training and robustness.
    """
    _check(name, rate)
    schema = schema_of(ds)
    fn = PERTURBATIONS[name]
    rows: dict[str, list] = {c: list(ds[c]) for c in ds.column_names if c not in ("tokens", "ner_tags")}
    rows["tokens"], rows["ner_tags"] = [], []
    for i, (words, tags) in enumerate(zip(ds["tokens"], tag_names(ds))):
        w, t = fn(list(words), tags, rate, sentence_rng(seed, name, i))
        rows["tokens"].append(w)
        rows["ner_tags"].append(schema.encode(t))
    return datasets.Dataset.from_dict({c: rows[c] for c in ds.column_names}, features=ds.features)


def _row(reference: list[list[str]], pred: list[list[str]], clean_f1: float | None) -> dict:
    s = entity_scores(reference, pred)
    o = s["overall"]
    f1 = o["f1"]
    return {"precision": o["precision"], "recall": o["recall"], "f1": f1, "support": o["support"],
            "drop": 0.0 if clean_f1 is None else clean_f1 - f1,
            "per_type": {t: v["f1"] for t, v in sorted(s["per_type"].items())}}


def robustness_report(tagger, ds: datasets.Dataset, perturbations: Sequence[str] | None = None,
                      rate: float = 0.05, seed: int = 0, reference: str | None = None) -> dict:
    """Entity-level scores of ``tagger`` (a :class:`nerbook.predict.Tagger`) on ``ds`` and on a
    perturbed copy of it for each of ``perturbations`` (default: all of :data:`PERTURBATIONS`).

    ``reference``: ``"gold"`` scores predictions against the dataset's tags; ``"clean
    predictions"`` (consistency) against the model's own predictions on the clean sentences,
    carried through each perturbation as gold tags would be; the default is ``"gold"`` if the
    dataset has any entity, else consistency (plain text has no gold tags; the clean row then
    scores 1.0, or 0.0 when the model finds no entity at all). Returns ``{"reference", "rate",
    "seed", "sentences", "words", "results"}``, ``results`` holding for ``"clean"`` and each
    perturbation: overall ``precision``, ``recall``, ``f1``, ``support`` (reference entities),
    ``drop`` (clean F1 minus this F1), ``per_type`` (F1 of each entity type) and
    ``sentences_changed`` (how many sentences the perturbation altered).

    Chapter: Adversarial training and robustness.
    """
    names = list(PERTURBATIONS) if perturbations is None else list(perturbations)
    for name in names:
        _check(name, rate)
    gold = tag_names(ds)
    if reference is None:
        reference = "gold" if any(t != "O" for s in gold for t in s) else "clean predictions"
    if reference not in ("gold", "clean predictions"):
        raise ValueError(f"reference must be 'gold' or 'clean predictions', got {reference!r}")
    clean_pred, _ = tagger.predict_dataset(ds)
    if reference == "clean predictions":  # the model's clean tags become the reference
        ds = datasets.Dataset.from_dict(
            {"tokens": ds["tokens"], "ner_tags": [tagger.schema.encode(p) for p in clean_pred],
             "doc_id": ds["doc_id"]}, features=features_of(tagger.schema))
        gold = clean_pred
    results = {"clean": {**_row(gold, clean_pred, None), "sentences_changed": 0}}
    for name in names:
        noisy = perturb_dataset(ds, name, rate, seed)
        pred, _ = tagger.predict_dataset(noisy)
        row = _row(tag_names(noisy), pred, results["clean"]["f1"])
        row["sentences_changed"] = sum(a != b for a, b in zip(ds["tokens"], noisy["tokens"]))
        results[name] = row
    return {"reference": reference, "rate": rate, "seed": seed, "sentences": len(ds),
            "words": sum(len(t) for t in ds["tokens"]), "results": results}
