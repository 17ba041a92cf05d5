"""PII redaction: a NER model's names and :mod:`nerbook.pii`'s patterns, replaced by typed
placeholders (chapter "Safety and ethics").

- :func:`find_pii`  the personal data in each text: the tagger's PER, ORG and LOC entities (as
  ``PERSON``, ``ORGANIZATION``, ``LOCATION``; MISC is not personal) and pattern PII, merged
- :func:`redact`  the texts with every found span replaced, and a log of the replacements

A name the model found once is personal wherever it occurs: :func:`redact` also replaces every
other whole-word occurrence of a found text (of 2+ characters), in any of the texts it is
given, so that no found text is left in the output, even where the model missed it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from nerbook.pii import PATTERN_TYPES, PiiSpan, find_patterns, merge_spans, redact_text

__all__ = ["NER_PLACEHOLDERS", "PII_TYPES", "find_pii", "redact", "repeats"]

#: The model's entity types that are personal data -> their placeholder (Presidio's) names.
NER_PLACEHOLDERS = {"PER": "PERSON", "ORG": "ORGANIZATION", "LOC": "LOCATION"}

#: Every type :func:`find_pii` can report.
PII_TYPES = (*NER_PLACEHOLDERS.values(), *PATTERN_TYPES)


def _model_spans(texts: Sequence[str], tagger, min_confidence: float) -> list[list[PiiSpan]]:
    """The tagger's PER/ORG/LOC entities with at least ``min_confidence``, per text; texts
    without a visible character are not sent to the model."""
    out: list[list[PiiSpan]] = [[] for _ in texts]
    todo = [i for i, t in enumerate(texts) if t.strip()]
    if tagger is None or not todo:
        return out
    for i, ents in zip(todo, tagger.predict_text([texts[i] for i in todo])):
        out[i] = [PiiSpan(NER_PLACEHOLDERS[e.type], e.start, e.end, e.text, "model", float(e.score))
                  for e in ents if e.type in NER_PLACEHOLDERS and e.score >= min_confidence]
    return out


def find_pii(texts: Sequence[str], tagger=None, min_confidence: float = 0.0,
             types: Iterable[str] | None = None) -> list[list[PiiSpan]]:
    """For each text, its personal data as non-overlapping :class:`~nerbook.pii.PiiSpan`
    sorted by start (overlaps resolved by :func:`~nerbook.pii.merge_spans`).

    ``tagger``: a :class:`nerbook.predict.Tagger` (anything with ``predict_text``), or None for
    patterns alone. ``min_confidence``: model entities less sure than this (``Entity.score``: the
    probability of their least sure word) are
    ignored (patterns are kept). ``types``: only these of :data:`PII_TYPES` (default: all).
    """
    wanted = set(PII_TYPES if types is None else types)
    unknown = wanted - set(PII_TYPES)
    if unknown:
        raise ValueError(f"unknown PII type(s) {sorted(unknown)}; choose from {list(PII_TYPES)}")
    if not 0.0 <= min_confidence <= 1.0:
        raise ValueError(f"min_confidence must be in [0, 1], got {min_confidence}")
    model = _model_spans(texts, tagger, min_confidence)
    return [merge_spans([*find_patterns(text, wanted & set(PATTERN_TYPES)),
                         *(s for s in spans if s.type in wanted)])
            for text, spans in zip(texts, model)]


_WORD_CHAR = re.compile(r"\w")


def _word_pattern(found: str) -> str:
    r"""``found`` as a regular expression that matches it as a whole word: no letter or digit
    glued to an end that is itself a letter or digit (``Ann`` in ``Ann's``, not in ``Annual``)."""
    head = r"(?<!\w)" if _WORD_CHAR.match(found[0]) else ""
    tail = r"(?!\w)" if _WORD_CHAR.match(found[-1]) else ""
    return head + re.escape(found) + tail


def _occurrences(text: str, pattern: re.Pattern, known: dict) -> Iterable[tuple[int, str]]:
    """``(start, found text)`` of every whole-word occurrence of a known text, overlapping ones
    too: ``pattern`` gives the longest at each position, its prefixes are checked here."""
    for m in pattern.finditer(text):
        longest, p = m.group(1), m.start()
        yield p, longest
        for k in range(len(longest) - 1, 1, -1):
            word = longest[:k]
            glued = _WORD_CHAR.match(word[-1]) and _WORD_CHAR.match(text[p + k:p + k + 1])
            if word in known and not glued:
                yield p, word


def repeats(texts: Sequence[str], found: Sequence[Sequence[PiiSpan]]) -> list[list[PiiSpan]]:
    """Every whole-word occurrence, in any text, of a text found anywhere (2+ characters), as a
    span with source ``"repeat"`` and the type and score of a span that found it (a pattern's
    first, then the surest; the found spans themselves included: :func:`~nerbook.pii.merge_spans` keeps those).

    Overlapping occurrences are all returned, so that after merging, each occurrence is either
    kept or overlaps a kept span: no found text survives redaction whole.
    """
    known: dict[str, PiiSpan] = {}
    for span in sorted((s for spans in found for s in spans), key=lambda s: (s.text, s.source != "pattern", -s.score)):
        if len(span.text.strip()) >= 2:
            known.setdefault(span.text, span)
    out: list[list[PiiSpan]] = [[] for _ in texts]
    if not known:
        return out
    words = sorted(known, key=lambda t: (-len(t), t))  # the longest first
    pattern = re.compile("(?=(" + "|".join(_word_pattern(w) for w in words) + "))")
    for i, text in enumerate(texts):
        for start, word in _occurrences(text, pattern, known):
            src = known[word]
            out[i].append(PiiSpan(src.type, start, start + len(word), word, "repeat", src.score))
    return out


def redact(texts: Sequence[str], tagger=None, min_confidence: float = 0.0,
           types: Iterable[str] | None = None, propagate: bool = True,
           include_text: bool = False) -> tuple[list[str], list[list[dict]]]:
    """The texts with their personal data replaced by placeholders (``<PERSON>``, ``<EMAIL>``,
    ...), and for each text the records of :func:`nerbook.pii.redact_text` (without the removed
    text unless ``include_text``).

    With ``propagate`` (the default), every other occurrence of a found text is replaced too
    (:func:`repeats`): no found text of 2+ characters is left in the output as a whole word.
    ``tagger``, ``min_confidence``, ``types``: as in :func:`find_pii`.
    """
    texts = list(texts)
    found = find_pii(texts, tagger, min_confidence, types)
    if propagate:
        found = [merge_spans([*spans, *more]) for spans, more in zip(found, repeats(texts, found))]
    out = [redact_text(text, spans, include_text) for text, spans in zip(texts, found)]
    return [o[0] for o in out], [o[1] for o in out]
