"""Confidence you can trust: entity confidences, calibration error, temperature scaling
(chapter "Safety and ethics", being written).

- :func:`entity_confidences`  one confidence per predicted entity, from its words' probabilities
- :func:`span_correct`  whether each predicted entity is in the gold tags (type and boundaries)
- :func:`reliability_bins`, :func:`expected_calibration_error`  how far confidence is from accuracy
  (Guo et al. 2017): ECE = sum over bins of (share of examples) x ``|accuracy - mean confidence|``
- :func:`fit_temperature`  the one-parameter fix of Guo et al.: divide the logits by T, chosen to
  minimise the negative log-likelihood on held-out data

``tests/test_calibration.py`` checks each against a hand computation or a generic optimiser.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from nerbook.metrics import spans

__all__ = ["entity_confidences", "expected_calibration_error", "fit_temperature", "reliability_bins",
           "span_correct"]


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
