"""Entity-level and token-level scores (chapter "Fine-tuning and evaluation").

Papers report entity-level F1 as computed by ``conlleval``: an entity counts as found only if
its type and both boundaries are right. :func:`entity_scores` computes exactly that with
``seqeval`` (default mode = conlleval; ``mode="strict"`` for strict IOB2 matching). Scores are
computed on words, never subwords. :func:`token_scores` is the per-tag report the naive code
prints, kept for the contrast: with ``O`` making up most tags, it looks far better than it is.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
from seqeval.metrics import classification_report as _seqeval_report
from seqeval.metrics.sequence_labeling import get_entities
from seqeval.scheme import IOB2

Tags = Sequence[Sequence[str]]


def _check(y_true: Tags, y_pred: Tags) -> None:
    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} gold sentences but {len(y_pred)} predicted")
    for i, (t, p) in enumerate(zip(y_true, y_pred)):
        if len(t) != len(p):
            raise ValueError(f"sentence {i}: {len(t)} gold tags but {len(p)} predicted")


def _prf(d: dict) -> dict[str, float]:
    return {"precision": float(d["precision"]), "recall": float(d["recall"]),
            "f1": float(d["f1-score"]), "support": int(d["support"])}


def entity_scores(y_true: Tags, y_pred: Tags, mode: str | None = None, token_level: bool = False) -> dict:
    """Entity-level precision/recall/F1: ``overall`` (micro), ``macro`` and ``per_type``.

    ``mode=None`` is seqeval's default, identical to conlleval (an ``I-X`` after ``O`` starts
    an entity); ``mode="strict"`` only accepts entities well-formed in IOB2. With
    ``token_level``, :func:`token_scores` too, under ``token_level``, for contrast.
    """
    _check(y_true, y_pred)
    if mode not in (None, "strict"):
        raise ValueError(f"mode must be None (conlleval) or 'strict', got {mode!r}")
    zero = {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    out = {"overall": dict(zero), "macro": dict(zero), "per_type": {}}
    if any(t != "O" for s in [*y_true, *y_pred] for t in s):  # with no entity at all, nothing to average
        kw = {"mode": "strict", "scheme": IOB2} if mode == "strict" else {}
        rep = _seqeval_report([list(s) for s in y_true], [list(s) for s in y_pred], output_dict=True,
                              zero_division=0, **kw)
        out["per_type"] = {k: _prf(v) for k, v in rep.items() if not k.endswith(" avg")}
        out["overall"] = _prf(rep["micro avg"]) if "micro avg" in rep else dict(zero)
        out["macro"] = _prf(rep["macro avg"]) if out["per_type"] else dict(zero)
    if token_level:
        out["token_level"] = token_scores(y_true, y_pred)
    return out


def token_scores(y_true: Tags, y_pred: Tags) -> dict:
    """Per-tag report over every word, ``O`` included (sklearn), as the naive code printed it.

    ``accuracy`` is the "micro avg" of that report.
    """
    from sklearn.metrics import classification_report

    _check(y_true, y_pred)
    flat_t = [t for s in y_true for t in s]
    flat_p = [t for s in y_pred for t in s]
    rep = classification_report(flat_t, flat_p, output_dict=True, zero_division=0)
    out: dict = {"accuracy": float(rep.pop("accuracy", 0.0))}
    for k, v in rep.items():
        out[k] = _prf(v)
    return out


def confusion(y_true: Tags, y_pred: Tags, labels: Sequence[str]) -> np.ndarray:
    """Word-level confusion matrix: ``m[i, j]`` = words tagged ``labels[i]`` predicted ``labels[j]``."""
    _check(y_true, y_pred)
    idx = {t: i for i, t in enumerate(labels)}
    m = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for ts, ps in zip(y_true, y_pred):
        for t, p in zip(ts, ps):
            m[idx[t], idx[p]] += 1
    return m


def spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """Entities of one sentence as ``(type, first word, last word)``, read as conlleval does."""
    return [(t, s, e) for t, s, e in get_entities(list(tags))]


def entity_strings(sentences: Sequence[Sequence[str]], tags: Tags) -> set[str]:
    """The distinct entity strings (words joined by spaces) of tagged sentences.

    Chapters "Pretraining" and "The fine-tuning recipe" use it to check leakage: how many
    names of the dev and test sets also occur in the data a model learnt from.
    """
    _check(sentences, tags)
    return {" ".join(words[s:e + 1]) for words, ts in zip(sentences, tags) for _, s, e in spans(ts)}


ERROR_KINDS = ("correct", "type", "boundary", "boundary+type", "spurious", "missed")


def entity_errors(y_true: Tags, y_pred: Tags, examples: int = 5) -> dict:
    """Sort every mistake into ``type`` (same span, wrong type), ``boundary`` (overlapping span,
    right type), ``boundary+type``, ``spurious`` (predicted, overlaps nothing) and ``missed``
    (gold, overlaps no prediction). Returns counts and a few examples of each.
    """
    _check(y_true, y_pred)
    counts: Counter = Counter({k: 0 for k in ERROR_KINDS})
    found: dict[str, list] = {}

    def add(kind: str, sent: int, gold, pred) -> None:
        counts[kind] += 1
        if len(found.setdefault(kind, [])) < examples:
            found[kind].append({"sentence": sent, "gold": gold, "pred": pred})

    for i, (t, p) in enumerate(zip(y_true, y_pred)):
        gold, pred = set(spans(t)), set(spans(p))
        counts["correct"] += len(gold & pred)
        for q in pred - gold:
            over = [g for g in gold if g[1] <= q[2] and q[1] <= g[2]]
            if not over:
                add("spurious", i, None, q)
            elif any(g[1:] == q[1:] for g in over):
                add("type", i, next(g for g in over if g[1:] == q[1:]), q)
            elif any(g[0] == q[0] for g in over):
                add("boundary", i, next(g for g in over if g[0] == q[0]), q)
            else:
                add("boundary+type", i, over[0], q)
        for g in gold - pred:
            if not any(q[1] <= g[2] and g[1] <= q[2] for q in pred):
                add("missed", i, g, None)
    return {"counts": dict(counts), "examples": found}
