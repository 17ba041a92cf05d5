"""Tagging schemes: IOB1, IOB2 and BIOES, and converting between them (chapter "NER data and
labels").

A tag is ``O`` or ``PREFIX-TYPE``. IOB2 starts every entity with ``B-``; IOB1 (the original
CoNLL-2003 files) only where two entities of one type touch; BIOES also marks the end (``E-``) of
an entity and single-word entities (``S-``). nerbook trains on IOB2 and reads all three.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

TAG_RE = re.compile(r"^(O|([BIES])-(.+))$")


def check_tag(tag: str) -> tuple[str, str | None]:
    """Split a tag into (prefix, type); raise ``ValueError`` naming it if it is malformed."""
    m = TAG_RE.match(tag)
    if not m:
        raise ValueError(f"unknown tag {tag!r} (expected O, B-TYPE, I-TYPE, E-TYPE or S-TYPE)")
    return ("O", None) if tag == "O" else (m.group(2), m.group(3))


def to_iob2(tags: Sequence[str]) -> list[str]:
    """Normalise IOB1, IOB2 or BIOES tags to IOB2 (every entity starts with ``B-``).

    IOB1 uses ``B-`` only between two adjacent entities of the same type, so an ``I-X`` that
    follows ``O`` or another type starts an entity: it becomes ``B-X``. ``E-``/``S-`` (BIOES)
    become ``I-``/``B-``. IOB2 input comes out unchanged.
    """
    out: list[str] = []
    prev_type: str | None = None
    prev_prefix = "O"
    for tag in tags:
        prefix, typ = check_tag(tag)
        if prefix == "O":
            out.append("O")
        elif prefix in ("B", "S"):
            out.append("B-" + typ)
        else:  # I or E continue an entity of the same type, or start one (IOB1)
            starts = prev_type != typ or prev_prefix in ("O", "E", "S")
            out.append(("B-" if starts else "I-") + typ)
        prev_prefix, prev_type = prefix, typ
    return out


def to_iob1(tags: Sequence[str]) -> list[str]:
    """IOB2 -> IOB1, the inverse of :func:`to_iob2` (chapter "NER data and labels").

    IOB1 writes ``B-X`` only where an entity directly follows another entity of the same
    type; every other entity starts with ``I-X``.
    """
    tags = to_iob2(tags)
    out = []
    for i, tag in enumerate(tags):
        follows_same = i > 0 and tags[i - 1] != "O" and tags[i - 1][2:] == tag[2:]
        out.append("I-" + tag[2:] if tag.startswith("B-") and not follows_same else tag)
    return out


def iob2_to_bioes(tags: Sequence[str]) -> list[str]:
    """IOB2 -> BIOES: single-word entities get ``S-``, last words of longer ones ``E-``."""
    tags = to_iob2(tags)
    out = []
    for i, tag in enumerate(tags):
        if tag == "O":
            out.append("O")
            continue
        nxt = tags[i + 1] if i + 1 < len(tags) else "O"
        continues = nxt == "I-" + tag[2:]
        if tag.startswith("B-"):
            out.append(("B-" if continues else "S-") + tag[2:])
        else:
            out.append(("I-" if continues else "E-") + tag[2:])
    return out
