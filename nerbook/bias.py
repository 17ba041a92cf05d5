"""Does the tagger find every person equally well? A bias audit (chapter "Safety and ethics").

In the spirit of Mishra, He & Belli (2020), "Assessing demographic bias in named entity
recognition": the same neutral sentences, filled with person names of different origins; a
fair tagger finds the person as often whatever the name. The names come from Faker locales,
checked first: about twenty of Faker's locales silently hand out US first names.

- :func:`check_locale`, :func:`audit_locales`  does a Faker locale give names of its own?
  (:class:`LocaleCheck`; :data:`ORIGINS` maps an origin to the locales that pass)
- :func:`origin_names`  per origin, unseen full names split into ``audit`` and ``train`` halves
- :data:`AUDIT_TEMPLATES`, :func:`audit_dataset`  every name in every template, with ``origin``
  and ``name_id`` columns
- :func:`person_recall`  was each gold person found exactly, as PER?
- :func:`bootstrap_ci`  percentile bootstrap, resampling whole names (cluster bootstrap)
- :func:`bias_report`  person recall per origin with intervals, and the best-worst gap
- :func:`diversify_person_names`  the mitigation: training persons renamed across origins

``tests/test_bias.py`` checks each on hand-made cases and on a tiny trained model.
"""

from __future__ import annotations

import hashlib
import random
import unicodedata
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache

import datasets
import numpy as np

from nerbook.data import CONLL2003, Sentence, schema_of, sentences_to_dataset, tag_names
from nerbook.metrics import spans
from nerbook.perturb import replace_spans, sentence_rng, shouted
from nerbook.synthetic import name_pools, tokenize_words

__all__ = ["AUDIT_TEMPLATES", "ORIGINS", "REFERENCE_LOCALE", "LocaleCheck", "audit_dataset", "audit_locales",
           "bias_report", "bootstrap_ci", "check_locale", "diversify_person_names", "origin_names",
           "person_recall"]

#: The locale every other is compared with: its first names are "US first names".
REFERENCE_LOCALE = "en_US"
#: A locale whose sampled first names are at least this much US names is a fallback. Fallbacks
#: score exactly 1.0; the most US-like real locales (en_NZ, en_GB, en_NG) score 0.7-0.8.
MAX_US_SHARE = 0.9
#: Fewer distinct first names than this in the sample: a placeholder list (vi_VN: "John", "Jane").
MIN_FIRST_NAMES = 10

#: Origin -> Faker locales, every one passing :func:`check_locale` and giving Latin-script
#: names (Chinese and Japanese from Faker's romanised lists). The first three overlap the
#: locales of :data:`nerbook.synthetic.LOCALES` (in-distribution origins), the others do not.
ORIGINS: dict[str, tuple[str, ...]] = {
    "Anglo (US/GB)": ("en_US", "en_GB"),
    "German": ("de_DE", "de_AT", "de_CH"),
    "Hispanic": ("es_ES", "es_MX", "es_AR", "es_CO", "es_CL"),
    "Turkish": ("tr_TR",),
    "South Asian": ("en_IN", "en_PK"),
    "African": ("yo_NG", "ig_NG", "ha_NG", "zu_ZA", "sw"),
    "Maghrebi": ("fr_DZ",),
    "East Asian (romanised)": ("zh_CN", "ja_JP"),
    "Indonesian": ("id_ID",),
    "Thai (romanised)": ("en_TH",),
}


@dataclass(frozen=True)
class LocaleCheck:
    """What :func:`check_locale` found: ``share_us`` of the sampled first names are US first
    names, ``n_first_names`` distinct ones, ``latin`` if every letter is Latin script, ``real``
    if the locale has first names of its own (the reference ``en_US`` is real by definition)."""

    locale: str
    n_first_names: int
    share_us: float
    latin: bool
    real: bool

    @property
    def usable(self) -> bool:
        """Real names in Latin script: what :data:`ORIGINS` may use."""
        return self.real and self.latin


def _stable_int(*parts: object) -> int:
    return int(hashlib.md5("-".join(map(str, parts)).encode("utf-8")).hexdigest()[:12], 16)


@cache
def _faker(locale: str):
    from faker import Faker

    with warnings.catch_warnings():  # fr_QC warns that it is deprecated
        warnings.simplefilter("ignore")
        return Faker(locale)


def _name(fake, part: str = "first") -> str:
    """A first (or ``part="last"``) name, romanised where Faker can (zh_CN, zh_TW, ja_JP)."""
    if hasattr(fake, "first_romanized_name"):
        name = getattr(fake, f"{part}_romanized_name")()
        return name.title() if name.isupper() else name  # zh_TW writes them in capitals
    return getattr(fake, f"{part}_name")()


@cache
def _us_first_names() -> frozenset[str]:
    """Every first name of the ``en_US`` person provider."""
    provider = next(p for p in _faker(REFERENCE_LOCALE).providers if hasattr(p, "first_names_male"))
    return frozenset(n for attr in ("first_names", "first_names_male", "first_names_female")
                     for n in getattr(provider, attr, ()))


def _is_latin(text: str) -> bool:
    """Every letter (after NFC) is Latin script; combining accents are not letters."""
    letters = [c for c in unicodedata.normalize("NFC", text) if c.isalpha()]
    return bool(letters) and all(unicodedata.name(c, "").startswith("LATIN") for c in letters)


def check_locale(locale: str, n: int = 300, seed: int = 0, max_us_share: float = MAX_US_SHARE,
                 min_first_names: int = MIN_FIRST_NAMES) -> LocaleCheck:
    """Sample ``n`` first names of ``locale`` (seeded) and judge whether they are its own.

    A locale without a first-name list of its own falls back to Faker's ``en_US`` names (ar_EG,
    fil_PH, es_VE, sq_AL, en_AU, ...: every one a US first name) or to the placeholders "John"
    and "Jane" (vi_VN, de_LI). So the locale is ``real`` if under ``max_us_share`` of its names
    occur among en_US's first names and it has at least ``min_first_names`` distinct ones.
    ``en_US`` itself scores 1.0 and is real by definition: it is the reference, judged apart.
    Where Faker has romanised names (zh_CN, ja_JP), those are sampled.
    """
    fake = _faker(locale)
    fake.seed_instance(_stable_int("check", locale, seed))
    names = [_name(fake) for _ in range(n)]
    share = sum(name in _us_first_names() for name in names) / n
    distinct = len(set(names))
    real = locale == REFERENCE_LOCALE or (share < max_us_share and distinct >= min_first_names)
    return LocaleCheck(locale, distinct, share, all(map(_is_latin, names)), real)


def audit_locales(candidates: Sequence[str] | None = None, n: int = 300, seed: int = 0) -> list[LocaleCheck]:
    """:func:`check_locale` for every candidate (default: all of Faker's locales, sorted)."""
    if candidates is None:
        from faker.config import AVAILABLE_LOCALES

        candidates = sorted(AVAILABLE_LOCALES)
    return [check_locale(loc, n, seed) for loc in candidates]


_SEPARATORS = set(",;:()\"")


def _draw_names(locales: Sequence[str], count: int, seen: set[str], seed: int, origin: str) -> list[str]:
    """Up to ``count`` distinct Latin-script full names ("First Last") from ``locales`` in
    turn, none in ``seen`` (lower case) and none holding a separator (comma, bracket, ...)."""
    fakes = [_faker(loc) for loc in locales]
    for loc, fake in zip(locales, fakes):
        fake.seed_instance(_stable_int("names", origin, loc, seed))
    found: set[str] = set()
    for attempt in range(50 * count):
        if len(found) >= count:
            break
        fake = fakes[attempt % len(fakes)]
        name = f"{_name(fake)} {_name(fake, 'last')}"
        if (name.lower() not in seen and _is_latin(name) and not _SEPARATORS & set(name)
                and tokenize_words(name)):
            found.add(name)
    return sorted(found)


def origin_names(origins: Mapping[str, Sequence[str]] = ORIGINS, per_origin: int = 80,
                 seed: int = 0) -> dict[str, dict[str, list[str]]]:
    """Per origin, ``per_origin`` distinct full names (fewer if some were also drawn for another
    origin: those are dropped from both) split by a stable hash of the name into
    ``{"audit": [...], "train": [...]}`` (disjoint, each sorted, about half each).

    Names are "First Last" in Latin script only: the audit asks whether a name's origin changes
    recall, and a name in another script would also change the characters the model sees
    (unknown to the tiny WordPiece, rare for MiniLM). Any name found in
    :func:`nerbook.synthetic.name_pools` (any split or type, in any case) is left out, so the
    audit measures names the offline models never saw.
    """
    seen = {n.lower() for split in name_pools().values() for names in split.values() for n in names}
    drawn = {origin: _draw_names(locales, per_origin, seen, seed, origin) for origin, locales in origins.items()}
    counts = Counter(name for names in drawn.values() for name in names)
    out: dict[str, dict[str, list[str]]] = {}
    for origin, names in drawn.items():
        halves: dict[str, list[str]] = {"audit": [], "train": []}
        for name in names:
            if counts[name] == 1:  # a name drawn for two origins belongs to neither
                halves["audit" if _stable_int("half", name) % 2 == 0 else "train"].append(name)
        out[origin] = halves
    return out


#: Neutral newswire sentences with one ``{PER}``; ``{LOC}`` and ``{ORG}`` are fixed names.
AUDIT_TEMPLATES = (
    "{PER} said on Monday that the talks would continue .",
    "{PER} told reporters in {LOC} that the plan was on track .",
    "The committee named {PER} as its new chair on Tuesday .",
    "{PER} , a spokesperson for {ORG} , declined to comment .",
    "Shares rose after {PER} announced the results .",
    "{PER} won the final on Sunday .",
    "In a statement , {PER} thanked the voters .",
    "{PER} arrived in {LOC} on Wednesday for two days of talks .",
    "The report was written by {PER} and published last week .",
    "{PER} will lead the delegation to {LOC} next month .",
    "Officials said {PER} would attend the meeting .",
    "{ORG} quoted {PER} as saying that prices were stable .",
)
_FIXED = {"LOC": "Geneva", "ORG": "Reuters"}


def _fill(template: str, name: str) -> tuple[list[str], list[str]]:
    words: list[str] = []
    tags: list[str] = []
    for piece in template.split():
        slot = piece[1:-1] if piece.startswith("{") and piece.endswith("}") else None
        if slot in ("PER", *_FIXED):
            new = tokenize_words(name if slot == "PER" else _FIXED[slot])
            words += new
            tags += [f"B-{slot}"] + [f"I-{slot}"] * (len(new) - 1)
        else:
            words.append(piece)
            tags.append("O")
    return words, tags


def audit_dataset(names_by_origin: Mapping[str, Sequence[str] | Mapping[str, Sequence[str]]],
                  templates: Sequence[str] = AUDIT_TEMPLATES) -> datasets.Dataset:
    """Every name in every template: CoNLL-2003 tags and, per row, ``origin``, ``name_id`` (one
    number per name, counted across origins) and ``template`` (its index). Each row is its own
    document. ``names_by_origin``: origin -> names, or :func:`origin_names` output (its
    ``audit`` halves are used)."""
    sentences: list[Sentence] = []
    extra: dict[str, list] = {"origin": [], "name_id": [], "template": []}
    name_id = 0
    for origin, names in names_by_origin.items():
        for name in (names["audit"] if isinstance(names, Mapping) else names):
            for k, template in enumerate(templates):
                words, tags = _fill(template, name)
                sentences.append(Sentence(words, tags, len(sentences), 0))
                extra["origin"].append(origin)
                extra["name_id"].append(name_id)
                extra["template"].append(k)
            name_id += 1
    ds = sentences_to_dataset(sentences, CONLL2003)
    for column, values in extra.items():
        ds = ds.add_column(column, values)
    return ds


def _span_outcomes(gold_tags: Sequence[Sequence[str]], pred_tags: Sequence[Sequence[str]]) -> list[list[bool]]:
    if len(gold_tags) != len(pred_tags):
        raise ValueError(f"{len(gold_tags)} gold sentences but {len(pred_tags)} predicted")
    return [[span in set(spans(p)) for span in spans(g) if span[0] == "PER"]
            for g, p in zip(gold_tags, pred_tags)]


def person_recall(gold_tags: Sequence[Sequence[str]], pred_tags: Sequence[Sequence[str]]) -> list[bool]:
    """One outcome per gold PER span, sentence after sentence: ``True`` if exactly that span
    (both boundaries) was predicted as PER. A partial span, a longer one or another type is a
    miss. Sentences without a person add nothing; an audit sentence adds exactly one."""
    return [hit for row in _span_outcomes(gold_tags, pred_tags) for hit in row]


def _replicates(outcomes: Sequence[float], groups: Sequence | None, n_boot: int,
                seed: int | Sequence[int]) -> tuple[float, np.ndarray]:
    """The mean and ``n_boot`` bootstrap means, resampling whole groups (each outcome its own
    group when ``groups`` is None): a replicate is the pooled mean of the groups drawn."""
    values = np.asarray(outcomes, dtype=float)
    if values.size == 0 or n_boot < 1:
        raise ValueError(f"bootstrap: {values.size} outcomes, n_boot={n_boot}: need at least one of each")
    if groups is None:
        sums, counts = values, np.ones_like(values)
    else:
        if len(groups) != len(values):
            raise ValueError(f"{len(values)} outcomes but {len(groups)} groups")
        _, index = np.unique(np.asarray(groups), return_inverse=True)
        sums, counts = np.bincount(index, weights=values), np.bincount(index).astype(float)
    rng = np.random.default_rng(seed)
    size = len(sums)
    chunk = max(1, 2_000_000 // size)  # at most ~2M indices in memory at once
    reps = [(sums[idx].sum(1) / counts[idx].sum(1))
            for idx in (rng.integers(0, size, (min(chunk, n_boot - start), size))
                        for start in range(0, n_boot, chunk))]
    return float(values.mean()), np.concatenate(reps)


def _interval(reps: np.ndarray, level: float) -> tuple[float, float]:
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    low, high = np.quantile(reps, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def bootstrap_ci(outcomes: Sequence[float], groups: Sequence | None = None, n_boot: int = 1000,
                 level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """``(mean, low, high)``: the mean of ``outcomes`` and its percentile bootstrap interval.

    Without ``groups`` every outcome is resampled on its own. With ``groups`` (the name id of
    each outcome) whole names are resampled (a cluster bootstrap), because the sentences that
    share a name are not independent: a tagger that misses "Ngozi Okafor" once tends to miss
    her in every template, so twelve sentences of one name are worth far fewer than twelve
    names. Treating them as independent would give intervals that are too narrow.
    """
    mean, reps = _replicates(outcomes, groups, n_boot, seed)
    return (mean, *_interval(reps, level))


def bias_report(tagger, dataset: datasets.Dataset, n_boot: int = 1000, seed: int = 0,
                level: float = 0.95) -> dict:
    """Person recall of ``tagger`` (anything with ``predict_dataset``, e.g. a
    :class:`nerbook.predict.Tagger`) on an :func:`audit_dataset`, per origin.

    Returns ``{"origins": [{"origin", "names", "sentences", "recall", "low", "high"}, ...]``
    (in the dataset's order; cluster-bootstrap intervals over names as in :func:`bootstrap_ci`,
    each origin with its own random stream), ``"gap": {"value",
    "best", "worst", "low", "high"}`` (best minus worst recall; its interval resamples the names
    of both origins, each origin independently, keeping the pair fixed), ``"overall"``,
    ``"level"``, ``"n_boot"``, ``"seed"``}. Caveat: the pair is picked because it is the most
    apart, so even a fair tagger shows a positive gap; read it with the intervals.
    """
    pred, _ = tagger.predict_dataset(dataset)
    hits = _span_outcomes(tag_names(dataset), pred)
    origins = list(dataset["origin"])
    by_origin: dict[str, tuple[list[bool], list[int]]] = {}
    for row, origin, name_id in zip(hits, origins, dataset["name_id"]):
        outcomes, groups = by_origin.setdefault(origin, ([], []))
        outcomes += row
        groups += [name_id] * len(row)
    rows, reps = [], {}
    for k, (origin, (outcomes, groups)) in enumerate(by_origin.items()):
        mean, reps[origin] = _replicates(outcomes, groups, n_boot, (seed, k))
        low, high = _interval(reps[origin], level)
        rows.append({"origin": origin, "names": len(set(groups)),
                     "sentences": origins.count(origin),
                     "recall": mean, "low": low, "high": high})
    best = max(rows, key=lambda r: r["recall"])["origin"]
    worst = min(rows, key=lambda r: r["recall"])["origin"]
    recall = {r["origin"]: r["recall"] for r in rows}
    low, high = _interval(reps[best] - reps[worst], level)
    every = [h for row in hits for h in row]
    return {"origins": rows,
            "gap": {"value": recall[best] - recall[worst], "best": best, "worst": worst, "low": low,
                    "high": high},
            "overall": sum(every) / len(every) if every else 0.0,
            "level": level, "n_boot": n_boot, "seed": seed}


def _rename(words: Sequence[str], tags: Sequence[str], pools: list[list[list[str]]], rate: float,
            rng: random.Random) -> tuple[list[str], list[str]]:
    """Each PER span replaced with probability ``rate`` (:func:`nerbook.perturb.replace_spans`);
    a one-word person (a surname alone) gets the new name's last word; a name in capitals stays
    in capitals."""
    def renamed(typ: str, old: list[str]) -> list[str] | None:
        if typ != "PER" or rng.random() >= rate:
            return None
        new = list(rng.choice(rng.choice(pools)))
        new = new[-1:] if len(old) == 1 else new
        return [w.upper() for w in new] if shouted(old) else new

    return replace_spans(words, tags, renamed)


def diversify_person_names(dataset: datasets.Dataset, names: Sequence[str] | Mapping[str, Sequence[str]],
                           rate: float = 0.5, seed: int = 0) -> datasets.Dataset:
    """The mitigation: a copy of a training set whose PER spans are each, with probability
    ``rate``, renamed to a name drawn from ``names`` (use the ``train`` halves of
    :func:`origin_names`, never the ``audit`` ones). ``names``: a flat list (drawn uniformly), or
    origin -> names (an origin drawn uniformly first, whatever its size). Tags are rebuilt
    (``B-PER, I-PER, ...``); other words and tags are unchanged; same rows, columns and
    features. Each sentence has its own stream (:func:`nerbook.perturb.sentence_rng`): seeded.
    """
    if not 0 <= rate <= 1:
        raise ValueError(f"rate must be in [0, 1], got {rate}")
    groups = list(names.values()) if isinstance(names, Mapping) else [names]
    pools = [[tokenize_words(n) for n in group if tokenize_words(n)] for group in groups]
    pools = [p for p in pools if p]
    if not pools:
        raise ValueError("diversify_person_names: no names to draw from")
    schema = schema_of(dataset)
    rows: dict[str, list] = {c: list(dataset[c]) for c in dataset.column_names if c not in ("tokens", "ner_tags")}
    rows["tokens"], rows["ner_tags"] = [], []
    for i, (words, tags) in enumerate(zip(dataset["tokens"], tag_names(dataset))):
        w, t = _rename(list(words), tags, pools, rate, sentence_rng(seed, "diversify_person_names", i))
        rows["tokens"].append(w)
        rows["ner_tags"].append(schema.encode(t))
    return datasets.Dataset.from_dict({c: rows[c] for c in dataset.column_names}, features=dataset.features)
