"""Confidence you can trust: entity confidences, calibration error, temperature scaling
(chapter "Safety and ethics").

- :func:`entity_confidences`  one confidence per predicted entity, from its words' probabilities
- :func:`span_correct`  whether each predicted entity is in the gold tags (type and boundaries)
- :func:`tags_and_probs`, :func:`entity_outcomes`  from word logits (``Tagger.word_logits``) to
  the tags, each entity's confidence and whether it is right
- :func:`reliability_bins`, :func:`expected_calibration_error`  how far confidence is from accuracy
  (Guo et al. 2017): ECE = sum over bins of (share of examples) x ``|accuracy - mean confidence|``
- :func:`fit_temperature`  the one-parameter fix of Guo et al.: divide the logits by T, chosen to
  minimise the negative log-likelihood on held-out data
- :func:`risk_coverage`, :func:`precision_at_coverage`  selective prediction: keep only the entities
  above a confidence threshold, and see how precision rises as coverage falls
- :func:`abstain`  drop the entities below a threshold from predicted tags (``nerbook predict
  --min-confidence``)

``tests/test_calibration.py`` checks each against a hand computation or a generic optimiser.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from nerbook.metrics import spans

__all__ = ["abstain", "entity_confidences", "expected_calibration_error", "fit_temperature",
           "entity_outcomes", "nll", "precision_at_coverage", "reliability_bins", "risk_coverage", "span_correct",
           "tags_and_probs"]


def entity_confidences(tags: Sequence[Sequence[str]], probs: Sequence[Sequence[float]],
                       how: str = "min") -> list[list[tuple[str, int, int, float]]]:
    """For every sentence, its predicted entities as ``(type, first word, last word, confidence)``.

    ``probs`` holds the probability of each word's predicted tag (``Tagger.predict_dataset``).
    ``how``: ``"min"`` (the least sure word decides) or ``"product"`` (all words right at once,
    if they were independent).
    """
    if how not in ("min", "product"):
        raise ValueError(f"how must be 'min' or 'product', got {how!r}")
    out = []
    for sent_tags, sent_probs in zip(tags, probs, strict=True):
        if len(sent_tags) != len(sent_probs):
            raise ValueError(f"{len(sent_tags)} tags but {len(sent_probs)} probabilities in a sentence")
        row = []
        for t, s, e in spans(sent_tags):
            p = sent_probs[s:e + 1]
            row.append((t, s, e, min(p) if how == "min" else math.prod(p)))
        out.append(row)
    return out


def span_correct(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[tuple]]) -> list[list[bool]]:
    """For every predicted entity ``(type, first, last, ...)``: is exactly this entity in the gold tags?"""
    return [[(t, s, e) in set(spans(g)) for t, s, e, *_ in row] for g, row in zip(gold, predicted, strict=True)]


def tags_and_probs(word_logits: Sequence[Tensor], names: Sequence[str],
                   temperature: float = 1.0) -> tuple[list[list[str]], list[list[float]]]:
    """For each sentence's ``(words, tags)`` logits: the most likely tag of every word and its
    probability under ``softmax(logits / temperature)``. The tags do not depend on T."""
    if not word_logits:
        return [], []
    lengths = [len(z) for z in word_logits]
    p, ids = (torch.cat([torch.as_tensor(z).float() for z in word_logits]) / temperature).softmax(-1).max(-1)
    p, ids = p.tolist(), ids.tolist()  # one softmax over all words, then cut back into sentences
    tags, probs, start = [], [], 0
    for n in lengths:
        tags.append([names[i] for i in ids[start:start + n]])
        probs.append(p[start:start + n])
        start += n
    return tags, probs


def entity_outcomes(gold: Sequence[Sequence[str]], tags: Sequence[Sequence[str]],
                    probs: Sequence[Sequence[float]], how: str = "min") -> tuple[list[float], list[bool]]:
    """Every predicted entity of every sentence, flattened: its confidence
    (:func:`entity_confidences`) and whether it is right (:func:`span_correct`)."""
    predicted = entity_confidences(tags, probs, how)
    correct = span_correct(gold, predicted)
    return [row[-1] for sent in predicted for row in sent], [ok for sent in correct for ok in sent]


def nll(word_logits: Sequence[Tensor], gold_ids: Sequence[Sequence[int]], temperature: float = 1.0) -> float:
    """The mean negative log-likelihood of the gold tags over all words, at ``temperature``."""
    z = torch.cat([torch.as_tensor(x).float() for x in word_logits])
    y = torch.tensor([i for sent in gold_ids for i in sent])
    return float(torch.nn.functional.cross_entropy(z / temperature, y))


def reliability_bins(confidence: Sequence[float], correct: Sequence[bool], n_bins: int = 10) -> list[dict]:
    """Equal-width bins of confidence over [0, 1]: for each non-empty bin, its edges, ``count``,
    mean ``confidence`` and ``accuracy`` (the share correct). A confidence of exactly 1 goes to
    the last bin."""
    if len(confidence) != len(correct):
        raise ValueError(f"{len(confidence)} confidences but {len(correct)} outcomes")
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    bins: list[list[tuple[float, bool]]] = [[] for _ in range(n_bins)]
    for c, ok in zip(confidence, correct):
        if not 0.0 <= c <= 1.0:
            raise ValueError(f"a confidence must be in [0, 1], got {c}")
        bins[min(int(c * n_bins), n_bins - 1)].append((c, bool(ok)))
    return [{"low": k / n_bins, "high": (k + 1) / n_bins, "count": len(b),
             "confidence": sum(c for c, _ in b) / len(b), "accuracy": sum(ok for _, ok in b) / len(b)}
            for k, b in enumerate(bins) if b]


def expected_calibration_error(confidence: Sequence[float], correct: Sequence[bool], n_bins: int = 10) -> float:
    """ECE: the count-weighted mean of ``|accuracy - confidence|`` over :func:`reliability_bins`."""
    n = len(confidence)
    if n == 0:
        raise ValueError("expected_calibration_error: no predictions")
    return sum(b["count"] / n * abs(b["accuracy"] - b["confidence"])
               for b in reliability_bins(confidence, correct, n_bins))


def fit_temperature(logits: Tensor, labels: Tensor, ignore_index: int = -100, steps: int = 100) -> float:
    """The temperature T > 0 that minimises the mean NLL of ``softmax(logits / T)`` on ``labels``.

    ``logits`` (..., classes) and ``labels`` (...); positions labelled ``ignore_index`` are left
    out. T is found as exp(log T) by L-BFGS, so it stays positive. Dividing by T never changes
    the predicted class, only how sure the model says it is.
    """
    z = logits.detach().float().reshape(-1, logits.shape[-1])
    y = labels.detach().reshape(-1)
    keep = y != ignore_index
    z, y = z[keep], y[keep]
    if len(y) == 0:
        raise ValueError("fit_temperature: no labelled positions")
    log_t = torch.zeros((), requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp())


def risk_coverage(confidence: Sequence[float], correct: Sequence[bool]) -> list[dict]:
    """Selective prediction, every threshold at once: sort the entities by confidence, most sure
    first, and for each distinct confidence ``threshold`` keep those at or above it. One row per
    threshold, from the strictest: ``threshold``, ``kept``, ``coverage`` (share kept) and
    ``precision`` (share of the kept that are right; its complement is the *risk*)."""
    if len(confidence) != len(correct):
        raise ValueError(f"{len(confidence)} confidences but {len(correct)} outcomes")
    order = sorted(range(len(confidence)), key=lambda i: -confidence[i])
    rows, right = [], 0
    for k, i in enumerate(order, 1):
        right += bool(correct[i])
        if k == len(order) or confidence[order[k]] < confidence[i]:  # the last of a tie
            rows.append({"threshold": confidence[i], "kept": k, "coverage": k / len(order),
                         "precision": right / k})
    return rows


def precision_at_coverage(confidence: Sequence[float], correct: Sequence[bool], coverage: float) -> dict:
    """The row of :func:`risk_coverage` with the smallest coverage of at least ``coverage``:
    the precision when at least that share of the entities is kept, and the threshold to use."""
    if not 0.0 < coverage <= 1.0:
        raise ValueError(f"coverage must be in (0, 1], got {coverage}")
    rows = risk_coverage(confidence, correct)
    if not rows:
        raise ValueError("precision_at_coverage: no predictions")
    return next(r for r in rows if r["coverage"] >= coverage - 1e-12)


def abstain(tags: Sequence[Sequence[str]], probs: Sequence[Sequence[float]], min_confidence: float,
            how: str = "min") -> tuple[list[list[str]], int]:
    """The tags with every entity whose confidence (:func:`entity_confidences`) is below
    ``min_confidence`` turned into ``O``, and how many entities were dropped so."""
    out, dropped = [], 0
    for sent_tags, row in zip(tags, entity_confidences(tags, probs, how), strict=True):
        kept = list(sent_tags)
        for _, s, e, conf in row:
            if conf < min_confidence:
                kept[s:e + 1] = ["O"] * (e - s + 1)
                dropped += 1
        out.append(kept)
    return out, dropped
