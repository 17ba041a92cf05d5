"""Pattern PII: e-mail addresses, phone numbers, credit cards, IBANs and IP addresses, found
by regular expressions and checked where a checksum exists (chapter "Safety and ethics").

A name needs a model (:mod:`nerbook.redact` adds the tagger's PER, ORG and LOC); much other
personal data has a shape that a pattern finds more reliably than any model:

- :func:`luhn_valid`  the Luhn check digit of payment card numbers (13-19 digits)
- :func:`iban_valid`  an IBAN's ISO 13616 check: the country's length, then mod 97 == 1
- :func:`find_patterns`  every match as a :class:`PiiSpan` with character offsets
- :func:`merge_spans`  one span where several overlap (a pattern wins; else the longer)
- :func:`redact_text`  each span replaced by a typed placeholder (``<EMAIL>``, ``<PERSON>``...)
  and a log of the replacements, which by default does not repeat what it removed

Offsets are Python string indices (code points), the same as :func:`nerbook.predict.split_words`
uses: right for any script, emoji sequences included. The patterns are ASCII-only (``re.ASCII``):
a digit run glued to a CJK character (``電話03-1234-5678``) is still found, while one glued to a
Latin letter or digit (``ID4111111111111111``) is not.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["IBAN_LENGTHS", "PATTERN_TYPES", "PRESIDIO_NAMES", "PiiSpan", "find_patterns",
           "iban_valid", "luhn_valid", "merge_spans", "placeholder", "redact_text"]

#: The pattern types, in the order :func:`find_patterns` claims text: a later type never takes
#: characters an earlier one holds (a card number is not also a phone number).
PATTERN_TYPES = ("EMAIL", "IBAN", "CREDIT_CARD", "IP_ADDRESS", "PHONE")

#: Our short placeholder names -> the entity names of Microsoft Presidio's recognizers.
PRESIDIO_NAMES = {"EMAIL": "EMAIL_ADDRESS", "PHONE": "PHONE_NUMBER", "IBAN": "IBAN_CODE",
                  "CREDIT_CARD": "CREDIT_CARD", "IP_ADDRESS": "IP_ADDRESS", "PERSON": "PERSON",
                  "ORGANIZATION": "ORGANIZATION", "LOCATION": "LOCATION"}

#: IBAN length by country (ISO 13616 registry): the SEPA countries and a few neighbours.
IBAN_LENGTHS = {
    "AD": 24, "AL": 28, "AT": 20, "BA": 20, "BE": 16, "BG": 22, "CH": 21, "CY": 28, "CZ": 24,
    "DE": 22, "DK": 18, "EE": 20, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GI": 23,
    "GL": 18, "GR": 27, "HR": 21, "HU": 28, "IE": 22, "IS": 26, "IT": 27, "LI": 21, "LT": 20,
    "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MT": 31, "NL": 18, "NO": 15,
    "PL": 28, "PT": 25, "RO": 24, "RS": 22, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TR": 26,
    "UA": 29, "VA": 22, "XK": 20,
}


@dataclass(frozen=True)
class PiiSpan:
    """``text[start:end]`` is personal data of ``type`` (``EMAIL``, ``PERSON``, ...), found by a
    ``"pattern"`` or the ``"model"`` (or ``"repeat"``: another occurrence of a found text)."""

    type: str
    start: int
    end: int
    text: str
    source: str = "pattern"
    score: float = 1.0


def placeholder(pii_type: str) -> str:
    """What replaces personal data of ``pii_type``: ``<EMAIL>``, ``<PERSON>``, ..."""
    return f"<{pii_type}>"


def luhn_valid(number: str) -> bool:
    """Whether ``number`` (spaces and dashes allowed) is 13-19 digits with a valid Luhn check
    digit: doubling every second digit from the right, the digit sum is a multiple of 10."""
    digits = number.replace(" ", "").replace("-", "")
    if not (13 <= len(digits) <= 19 and digits.isascii() and digits.isdigit()):
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def iban_valid(text: str) -> bool:
    """Whether ``text`` (spaces allowed, any case) is an IBAN of a country in
    :data:`IBAN_LENGTHS`, of that country's length, whose ISO 13616 check holds: the first four
    characters moved to the end, letters read as 10..35, the number mod 97 is 1."""
    iban = text.replace(" ", "").upper()
    if not (iban.isascii() and iban.isalnum() and iban[2:4].isdigit()):
        return False
    if IBAN_LENGTHS.get(iban[:2]) != len(iban):
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


_EMAIL_RE = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9](?:[\w.%+-]*[\w%+-])?@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,24}(?![\w@-])", re.ASCII)
_IPV4_RE = re.compile(r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}"
                      r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![\w]|\.\d)", re.ASCII)
_IPV6_RE = re.compile(r"(?<![\w:.])[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*", re.ASCII)
_IBAN_RE = re.compile(r"(?<!\w)[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,31}", re.ASCII)
#: A card number: 13-19 digits, plain or in groups (the first of four) with one kind of separator;
#: no issuer's number starts with 0.
_CARD_RE = re.compile(r"(?<![\w+-])[1-9](?:\d{3}([ -])\d{1,6}(?:\1\d{1,6}){1,4}(?![\w-])|\d{12,18}(?!\w))",
                      re.ASCII)
_PHONE_RE = re.compile(r"""
    (?<![\w+/.-])
    (?: \+?\d{7,15}                     # a plain run of digits, maybe with a +
      | (?:\+|\(\+)?                     # or groups: the + of a country code, maybe bracketed,
        (?:\(\d{1,5}\)[ .-]?\d{1,12} | \d{1,5})   # an area code in brackets or a first group,
        (?:(?:[ .-]|/|-?\(0\)-?|[ ]?\(0\)[ ]?|\)[ ]?)\d{1,12}){0,6}  # then separator, digits
    )
    (?:[ ]?(?:x|ext\.?|extension)[ ]?\d{1,6})?   # an extension
    (?![\w/-]|[.:]\d)                # not a date's hour (``12.03.2024 9:30``), a port""", re.ASCII | re.VERBOSE)
#: Digits in groups that are not phone numbers: dates (``2024-03-12``, ``12.03.24``), a span of
#: years (``2019-2023``), amounts in thousands (``1 250 000``), IPv4-like numbers.
_NOT_PHONE_RE = re.compile(r"""
    \d{4}[-./]\d{1,2}[-./]\d{1,2} | \d{1,2}[-./]\d{1,2}[-./](?:\d{4}|\d{2})
    | (?:1[89]|20)\d\d-(?:1[89]|20)\d\d
    | [1-9]\d{0,2}(?:[ .]\d{3})+
    | \d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}""", re.ASCII | re.VERBOSE)


def _emails(text: str) -> Iterable[tuple[int, int, float]]:
    for m in _EMAIL_RE.finditer(text):
        yield m.start(), m.end(), 1.0


def _ibans(text: str) -> Iterable[tuple[int, int, float]]:
    """A candidate is cut at its country's length (spaces not counted), so that a word in
    capitals after it is not taken in; it must then end at a word boundary and pass the check."""
    for m in _IBAN_RE.finditer(text):
        want = IBAN_LENGTHS.get(m.group()[:2])
        if want is None:
            continue
        end, seen = m.start(), 0
        while seen < want and end < m.end():
            seen += text[end] != " "
            end += 1
        after = text[end:end + 1]
        if seen == want and not (after.isascii() and (after.isalnum() or after == "_")) \
                and iban_valid(text[m.start():end]):
            yield m.start(), end, 1.0


def _cards(text: str) -> Iterable[tuple[int, int, float]]:
    """Digit runs of 13-19 digits, plain or in groups; when the whole run fails the Luhn check,
    dropping groups from its end may leave a valid number (``4111 1111 1111 1111 2025``)."""
    for m in _CARD_RE.finditer(text):
        groups = list(re.finditer(r"\d+", m.group()))
        for k in range(len(groups), 0, -1):
            end = m.start() + groups[k - 1].end()
            if luhn_valid(text[m.start():end]):
                yield m.start(), end, 1.0
                break


def _ips(text: str) -> Iterable[tuple[int, int, float]]:
    """IPv6 first: an IPv4 address inside one (``::ffff:10.0.0.1``) is part of it."""
    for m in _IPV6_RE.finditer(text):
        cand = m.group()
        for cut in (cand, cand.rstrip("."), cand.rstrip(".:")):  # a sentence's full stop, a colon
            if _ipv6_ok(cut, text[m.start() + len(cut):m.start() + len(cut) + 1]):
                yield m.start(), m.start() + len(cut), 1.0
                break
    for m in _IPV4_RE.finditer(text):
        yield m.start(), m.end(), 1.0


def _ipv6_ok(cut: str, after: str) -> bool:
    """Whether ``cut`` (a candidate or its head) is an IPv6 address with 2+ hex digits, not
    glued to the word ``after`` it."""
    if len(cut) < 3 or sum(c not in ":." for c in cut) < 2 or (after.isascii() and after.isalnum()):
        return False
    try:
        ipaddress.IPv6Address(cut)
    except ValueError:
        return False
    return True


#: Words that make a plain run of digits a phone number when they come just before it.
_PHONE_CONTEXT_RE = re.compile(r"phone|tel\b|tel\.|call|mobile|cell|fax|whatsapp|contact|電話|携帯",
                               re.IGNORECASE)


def _phones(text: str) -> Iterable[tuple[int, int, float]]:
    """Numbers of 7-15 digits written as phone numbers: with a ``+`` or in groups (spaces,
    dashes, dots, slashes, brackets); a date, a span of years, a thousands-grouped amount or an
    IPv4-like number is not one. A plain run of 8-12 digits is one only after a context word
    (``phone``, ``tel.``, ``call``, ``mobile``... in the 40 characters before), as Presidio's
    phone recognizer boosts its score with such words; it scores 0.6, the others 0.8."""
    for m in _PHONE_RE.finditer(text):
        body = re.split(r" ?(?:x|ext\.?|extension) ?\d", m.group(), maxsplit=1)[0]
        digits = sum(c.isdigit() for c in body)
        if not 7 <= digits <= 15 or _NOT_PHONE_RE.fullmatch(body):
            continue
        if not body.isdigit():
            yield m.start(), m.end(), 0.8
        elif 8 <= digits <= 12 and _PHONE_CONTEXT_RE.search(text, max(0, m.start() - 40), m.start()):
            yield m.start(), m.end(), 0.6


_FINDERS = {"EMAIL": _emails, "IBAN": _ibans, "CREDIT_CARD": _cards, "IP_ADDRESS": _ips,
            "PHONE": _phones}


def find_patterns(text: str, types: Iterable[str] | None = None) -> list[PiiSpan]:
    """Every pattern PII in ``text``, sorted by start, none overlapping another.

    Types are matched in :data:`PATTERN_TYPES` order, and a match that overlaps one already
    taken is dropped: an IBAN's digits are not also a phone number, an e-mail's digits not a
    card. ``types``: only these (default: all). Checksummed and validated matches (IBAN, card,
    IP address, e-mail) score 1.0, phone numbers 0.8 (a shape, no check).
    """
    wanted = PATTERN_TYPES if types is None else [t for t in PATTERN_TYPES if t in set(types)]
    taken: list[PiiSpan] = []
    for typ in wanted:
        for start, end, score in _FINDERS[typ](text):
            if not any(s.start < end and start < s.end for s in taken):
                taken.append(PiiSpan(typ, start, end, text[start:end], "pattern", score))
    return sorted(taken, key=lambda s: (s.start, s.end))


_SOURCE_RANK = {"pattern": 0, "model": 1, "repeat": 2}
_WORD = re.compile(r"\w")


def _outside(span: PiiSpan, taken: list[PiiSpan]) -> list[PiiSpan]:
    """The parts of ``span`` that no span of ``taken`` covers, trimmed to start and end on a word
    character (parts without one are dropped)."""
    parts, pos = [], span.start
    for t in sorted(taken, key=lambda t: t.start):
        if t.start < span.end and span.start < t.end:
            parts.append((pos, max(pos, t.start)))
            pos = max(pos, t.end)
    parts.append((pos, span.end))
    out = []
    for a, b in parts:
        piece = span.text[a - span.start:b - span.start]
        hits = [m.start() for m in _WORD.finditer(piece)]
        if hits:
            out.append(PiiSpan(span.type, a + hits[0], a + hits[-1] + 1,
                               piece[hits[0]:hits[-1] + 1], span.source, span.score))
    return out


def merge_spans(spans: Iterable[PiiSpan]) -> list[PiiSpan]:
    """Non-overlapping spans sorted by start. A pattern span wins over any model or repeat span it
    overlaps (a checksum or a shape is surer than a tagger's type), and the other span keeps only
    its parts outside the pattern, so nothing it covered escapes redaction. Otherwise the longer
    span is kept; between equally long ones the model beats a repeat; then the higher score, the
    earlier start and the type's name (so the result never depends on input order)."""
    def rank(s: PiiSpan) -> tuple:
        return -(s.end - s.start), _SOURCE_RANK.get(s.source, 9), -s.score, s.start, s.type, s.end

    kept: list[PiiSpan] = []
    for span in sorted({s for s in spans if s.source == "pattern"}, key=rank):
        if span.end > span.start and not any(k.start < span.end and span.start < k.end for k in kept):
            kept.append(span)
    patterns = list(kept)
    others = [part for s in set(spans) if s.source != "pattern" for part in _outside(s, patterns)]
    for span in sorted(set(others), key=rank):
        if span.end > span.start and not any(k.start < span.end and span.start < k.end for k in kept):
            kept.append(span)
    return sorted(kept, key=lambda s: s.start)


def redact_text(text: str, spans: Iterable[PiiSpan], include_text: bool = False) -> tuple[str, list[dict]]:
    """``text`` with every span (merged first: :func:`merge_spans`) replaced by its placeholder,
    and one record per replacement: ``type``, ``start``/``end`` in ``text``, the ``placeholder``,
    ``out_start``/``out_end`` where it sits in the redacted text, ``source`` and ``score``.

    The records leave out what was removed (a redaction log must not leak it), unless
    ``include_text``: then ``text`` holds it.
    """
    pieces: list[str] = []
    records: list[dict] = []
    pos = out = 0
    for span in merge_spans(spans):
        pieces.append(text[pos:span.start])
        out += span.start - pos
        mark = placeholder(span.type)
        record = {"type": span.type, "start": span.start, "end": span.end, "placeholder": mark,
                  "out_start": out, "out_end": out + len(mark), "source": span.source,
                  "score": round(span.score, 4)}
        if include_text:
            record["text"] = span.text
        records.append(record)
        pieces.append(mark)
        out += len(mark)
        pos = span.end
    pieces.append(text[pos:])
    return "".join(pieces), records
