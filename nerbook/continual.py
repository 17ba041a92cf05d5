"""Continual fine-tuning: a second data domain, forgetting, and replay (chapter "Deployment").

Step 5 of the fine-tuning recipe is to keep collecting data and fine-tune again. The new data
rarely looks like the old: other names, another register. This module builds such a shift and
measures what it does to a tagger.

- Domain A is :mod:`nerbook.synthetic`: newswire sentences ("Shares of X fell 3 percent ...").
- Domain B (:func:`synthetic_domain`) is short social-media, tech-news and product-review
  posts in lower case ("just got my Vexa Pro 3 from Pixelhive Labs and honestly it is great
  !"), with names no domain-A pool holds: persons and cities from Faker locales outside both
  :data:`nerbook.synthetic.LOCALES` and :data:`nerbook.perturb.HOLDOUT_LOCALES`, start-up
  companies, and MISC products and tech events. Like domain A, every pool is split by name
  into train/valid/test, so a test sentence only mentions unseen names.
- :func:`replay_mix` adds a share of old sentences to the new training data (*replay*, or
  rehearsal), the simplest guard against *catastrophic forgetting*.
- :func:`continual_experiment` trains on A, then continues on B with and without replay from
  the same weights, and scores every model on both domains' test sets.
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from functools import lru_cache

import datasets

from nerbook.data import CONLL2003, LabelSchema, Sentence, schema_of, sentences_to_dataset
from nerbook.synthetic import (
    SPLITS,
    fill_template,
    name_pools,
    split_of,
    synthetic_sentences,
    tokenize_words,
)

__all__ = [
    "DOMAINS", "DOMAIN_LOCALES", "TEMPLATES", "continual_experiment", "domain_pools", "domain_sentences",
    "replay_mix", "synthetic_domain", "synthetic_domain_splits",
]

#: ``"a"``: the newswire of :mod:`nerbook.synthetic`; ``"b"``: social media, tech news, reviews.
DOMAINS = ("a", "b")

#: Faker locales of domain B's persons and cities: in neither ``synthetic.LOCALES`` nor
#: ``perturb.HOLDOUT_LOCALES`` (whose names stay unseen by every model, even after domain B).
DOMAIN_LOCALES = ("fr_CA", "es_AR", "es_CO", "es_CL", "ro_RO", "hu_HU", "sk_SK", "sl_SI", "no_NO",
                  "id_ID", "en_IN", "nl_BE")

#: Domain B's posts. Slots: {PER} {ORG} {LOC}; {PROD} (a product) and {EVENT} are MISC; {NUM},
#: {MONEY} ($12m), {HANDLE} (@user) and {TAG} (#hashtag) are words tagged O.
TEMPLATES = (
    "just got my {PROD} from {ORG} and honestly it is great !",
    "{PER} is leaving {ORG} to start something new in {LOC} , sources say",
    "{HANDLE} have you tried the {PROD} yet ? the battery is wild",
    "{ORG} raises {MONEY} seed round led by {ORG} to grow in {LOC}",
    "live from {EVENT} : {PER} just demoed the {PROD} on stage",
    "{PROD} review : fast , quiet , but the {ORG} app keeps crashing",
    "who else is going to {EVENT} in {LOC} next month ? {TAG}",
    "{ORG} is hiring engineers in {LOC} , dm {PER} for details",
    "returned my {PROD} after {NUM} days , support at {ORG} never replied",
    "{PER} ( cto , {ORG} ) : we ship every friday",
    "{ORG} acquires {ORG} , deal number {NUM} this year",
    "thread : everything {ORG} announced at {EVENT} {TAG}",
    "{PER} and {PER} started {ORG} in a garage in {LOC}",
    "{NUM} / 10 for the {PROD} , would buy again",
    "outage at {ORG} again , half of {LOC} cannot log in lol",
    "new post : how {PER} scaled {ORG} to {NUM}k users",
    "{PROD} vs {PROD} : which one should i get ?",
    "big congrats to {PER} on joining {ORG} as head of design !",
    "{ORG} opens its first office in {LOC} {TAG}",
    "tickets for {EVENT} sold out in {NUM} minutes",
    "ok this update is actually good tbh",
    "{PER} from {LOC} won the pitch contest at {EVENT}",
)

_ROOTS = ("byte cloud data pixel quant nova zen flux loop spark hive mint orbit pulse stack vault wave "
          "kite lumen grid node bolt drift echo forge glow hatch jolt lark mesa nimbus opal prism quill "
          "relay sonic tide vertex whirl zephyr").split()
_ORG_SUFFIXES = ("Labs", "AI", "Robotics", "Systems", "Analytics", "Cloud", "Health", "Pay", "Bio", "")
_SYLLABLES = "ve xa lo mi ra zu ko ny ta qui so fe ri du pa no ly be ga tor vin"
_PRODUCT_LINES = ("Pro", "Air", "Max", "Mini", "Ultra", "Lite", "Go", "Plus", "Edge", "Neo")
_EVENT_PATTERNS = ("{} Tech Summit", "{} Hackathon", "{} Startup Week", "{} Dev Days", "{} Demo Day",
                   "{} AI Expo", "{} Web Conf", "{} Gaming Expo")
_HANDLES = ("@techwatch", "@gadgetguru", "@devnews", "@startupdaily", "@reviewbot", "@the_verge_fan",
            "@codequeen", "@pixelpusher", "@vcinsider", "@hwunboxed")
_HASHTAGS = ("#startups", "#tech", "#launchday", "#ai", "#hiring", "#review", "#gadgets", "#devlife")
_MISC_SLOTS = ("PROD", "EVENT")


def _faker_names(seed: int, per_locale: int) -> tuple[set[str], set[str]]:
    """Persons and cities from :data:`DOMAIN_LOCALES` (city lists sorted first: some locales
    build them from a set, whose order would follow the hash seed)."""
    from faker import Faker

    fake = Faker(list(DOMAIN_LOCALES))
    for loc in DOMAIN_LOCALES:
        for provider in fake[loc].providers:
            if isinstance(getattr(provider, "cities", None), list | set | frozenset):
                provider.cities = sorted(provider.cities)
    fake.seed_instance(f"nerbook-domain-b-{seed}")
    persons: set[str] = set()
    cities: set[str] = set()
    for loc in DOMAIN_LOCALES:
        f = fake[loc]
        for k in range(per_locale):
            persons.add(f"{f.first_name()} {f.last_name()}")
            if k % 2 == 0:
                cities.add(f.city())
    return persons, cities


def _invented_names(rng: random.Random, n: int) -> tuple[set[str], set[str]]:
    """Start-up companies (``Pixelhive Labs``) and products (``Vexa Pro 3``)."""
    syllables = _SYLLABLES.split()
    orgs: set[str] = set()
    products: set[str] = set()
    for _ in range(n):
        a, b = rng.sample(_ROOTS, 2)
        orgs.add(f"{a.capitalize()}{b} {rng.choice(_ORG_SUFFIXES)}".strip())
        brand = "".join(rng.sample(syllables, rng.randint(2, 3))).capitalize()
        line, num = rng.choice(_PRODUCT_LINES), rng.randint(2, 12)
        products.add(rng.choice((f"{brand} {line}", f"{brand} {line} {num}", f"{brand} {num}")))
    return orgs, products


@lru_cache(maxsize=4)
def domain_pools(seed: int = 0, per_locale: int = 60) -> dict[str, dict[str, list[str]]]:
    """Domain B's names by split, then slot: ``{"train": {"PER": [...], "ORG", "LOC", "PROD",
    "EVENT"}, "valid": ..., "test": ...}`` (sorted lists; cached).

    A name is left out if any pool of :func:`nerbook.synthetic.name_pools` (seed 0 or ``seed``,
    any split or type) or :func:`nerbook.perturb.holdout_names` holds it, in any case. The split
    is drawn from the name's hash: for a company or a product from its first word (``Pixelhive``
    in ``Pixelhive Labs``, ``Vexa`` in ``Vexa Pro 3``) and for an event from its city, so that
    no word of a test name is seen in training inside another name.
    """
    from nerbook.perturb import holdout_names

    seen = {n.lower() for s in {0, seed} for split in name_pools(s).values()
            for names in split.values() for n in names}
    seen |= {" ".join(words).lower() for names in holdout_names().values() for words in names}
    persons, cities = _faker_names(seed, per_locale)
    orgs, products = _invented_names(random.Random(f"nerbook-domain-b-names-{seed}"), 10 * per_locale)
    cities = {c for c in cities if c.lower() not in seen}
    events = {_EVENT_PATTERNS[i % len(_EVENT_PATTERNS)].format(c): c
              for i, c in enumerate(sorted(cities)) if i % 3 == 0}
    keyed = {"PER": {n: n for n in persons}, "LOC": {c: c for c in cities}, "EVENT": events,
             "ORG": {n: n.split()[0] for n in orgs}, "PROD": {n: n.split()[0] for n in products}}
    pools: dict[str, dict[str, list[str]]] = {s: {slot: [] for slot in keyed} for s in SPLITS}
    for slot, names in keyed.items():
        for name, key in sorted(names.items()):
            if name.lower() not in seen and tokenize_words(name):
                pools[split_of(key)][slot].append(name)
    return pools


def _fill(template: str, pool: Mapping[str, list[str]], rng: random.Random) -> tuple[list[str], list[str]]:
    """One post from ``template``: names drawn from ``pool``, IOB2 tags."""
    fillers = {"NUM": lambda: str(rng.randint(2, 99)), "MONEY": lambda: f"${rng.randint(2, 90)}m",
               "HANDLE": lambda: rng.choice(_HANDLES), "TAG": lambda: rng.choice(_HASHTAGS)}
    return fill_template(template, pool, rng, fillers, _MISC_SLOTS)


def domain_sentences(n: int, split: str = "train", seed: int = 0) -> list[Sentence]:
    """``n`` domain-B posts for ``split``, in threads of 1 to 4 posts (one ``doc_id`` each)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    pool = domain_pools(seed)[split]
    rng = random.Random(f"nerbook-domain-b-{seed}-{split}")
    out: list[Sentence] = []
    doc_id = 0
    while len(out) < n:
        for _ in range(min(rng.randint(1, 4), n - len(out))):
            tokens, tags = _fill(rng.choice(TEMPLATES), pool, rng)
            out.append(Sentence(tokens, tags, doc_id, 0))
        doc_id += 1
    return out


def synthetic_domain(n: int, seed: int = 0, domain: str = "b", split: str = "train",
                     schema: LabelSchema = CONLL2003) -> datasets.Dataset:
    """``n`` sentences of a data domain as a dataset in ``schema`` (CoNLL-2003's by default),
    with the columns of :func:`nerbook.synthetic.synthetic_conll`: ``domain="a"`` its
    newswire, ``"b"`` the social-media and tech posts of this module. Seeded: the same
    arguments give the same sentences."""
    if domain not in DOMAINS:
        raise ValueError(f"domain must be one of {DOMAINS}, got {domain!r}")
    sents = synthetic_sentences(n, split, seed) if domain == "a" else domain_sentences(n, split, seed)
    return sentences_to_dataset(sents, schema)


def synthetic_domain_splits(n_train: int = 400, n_valid: int = 100, n_test: int = 200, seed: int = 0,
                            domain: str = "b", schema: LabelSchema = CONLL2003) -> datasets.DatasetDict:
    """Train/valid/test splits of a domain (:func:`synthetic_domain`), their names disjoint;
    a split of size 0 is left out, as in :func:`nerbook.synthetic.synthetic_conll`."""
    sizes = {"train": n_train, "valid": n_valid, "test": n_test}
    return datasets.DatasetDict({split: synthetic_domain(n, seed, domain, split, schema)
                                 for split, n in sizes.items() if n > 0})


def replay_mix(new_ds: datasets.Dataset, old_ds: datasets.Dataset, share: float,
               seed: int = 0) -> datasets.Dataset:
    """The new training data plus ``round(share * len(new_ds))`` old sentences drawn without
    replacement, all shuffled; seeded by ``seed``. ``share=0`` returns ``new_ds`` itself.

    Both datasets must have the same features (one label schema). The replayed sentences get
    ``doc_id`` values after the new data's, so that no old sentence joins a new document.
    """
    if not share >= 0:
        raise ValueError(f"share must be >= 0, got {share}")
    if new_ds.features != old_ds.features:
        raise ValueError(f"the datasets differ in features: {new_ds.features} vs {old_ds.features}")
    k = round(share * len(new_ds))
    if k == 0:
        return new_ds
    if k > len(old_ds):
        raise ValueError(f"share {share} asks for {k} old sentences; there are {len(old_ds)}")
    rng = random.Random(f"nerbook-replay-{seed}")
    old = old_ds.select(sorted(rng.sample(range(len(old_ds)), k))).to_dict()
    offset = max(new_ds["doc_id"], default=-1) + 1
    old["doc_id"] = [d + offset for d in old["doc_id"]]
    rows = {c: list(v) + old[c] for c, v in new_ds.to_dict().items()}
    order = list(range(len(new_ds) + k))
    rng.shuffle(order)
    return datasets.Dataset.from_dict({c: [v[i] for i in order] for c, v in rows.items()}, features=new_ds.features)


def _test_split(ds: Mapping[str, datasets.Dataset]) -> datasets.Dataset:
    for split in ("test", "valid"):
        if split in ds:
            return ds[split]
    raise ValueError(f"no test or valid split to score on; splits: {list(ds)}")


def continual_experiment(model_name: str, old: Mapping[str, datasets.Dataset],
                         new: Mapping[str, datasets.Dataset], cfg=None, shares: Sequence[float] = (0.0, 0.5),
                         seed: int = 0) -> dict:
    """Train on the old domain (stage ``"A"``), then continue on the new one (stage ``"A->B"``)
    with each replay share of ``shares`` (0: the new data alone), every continuation from a
    deep copy of the stage-A model. Every model is scored on both domains' test splits (else
    valid).

    ``old``, ``new``: splits with ``train`` and ``test`` (or ``valid``). ``cfg``: a
    :class:`nerbook.train.TrainConfig` used for every stage; its seed is replaced by ``seed``,
    which also seeds the model's new head and the replay sample. No stage selects its epoch on a
    dev set: each trains ``cfg.epochs`` epochs, so the continuations differ in their data alone.
    A tiny model's tokenizer is trained on the old training sentences only.

    Returns ``{"model", "seed", "shares", "n_old_train", "n_new_train", "rows"}``; each row is
    ``{"stage", "share", "f1_old", "f1_new", "n_train", "seconds"}`` (``share`` None for "A").
    """
    from nerbook.model import load_model
    from nerbook.train import TrainConfig, evaluate, train

    cfg = replace(cfg or TrainConfig(), seed=seed)
    old_test, new_test = _test_split(old), _test_split(new)
    model, tokenizer = load_model(model_name, schema_of(old["train"]), texts=old["train"]["tokens"], seed=seed)

    def stage(name: str, share: float | None, start, data: datasets.Dataset) -> tuple[dict, object]:
        t0 = time.perf_counter()
        trained = train(start, tokenizer, data, None, cfg).model
        return {"stage": name, "share": share,
                "f1_old": evaluate(trained, tokenizer, old_test, cfg)["overall"]["f1"],
                "f1_new": evaluate(trained, tokenizer, new_test, cfg)["overall"]["f1"],
                "n_train": len(data), "seconds": time.perf_counter() - t0}, trained

    first, model_a = stage("A", None, model, old["train"])
    rows = [first]
    for share in shares:
        data = replay_mix(new["train"], old["train"], share, seed)
        rows.append(stage("A->B", float(share), copy.deepcopy(model_a), data)[0])
    return {"model": model_name, "seed": seed, "shares": [float(s) for s in shares],
            "n_old_train": len(old["train"]), "n_new_train": len(new["train"]), "rows": rows}
