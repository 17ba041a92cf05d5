"""Seeded synthetic CoNLL-style data for the offline profile (chapter "NER data and labels").

Newswire-like sentences built from templates, with person, company and place names drawn by
Faker from several locales, so that the offline profile has realistic-looking NER data and
no licence to worry about. Every name pool is split *by name* into train/valid/test parts:
a test sentence only mentions names never seen in training, so the score measures
generalisation, not memory.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache

import datasets

from nerbook.data import CONLL2003, LabelSchema, Sentence, sentences_to_dataset

LOCALES = ("en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL", "pt_BR", "pl_PL", "sv_SE")
SPLITS = ("train", "valid", "test")

_DEMONYMS = (
    "German French British Italian Spanish Dutch Brazilian Japanese Chinese Russian Polish Swedish "
    "Norwegian Danish Finnish Belgian Swiss Austrian Portuguese Greek Turkish Irish Scottish Welsh "
    "American Canadian Mexican Argentine Chilean Peruvian Australian Indian Pakistani Egyptian "
    "Nigerian Kenyan Israeli Iranian Iraqi Saudi Korean Thai Vietnamese Czech Slovak Hungarian "
    "Romanian Bulgarian Serbian Croatian Ukrainian Cuban Colombian"
).split()
_EVENT_PATTERNS = ("{} Open", "{} Marathon", "{} Grand Prix", "{} Masters", "{} Film Festival",
                   "{} Cup", "{} Classic", "{} Trophy")
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

# Slots: {PER} {ORG} {LOC}; {NAT} and {EVENT} are both MISC (a nationality, an event);
# {NUM}, {YEAR} and {DAY} are filled with plain words tagged O.
_TEMPLATES = (
    "{PER} , the chief executive of {ORG} , said on {DAY} that the company would expand in {LOC} .",
    "{ORG} shares rose {NUM} percent in {LOC} after the {NAT} announcement .",
    "{PER} scored twice as {ORG} beat {ORG} {NUM} - {NUM} in {LOC} on {DAY} .",
    "{PER} won the {EVENT} on {DAY} , beating {PER} in the final .",
    "The {NAT} delegation arrived in {LOC} on {DAY} for talks with {ORG} .",
    "{PER} told reporters in {LOC} that {ORG} had no comment .",
    "Shares of {ORG} fell {NUM} percent after {PER} resigned as chairman .",
    "{PER} ( {LOC} ) beat {PER} ( {LOC} ) {NUM} - {NUM} .",
    "Police in {LOC} arrested {NUM} people on {DAY} , a spokesman for {ORG} said .",
    "{NAT} voters in {LOC} went to the polls on {DAY} .",
    "{ORG} said it would open a new plant near {LOC} next year .",
    "The {EVENT} will be held in {LOC} in {YEAR} .",
    "{PER} was born in {LOC} in {YEAR} and joined {ORG} at {NUM} .",
    "{ORG} agreed to buy {ORG} for {NUM} million dollars , {PER} said .",
    "A {NAT} court in {LOC} sentenced {PER} to {NUM} years in prison .",
    "{PER} and {PER} will meet in {LOC} next week .",
    "{LOC} police said {NUM} people were hurt when a bus crashed near {LOC} .",
    "The index closed {NUM} points lower at {NUM} on {DAY} .",
    "Trading was thin ahead of the holiday , dealers said .",
    "{PER} , who coaches {ORG} , praised the {NAT} players .",
    "Officials from {ORG} visited {LOC} and {LOC} last month .",
    "{PER} said the {NAT} government would not change its policy .",
)


def split_of(name: str) -> str:
    """Stable 70/15/15 split of a name (or of the word that carries it) into train/valid/test by
    its hash (also :mod:`nerbook.continual`'s second domain)."""
    h = int(hashlib.md5(name.encode("utf-8")).hexdigest()[:8], 16) % 100
    return "train" if h < 70 else ("valid" if h < 85 else "test")


def tokenize_words(text: str) -> list[str]:
    """Split a name or template into CoNLL-style words (punctuation as its own word)."""
    return re.findall(r"[^\s,;:()\"]+|[,;:()\"]", text)


@lru_cache(maxsize=4)
def name_pools(seed: int = 0, locales: tuple[str, ...] = LOCALES, per_locale: int = 120) -> dict:
    """Pools of PER/ORG/LOC and MISC (NAT, EVENT) names split by name into train/valid/test (cached)."""
    from faker import Faker

    fake = Faker(list(locales))
    for loc in locales:  # it_IT builds its city list from a set: its order follows the hash seed
        for provider in fake[loc].providers:
            if isinstance(getattr(provider, "cities", None), list):
                provider.cities = sorted(provider.cities)
    fake.seed_instance(seed)
    raw: dict[str, set[str]] = {"PER": set(), "ORG": set(), "LOC": set(), "NAT": set(_DEMONYMS),
                                "EVENT": set()}
    for loc in locales:
        f = fake[loc]
        for _ in range(per_locale):
            raw["PER"].add(f"{f.first_name()} {f.last_name()}")
            if _ % 3 == 0:
                raw["PER"].add(f.last_name())  # surnames alone, as newswire repeats them
        for _ in range(per_locale // 2):
            raw["ORG"].add(f.company())
            city = f.city()
            raw["LOC"].add(city)
            if _ % 4 == 0:
                raw["EVENT"].add(_EVENT_PATTERNS[_ % len(_EVENT_PATTERNS)].format(city))
        for _ in range(per_locale // 8):
            raw["LOC"].add(f.country())
    pools: dict[str, dict[str, list[str]]] = {s: {t: [] for t in raw} for s in SPLITS}
    for typ, names in raw.items():
        for name in sorted(names):
            if tokenize_words(name):
                pools[split_of(name)][typ].append(name)
    return pools


def fill_template(template: str, pool: Mapping[str, list[str]], rng: random.Random,
                  fillers: Mapping[str, Callable[[], str]], misc_slots: Sequence[str]) -> tuple[list[str], list[str]]:
    """One sentence from ``template`` and its IOB2 tags: a ``{SLOT}`` of ``pool`` becomes a name
    drawn from it (its words tagged ``B-``/``I-`` SLOT, or MISC for ``misc_slots``); a slot of
    ``fillers`` becomes ``fillers[SLOT]()`` plus what follows the brace (``{NUM}th``), tagged O;
    any other word stays, tagged O. Also :mod:`nerbook.continual`'s second domain."""
    tokens: list[str] = []
    tags: list[str] = []
    for piece in template.split():
        slot = piece[1:].split("}")[0] if piece.startswith("{") else None
        if slot in pool:
            typ = "MISC" if slot in misc_slots else slot
            words = tokenize_words(rng.choice(pool[slot]))
            tokens += words
            tags += [f"B-{typ}"] + [f"I-{typ}"] * (len(words) - 1)
        elif slot in fillers:
            tokens.append(fillers[slot]() + piece.split("}", 1)[1])
            tags.append("O")
        else:
            tokens.append(piece)
            tags.append("O")
    return tokens, tags


def _fill(template: str, pool: dict[str, list[str]], rng: random.Random) -> tuple[list[str], list[str]]:
    """One newswire sentence: names from ``pool``, numbers, years and days as plain words."""
    fillers = {"NUM": lambda: str(rng.randint(2, 99)), "YEAR": lambda: str(rng.randint(1950, 2025)),
               "DAY": lambda: rng.choice(_DAYS)}
    return fill_template(template, pool, rng, fillers, misc_slots=("NAT", "EVENT"))


def synthetic_sentences(n: int, split: str = "train", seed: int = 0, long_fraction: float = 0.01,
                        locales: tuple[str, ...] = LOCALES) -> list[Sentence]:
    """``n`` sentences for ``split``, grouped into documents that open with a dateline.

    About ``long_fraction`` of the sentences are long (10-25 clauses, often over 128 subwords)
    so that the sliding-window code is exercised, as CoNLL-2003 has a few such sentences.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    pool = name_pools(seed, tuple(locales))[split]
    rng = random.Random(f"{seed}-{split}")
    out: list[Sentence] = []
    doc_id = 0
    while len(out) < n:
        # a document: a dateline ("BERLIN 1996-08-22"), then a few sentences
        place = tokenize_words(rng.choice(pool["LOC"]))
        date = f"{rng.randint(1990, 2025)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        out.append(Sentence([w.upper() for w in place] + [date],
                            ["B-LOC"] + ["I-LOC"] * (len(place) - 1) + ["O"], doc_id, 0))
        for _ in range(rng.randint(2, 10)):
            if len(out) >= n:
                break
            if rng.random() < long_fraction:
                toks: list[str] = []
                tags: list[str] = []
                for k in range(rng.randint(10, 25)):
                    t, g = _fill(rng.choice(_TEMPLATES), pool, rng)
                    if k:
                        toks.append(";")
                        tags.append("O")
                    toks += t[:-1]
                    tags += g[:-1]
                toks.append(".")
                tags.append("O")
            else:
                toks, tags = _fill(rng.choice(_TEMPLATES), pool, rng)
            out.append(Sentence(toks, tags, doc_id, 0))
        doc_id += 1
    return out[:n]


def synthetic_conll(n_train: int = 2000, n_valid: int = 400, n_test: int = 400, seed: int = 0,
                    long_fraction: float = 0.01, schema: LabelSchema = CONLL2003) -> datasets.DatasetDict:
    """Train/valid/test ``DatasetDict`` of synthetic CoNLL-style sentences (IOB2 tags).

    The three splits draw names from disjoint pools, so valid and test measure generalisation
    to unseen names.
    """
    sizes = {"train": n_train, "valid": n_valid, "test": n_test}
    return datasets.DatasetDict({
        split: sentences_to_dataset(synthetic_sentences(n, split, seed, long_fraction), schema)
        for split, n in sizes.items() if n > 0
    })


#: Topic words of :func:`synthetic_topics` (chapter "One recipe, many tasks").
TOPIC_WORDS = {
    "business": "shares profit bank market investors merger prices trade economy sales".split(),
    "sport": "match goal coach league striker season champions cup injury tournament".split(),
    "tech": "software chip phone internet robot startup computer network data users".split(),
}
_FILLER = ("the a new report says after this week city people plan big year today local news said "
           "more first two its over could make time back".split())


def synthetic_topics(n: int, seed: int = 0, topic_words: int = 2) -> tuple[list[str], list[str]]:
    """``(texts, labels)``: ``n`` headline-like texts of 6 to 12 words, each with ``topic_words``
    words of its topic (:data:`TOPIC_WORDS`) among common filler words, topics drawn uniformly.
    A bag-of-words model separates the topics perfectly: a test that a classifier can learn."""
    rng = random.Random(seed)
    texts, labels = [], []
    for _ in range(n):
        topic = rng.choice(sorted(TOPIC_WORDS))
        words = [rng.choice(_FILLER) for _ in range(rng.randint(6, 12) - topic_words)]
        for w in rng.sample(TOPIC_WORDS[topic], topic_words):
            words.insert(rng.randrange(len(words) + 1), w)
        texts.append(" ".join(words))
        labels.append(topic)
    return texts, labels
