"""Evaluating PII detection: a seeded synthetic corpus with exact gold spans, and per-type
precision, recall and recall-weighted F2 (chapter "Safety and ethics").

- :func:`synthetic_pii_corpus`  templated texts (an e-mail signature, a support ticket, a bank
  transfer, server logs, chat messages...) filled by Faker with names no synthetic-trained model
  has seen (:func:`nerbook.perturb.holdout_names`), e-mails, phones of several countries, valid
  card numbers and IBANs, IPv4 and IPv6 addresses, among dates, amounts and versions that are
  not personal data
- :func:`evaluate_spans`  the scores, per PII type and for ``ANY`` (was it hidden at all?)

The scoring follows Microsoft's presidio-research evaluator in spirit: per-type precision,
recall and F-beta with beta = 2 (missing personal data costs more than hiding a harmless word),
spans matched by character overlap, and a global row that ignores the type. Presidio's
``SpanEvaluator`` thresholds the character IoU of a gold span with its same-type predictions;
we use coverage instead, which a reader can check by eye:

- a gold span is *found* when predictions of its type cover at least half of its characters;
- a predicted span is *correct* when gold spans of its type cover at least half of its characters.

Recall = found / gold spans; precision = correct / predicted spans;
F-beta = (1 + beta^2) P R / (beta^2 P + R), and 0 where a ratio has no denominator.
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections.abc import Iterable, Sequence

__all__ = ["CORPUS_TEMPLATES", "covered", "evaluate_spans", "scores_table", "synthetic_pii_corpus"]

#: One line each; ``{TYPE}`` slots are personal data (gold spans), ``{lower}`` slots are not.
CORPUS_TEMPLATES = (
    "Best regards, {PERSON} | {ORGANIZATION} | {LOCATION} | Tel. {PHONE} | {EMAIL}",
    "Ticket #{order} opened by {PERSON} ({EMAIL}) on {date}: cannot log in from {IP_ADDRESS} "
    "since version {version}.",
    "Transfer of {amount} to {PERSON}, IBAN {IBAN}, reference invoice {order} of {date}.",
    "{date} {time} sshd[{count}]: Failed password for invalid user admin from {IP_ADDRESS} port "
    "{port} ssh2",
    "hey {FIRST}! just landed in {LOCATION} 🙂 call me on {PHONE} when you're free",
    "Please charge my card {CREDIT_CARD} for order {order} ({amount}). Thanks, {PERSON}",
    "Meeting with {PERSON} of {ORGANIZATION} moved to {time} on {date} in {LOCATION}.",
    "担当者: {PERSON} 様 / 電話 {PHONE} / メール {EMAIL} / 会社 {ORGANIZATION}",
    "Customer {PERSON} paid with {CREDIT_CARD} at the {LOCATION} store of {ORGANIZATION} on {date}.",
    "[{date} {time}] GET /api/v{version}/users 200 from {IP_ADDRESS} ({LOCATION})",
    "👩🏽‍💻 {PERSON} joined the #ops channel: ping {EMAIL} or {PHONE} 🇯🇵",
    "Dear {PERSON}, your refund of {amount} will be sent to {IBAN} within 5 working days. "
    "{ORGANIZATION}",
    "Contact form: name={PERSON}; email={EMAIL}; phone={PHONE}; message=Please call back after "
    "{time}.",
    "شكرا {PERSON}! The {ORGANIZATION} office in {LOCATION} received your documents. שלום!",
    "Firewall blocked {IP_ADDRESS} -> {IP_ADDRESS} port 443 after {count} failed attempts at {time}.",
    "Wire {amount} from {IBAN} to {ORGANIZATION}, {LOCATION}; contact {PERSON}, {PHONE}.",
    "Version {version} released on {date}; {count} bugs fixed, see build {order} ({amount} saved).",
)

_PHONE_LOCALES = ("en_US", "en_GB", "de_DE", "fr_FR", "de_CH", "ja_JP", "cs_CZ", "en_AU", "nl_NL")
_IBAN_LOCALES = ("de_DE", "fr_FR", "en_GB", "nl_NL", "es_ES", "it_IT", "de_AT", "fi_FI", "pt_PT",
                 "pl_PL")
_EMAIL_LOCALES = ("en_AU", "en_IE", "de_AT", "fi_FI", "da_DK", "cs_CZ")
_CARDS = ("visa16", "visa13", "visa19", "mastercard", "amex", "discover", "jcb16", "jcb15", "diners")


def _grouped(number: str, sizes: Sequence[int], sep: str) -> str:
    out, pos = [], 0
    for size in sizes:
        out.append(number[pos:pos + size])
        pos += size
    return sep.join([*out, number[pos:]] if pos < len(number) else out)


def _card(fake, rng: random.Random) -> str:
    """A valid card number, plain or grouped as printed (4-4-4-4, 4-6-5 for 15 digits...)."""
    number = fake.credit_card_number(card_type=rng.choice(_CARDS))
    style = rng.choice(("plain", " ", "-"))
    if style == "plain":
        return number
    sizes = {13: (4, 3, 3, 3), 14: (4, 6, 4), 15: (4, 6, 5)}.get(len(number), (4,) * (len(number) // 4))
    return _grouped(number, sizes, style)


def _ip(fake, rng: random.Random) -> str:
    return rng.choice((fake.ipv4_public, fake.ipv4_private, fake.ipv6))()


def _ascii(name: str) -> str:
    return unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()


def _email(fake, rng: random.Random, person: str | None) -> str:
    """Faker's e-mail, or one made from the text's person (``first.last@domain``)."""
    words = re.findall(r"[a-z]+", _ascii(person or ""))
    if len(words) >= 2 and rng.random() < 0.5:
        return f"{words[0]}.{words[-1]}@{fake.free_email_domain()}"
    return rng.choice((fake.email, fake.free_email, fake.company_email))()


def _filler(slot: str, rng: random.Random) -> str:
    """Text that looks like numbers a PII detector might mistake: dates, times, amounts..."""
    day, month, year = rng.randint(1, 28), rng.randint(1, 12), rng.randint(2015, 2025)
    return rng.choice({
        "date": (f"{year}-{month:02d}-{day:02d}", f"{day:02d}/{month:02d}/{year}",
                 f"{day}.{month}.{year}", f"March {day}, {year}"),
        "time": (f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}",
                 f"{rng.randint(1, 12)}:{rng.randint(0, 59):02d} pm"),
        "amount": (f"€{rng.randint(1, 9)},{rng.randint(100, 999)}.{rng.randint(0, 99):02d}",
                   f"$ {rng.randint(10, 99)} {rng.randint(100, 999)}", f"{rng.randint(2, 999)} EUR",
                   f"1 {rng.randint(100, 999)} 000 CHF"),
        "order": (str(rng.randint(10000, 99999)), f"A-{year}-{rng.randint(1, 9999):04d}"),
        "version": (f"{rng.randint(1, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}",
                    f"{rng.randint(1, 3)}.{rng.randint(0, 9)}"),
        "count": (str(rng.randint(2, 9999)),), "port": (str(rng.randint(1024, 65535)),),
    }[slot])


class _Filler:
    """Fills slots for one corpus: seeded Faker instances per locale and the held-out names."""

    def __init__(self, seed: int) -> None:
        from faker import Faker

        from nerbook.perturb import holdout_names
        from nerbook.synthetic import name_pools

        self.rng = random.Random(f"pii-corpus-{seed}")
        self.names = {t: [" ".join(n) for n in ns] for t, ns in holdout_names().items()}
        seen = {n.lower() for split in name_pools().values() for ns in split.values() for n in ns}
        self.names["FIRST"] = sorted({n.split()[0] for n in self.names["PER"]
                                      if n.split()[0].lower() not in seen})
        self.fakers = {}
        for loc in sorted({*_PHONE_LOCALES, *_IBAN_LOCALES, *_EMAIL_LOCALES, "en_US"}):
            self.fakers[loc] = Faker(loc)
            self.fakers[loc].seed_instance(f"{seed}-{loc}")

    def fake(self, locales: Sequence[str]):
        return self.fakers[self.rng.choice(locales)]

    def value(self, slot: str, person: str | None) -> str:
        rng = self.rng
        if slot in ("PERSON", "FIRST"):  # a first name alone: one no training name equals
            return rng.choice(self.names["PER" if slot == "PERSON" else "FIRST"])
        if slot in ("ORGANIZATION", "LOCATION"):
            return rng.choice(self.names["ORG" if slot == "ORGANIZATION" else "LOC"])
        if slot == "EMAIL":
            return _email(self.fake(_EMAIL_LOCALES), rng, person)
        if slot == "PHONE":
            return self.fake(_PHONE_LOCALES).phone_number()
        if slot == "IBAN":
            iban = self.fake(_IBAN_LOCALES).iban()
            return _grouped(iban, (4,) * (len(iban) // 4), " ") if rng.random() < 0.5 else iban
        if slot == "CREDIT_CARD":
            return _card(self.fakers["en_US"], rng)
        if slot == "IP_ADDRESS":
            return _ip(self.fakers["en_US"], rng)
        return _filler(slot, rng)


def synthetic_pii_corpus(n: int, seed: int = 0) -> list[dict]:
    """``n`` texts ``{"text": str, "spans": [(type, start, end), ...]}`` from
    :data:`CORPUS_TEMPLATES`; ``text[start:end]`` is exactly the value filled in for a slot of
    ``type`` (``PERSON`` for a first name alone too). The same seed gives the same corpus.
    """
    filler = _Filler(seed)
    corpus = []
    for _ in range(n):
        template = filler.rng.choice(CORPUS_TEMPLATES)
        text, spans, person = "", [], None
        for piece in re.split(r"(\{\w+\})", template):
            slot = piece[1:-1] if piece.startswith("{") and piece.endswith("}") else None
            value = piece if slot is None else filler.value(slot, person)
            if slot and slot.isupper():
                typ = "PERSON" if slot == "FIRST" else slot
                spans.append((typ, len(text), len(text) + len(value)))
                person = value if typ == "PERSON" else person
            text += value
        corpus.append({"text": text, "spans": spans})
    return corpus


def _triples(spans: Iterable) -> list[tuple[str, int, int]]:
    """``(type, start, end)`` of tuples, :class:`~nerbook.pii.PiiSpan` s or records (dicts)."""
    out = []
    for s in spans:
        if isinstance(s, dict):
            out.append((s["type"], s["start"], s["end"]))
        elif isinstance(s, tuple):
            out.append((s[0], s[1], s[2]))
        else:
            out.append((s.type, s.start, s.end))
    return out


def covered(start: int, end: int, others: Iterable[tuple[int, int]]) -> bool:
    """Whether the union of ``others`` covers at least half the characters of ``[start, end)``."""
    marks = set()
    for s, e in others:
        marks.update(range(max(s, start), min(e, end)))
    return 2 * len(marks) >= end - start > 0


def _ratio(num: int, den: int) -> float:
    return num / den if den else 0.0


def _row(found: int, gold: int, correct: int, predicted: int, beta: float) -> dict:
    p, r = _ratio(correct, predicted), _ratio(found, gold)
    f = (1 + beta ** 2) * p * r / (beta ** 2 * p + r) if p + r > 0 else 0.0
    return {"precision": p, "recall": r, f"f{beta:g}": f, "support": gold, "predicted": predicted}


def evaluate_spans(gold: Sequence[Iterable], predicted: Sequence[Iterable], beta: float = 2.0) -> dict:
    """Precision, recall and F-beta (key ``f2`` for the default beta = 2) per PII type and for
    ``ANY`` (types ignored), with ``support`` (gold spans) and ``predicted`` (predicted spans).

    ``gold`` and ``predicted``: for each text, its spans as ``(type, start, end)`` tuples,
    :class:`~nerbook.pii.PiiSpan` s or redaction records. Matching rules: the module docstring.
    """
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold texts but {len(predicted)} predicted")
    counts: dict[str, list[int]] = {}  # type -> [found, gold, correct, predicted]
    for g_spans, p_spans in zip(gold, predicted):
        g, p = _triples(g_spans), _triples(p_spans)
        for typ in {t for t, _, _ in g + p} | {"ANY"}:
            g_t = [(s, e) for t, s, e in g if typ in (t, "ANY")]
            p_t = [(s, e) for t, s, e in p if typ in (t, "ANY")]
            c = counts.setdefault(typ, [0, 0, 0, 0])
            c[0] += sum(covered(s, e, p_t) for s, e in g_t)
            c[1] += len(g_t)
            c[2] += sum(covered(s, e, g_t) for s, e in p_t)
            c[3] += len(p_t)
    order = sorted(t for t in counts if t != "ANY") + ["ANY"]
    return {t: _row(*counts[t], beta) for t in order}


def scores_table(scores: dict) -> str:
    """:func:`evaluate_spans`'s result as a fixed-width text table."""
    fkey = next(k for k in scores["ANY"] if k.startswith("f"))
    lines = [f"{'type':<14}{'precision':>10}{'recall':>10}{fkey:>8}{'support':>9}{'predicted':>11}"]
    for typ, r in scores.items():
        lines.append(f"{typ:<14}{r['precision']:>10.4f}{r['recall']:>10.4f}{r[fkey]:>8.4f}"
                     f"{r['support']:>9}{r['predicted']:>11}")
    return "\n".join(lines)
