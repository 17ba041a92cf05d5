"""Why this tag? Word attributions and their sanity check (chapter "Safety and ethics").

- :func:`gradient_x_input`  one score per word: gradient times input at the word embeddings
- :func:`integrated_gradients`  Sundararajan et al. 2017: the same, averaged along a straight path
  from a baseline to the input; with ``return_delta``, how far it is from completeness
- :func:`span_score`  the quantity both explain: ``f`` below, for a sentence or embeddings
- :func:`randomized_copy`  a copy of a model with its classifier and encoder layers re-initialised
- :func:`spearman`  rank correlation, ties given their average rank
- :func:`attribution_sanity`  Adebayo et al. 2018's model-randomisation test: do the attributions
  change when the weights the model learnt are replaced by random ones?

**What is explained.** A span of words ``first..last`` (inclusive) and one tag id per word of it
(default: the model's own prediction). The score is

    f = sum over the span's words w of log p(tag_w | sentence) at the first subword of w,

the rule by which nerbook reads a word's tag (:mod:`nerbook.align`). An attribution says how much
each word of the sentence moved ``f``; positive pushes towards the tags.

**Where.** On the *word embeddings*, the output of ``model.get_input_embeddings()``, passed to the
model as ``inputs_embeds``: BERT adds position and token-type embeddings itself, so a baseline
replaces only the word vectors and keeps every position. ``[CLS]`` and ``[SEP]`` keep their own
embeddings in the baseline too, so they receive no attribution under integrated gradients; under
gradient x input theirs is computed but belongs to no word and is left out. A token's attribution
is summed over the hidden dimensions, and a word's over its subwords (the tokenizer's
``word_ids``). Each sentence is encoded alone, so there is no padding to attribute to.

**Side effects.** None: the model runs in eval mode (no dropout) and gets its mode back; the
gradients are taken with ``torch.autograd.grad`` with respect to the input only, so no
parameter's ``.grad`` is touched. ``tests/test_attribution.py`` checks the attributions against
finite differences and a hand-written integral, and the sanity check on a trained tiny model.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["BASELINES", "attribution_sanity", "gradient_x_input", "integrated_gradients",
           "randomized_copy", "span_score", "spearman"]

#: Integrated gradients' baselines: the word vector every word is replaced by.
BASELINES = ("pad", "mask", "zeros")


@dataclass
class _Target:
    """A sentence encoded alone, and the positions and tag ids that ``f`` reads."""

    batch: dict[str, Tensor]      # input_ids, attention_mask (and token_type_ids), batch of 1
    word_ids: list[int | None]    # per token: its word, None for [CLS]/[SEP]
    positions: Tensor             # first subword of each word of the span
    tags: Tensor                  # the tag id explained at each of them
    n_words: int


@contextmanager
def _evaluating(model) -> Iterator[None]:
    """Eval mode and no parameter in the graph while inside; both restored on exit."""
    training = model.training
    grads = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in grads:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in grads:
            p.requires_grad_(flag)
        model.train(training)


def _tag_ids(model, tags: Sequence[int | str], n: int) -> list[int]:
    if len(tags) != n:
        raise ValueError(f"the span has {n} words but {len(tags)} tags were given")
    label2id = getattr(model.config, "label2id", None) or {}
    return [label2id[t] if isinstance(t, str) else int(t) for t in tags]


def _prepare(model, tokenizer, words: Sequence[str], span: tuple[int, int],
             tags: Sequence[int | str] | None) -> _Target:
    first, last = span
    if not 0 <= first <= last < len(words):
        raise ValueError(f"span {span} is not inside a sentence of {len(words)} words")
    enc = tokenizer([list(words)], is_split_into_words=True, return_tensors="pt")
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and enc["input_ids"].shape[1] > limit:
        raise ValueError(f"{enc['input_ids'].shape[1]} tokens: longer than the model's {limit} positions")
    word_ids = enc.word_ids(0)
    starts: dict[int, int] = {}
    for pos, w in enumerate(word_ids):
        if w is not None:
            starts.setdefault(w, pos)
    missing = [w for w in range(first, last + 1) if w not in starts]
    if missing:
        raise ValueError(f"words {missing} of the span have no subword (the tokenizer dropped them)")
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    positions = torch.tensor([starts[w] for w in range(first, last + 1)], device=device)
    if tags is None:
        with torch.no_grad(), _evaluating(model):
            tag_list = model(**batch).logits[0, positions].argmax(-1).tolist()
    else:
        tag_list = _tag_ids(model, tags, last - first + 1)
    return _Target(batch, list(word_ids), positions, torch.tensor(tag_list, device=device), len(words))


def _score(model, target: _Target, embeds: Tensor) -> Tensor:
    """``f`` for every row of ``embeds`` (rows, tokens, hidden): one value per row."""
    rows = embeds.shape[0]
    extra = {k: v.expand(rows, -1) for k, v in target.batch.items() if k != "input_ids"}
    logits = model(inputs_embeds=embeds, **extra).logits
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # bf16/fp16 -> fp32, fp64 kept
    logp = logits.log_softmax(-1)[:, target.positions, target.tags]  # (rows, span words)
    return logp.sum(-1)


def _word_sums(token_attr: Tensor, target: _Target) -> list[float]:
    out = [0.0] * target.n_words
    for value, w in zip(token_attr.tolist(), target.word_ids):
        if w is not None:
            out[w] += value
    return out


def span_score(model, tokenizer, words: Sequence[str], span: tuple[int, int],
               tags: Sequence[int | str] | None = None) -> float:
    """``f``: the sum over the span's words of log p(tag | sentence) at each word's first subword."""
    target = _prepare(model, tokenizer, words, span, tags)
    with torch.no_grad(), _evaluating(model):
        embeds = model.get_input_embeddings()(target.batch["input_ids"])
        return _score(model, target, embeds).item()


def gradient_x_input(model, tokenizer, words: Sequence[str], span: tuple[int, int],
                     tags: Sequence[int | str] | None = None) -> list[float]:
    """One float per word: ``sum over its subwords and hidden dims of x * df/dx`` at the word
    embeddings ``x``. To first order, the change of ``f`` if the word's vectors were scaled to zero
    (with a minus sign): a cheap, local explanation."""
    target = _prepare(model, tokenizer, words, span, tags)
    with torch.enable_grad(), _evaluating(model):
        x = model.get_input_embeddings()(target.batch["input_ids"]).detach().requires_grad_(True)
        (g,) = torch.autograd.grad(_score(model, target, x).sum(), x)
    return _word_sums((g * x.detach()).double().sum(-1)[0], target)


def _baseline(model, tokenizer, target: _Target, x: Tensor, baseline: str) -> Tensor:
    """``x`` with every word's vectors replaced by the baseline's; [CLS]/[SEP] as they are."""
    if baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES}, got {baseline!r}")
    if baseline == "zeros":
        vector = torch.zeros_like(x[0, 0])
    else:
        token_id = tokenizer.pad_token_id if baseline == "pad" else tokenizer.mask_token_id
        if token_id is None:
            raise ValueError(f"the tokenizer has no {baseline} token for the baseline")
        vector = model.get_input_embeddings().weight[token_id].detach().to(x.dtype)
    is_word = torch.tensor([w is not None for w in target.word_ids], device=x.device)
    return torch.where(is_word[None, :, None], vector.expand_as(x), x)


def _path_weights(steps: int, rule: str) -> tuple[Tensor, Tensor]:
    """Points ``alpha`` in [0, 1] and their weights (summing to 1) for the path integral."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if rule == "midpoint":
        return (torch.arange(steps, dtype=torch.float64) + 0.5) / steps, torch.full((steps,), 1.0 / steps)
    if rule == "trapezoid":
        weights = torch.full((steps + 1,), 1.0 / steps)
        weights[0] = weights[-1] = 0.5 / steps
        return torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64), weights
    raise ValueError(f"rule must be 'midpoint' or 'trapezoid', got {rule!r}")


def integrated_gradients(model, tokenizer, words: Sequence[str], span: tuple[int, int],
                         tags: Sequence[int | str] | None = None, steps: int = 32,
                         baseline: str = "pad", rule: str = "midpoint", batch_size: int = 16,
                         return_delta: bool = False):
    """One float per word: ``(x - b) * integral over alpha in [0, 1] of df/dx at b + alpha (x - b)``,
    summed over each word's subwords and the hidden dims (Sundararajan et al. 2017).

    ``b``, the baseline, replaces every word's vectors by the ``[PAD]`` (``"pad"``) or ``[MASK]``
    (``"mask"``) token's embedding, or by zeros (``"zeros"``); positions and [CLS]/[SEP] stay.
    (A BERT trained with ``padding_idx`` keeps the [PAD] row at zero: then ``"pad"`` is ``"zeros"``.)
    The integral is a Riemann sum of ``steps`` points (``rule``: ``"midpoint"`` or ``"trapezoid"``),
    evaluated ``batch_size`` at a time. Completeness: the attributions sum to ``f(x) - f(b)``, up to
    the sum's error; with ``return_delta``, returns ``(attributions, delta)`` where
    ``delta = sum(attributions) - (f(x) - f(b))``.
    """
    target = _prepare(model, tokenizer, words, span, tags)
    alphas, weights = _path_weights(steps, rule)
    with torch.enable_grad(), _evaluating(model):
        x = model.get_input_embeddings()(target.batch["input_ids"]).detach()
        b = _baseline(model, tokenizer, target, x, baseline)
        diff = (x - b)[0].double()
        total = torch.zeros_like(diff)
        for start in range(0, len(alphas), batch_size):
            a = alphas[start:start + batch_size].to(x.device)
            points = (b[0].double() + a[:, None, None] * diff).to(x.dtype).requires_grad_(True)
            (g,) = torch.autograd.grad(_score(model, target, points).sum(), points)
            total += (g.double() * weights[start:start + batch_size].to(x.device)[:, None, None]).sum(0)
        token_attr = (total * diff).sum(-1)
        if return_delta:
            with torch.no_grad():
                ends = _score(model, target, torch.cat([x, b])).double()
    attributions = _word_sums(token_attr, target)
    if not return_delta:
        return attributions
    return attributions, token_attr.sum().item() - (ends[0] - ends[1]).item()


def _encoder_layers(model) -> list[torch.nn.Module]:
    base = getattr(model, getattr(model, "base_model_prefix", ""), None)
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    if layers is None:
        raise TypeError(f"{type(model).__name__}: no encoder.layer to randomise (a BERT-like model is expected)")
    return list(layers)


def _reinitialise(module: torch.nn.Module, std: float, gen: torch.Generator) -> None:
    """BERT's initialisation: linear weights normal(0, std), biases zero, LayerNorm the identity."""
    for sub in module.modules():
        if isinstance(sub, torch.nn.Linear):
            sub.weight.copy_(torch.randn(sub.weight.shape, generator=gen) * std)
            if sub.bias is not None:
                sub.bias.zero_()
        elif isinstance(sub, torch.nn.LayerNorm):
            if sub.weight is not None:
                sub.weight.fill_(1.0)
            if sub.bias is not None:
                sub.bias.zero_()


def randomized_copy(model, seed: int = 0, layers: int | None = None):
    """A deep copy of ``model`` with its classifier and encoder layers re-initialised as BERT
    initialises them (normal with ``config.initializer_range``, seeded by ``seed``); ``model`` is
    left untouched.

    ``layers=None`` re-initialises every encoder layer; ``layers=k`` only the top ``k`` (Adebayo et
    al.'s cascading randomisation, from the top down: ``0`` is the classifier alone). The embeddings
    are kept: attributions are taken on them, so the input ``x`` stays the same.
    """
    clone = copy.deepcopy(model)
    blocks = _encoder_layers(clone)
    if layers is not None and not 0 <= layers <= len(blocks):
        raise ValueError(f"layers must be in 0..{len(blocks)}, got {layers}")
    chosen = blocks if layers is None else blocks[len(blocks) - layers:] if layers > 0 else []
    classifier = getattr(clone, "classifier", None)
    if classifier is None:
        raise TypeError(f"{type(model).__name__}: no classifier head to randomise")
    std = getattr(clone.config, "initializer_range", 0.02)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in [classifier, *reversed(chosen)]:
            _reinitialise(module, std, gen)
    return clone


def _ranks(values: Sequence[float]) -> list[float]:
    """Ranks 1..n; tied values share the average of their ranks."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation: Pearson's correlation of the ranks (ties: average ranks).

    ``nan`` when either side is constant or has fewer than two values, as in scipy.
    """
    if len(a) != len(b):
        raise ValueError(f"{len(a)} values against {len(b)}")
    if any(math.isnan(v) for v in [*a, *b]):
        raise ValueError("spearman: nan among the values")
    ra, rb = _ranks(list(a)), _ranks(list(b))
    n = len(ra)
    if n < 2:
        return math.nan
    ma, mb = sum(ra) / n, sum(rb) / n
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    va, vb = sum((x - ma) ** 2 for x in ra), sum((y - mb) ** 2 for y in rb)
    return cov / math.sqrt(va * vb) if va > 0 and vb > 0 else math.nan


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


def attribution_sanity(model, tokenizer, sentences: Sequence[Sequence[str]],
                       spans: Sequence[tuple[int, int]], seed: int = 0, method: str = "ig",
                       layers: int | None = None, **kwargs) -> dict:
    """Adebayo et al. 2018's model-randomisation test, over several ``(sentence, span)`` examples.

    The attributions of ``model`` and of :func:`randomized_copy` (``seed``, ``layers``) for the
    same tags (the trained model's predictions) are compared word by word with :func:`spearman`.
    A mean correlation near 1 would say the method shows the input, not what the model learnt.
    Returns ``spearman`` (mean, signed), ``spearman_abs`` (of absolute values), ``per_example``
    (signed), ``top_in_span`` (share of examples whose most attributed word, trained model, lies
    in the span), ``top_in_span_random`` (the same for the copy) and ``n``. ``method``: ``"ig"``
    (``kwargs`` go to :func:`integrated_gradients`) or ``"grad_x_input"``.
    """
    methods = {"ig": integrated_gradients, "grad_x_input": gradient_x_input}
    if method not in methods:
        raise ValueError(f"method must be one of {sorted(methods)}, got {method!r}")
    if len(sentences) != len(spans):
        raise ValueError(f"{len(sentences)} sentences but {len(spans)} spans")
    explain = methods[method]
    random_model = randomized_copy(model, seed=seed, layers=layers)
    signed, absolute, top, top_random = [], [], [], []
    for words, span in zip(sentences, spans):
        target = _prepare(model, tokenizer, words, span, None)
        tags = target.tags.tolist()
        mine = explain(model, tokenizer, words, span, tags, **kwargs)
        theirs = explain(random_model, tokenizer, words, span, tags, **kwargs)
        signed.append(spearman(mine, theirs))
        absolute.append(spearman([abs(v) for v in mine], [abs(v) for v in theirs]))
        top.append(span[0] <= max(range(len(mine)), key=mine.__getitem__) <= span[1])
        top_random.append(span[0] <= max(range(len(theirs)), key=theirs.__getitem__) <= span[1])
    n = len(signed)
    return {"spearman": _mean(signed), "spearman_abs": _mean(absolute), "per_example": signed,
            "top_in_span": sum(top) / n if n else math.nan,
            "top_in_span_random": sum(top_random) / n if n else math.nan, "n": n}
