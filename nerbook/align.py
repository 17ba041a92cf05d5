"""Word labels -> subword labels, and windows for long sentences (chapter "NER data and labels").

The model sees subwords, the labels belong to words. The rule used throughout ``nerbook``:
the *first* subword of each word carries the word's label, every other position (later
subwords, ``[CLS]``, ``[SEP]``, padding, context) carries ``-100``, which the loss and the
metrics ignore (``label_all_subwords`` labels the later subwords too, as ``I-`` of the word's
type, for models that will be served by a tagger reading every subword). Sentences longer
than the model's window are cut into overlapping windows, and each word's prediction is taken
from the window where it has the most context, so every word gets exactly one prediction,
however long the sentence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import datasets

IGNORE_INDEX = -100


def require_fast_tokenizer(tokenizer) -> None:
    """Alignment needs ``word_ids()``, which only fast (Rust) tokenizers provide."""
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError(
            f"{type(tokenizer).__name__} is a slow tokenizer: nerbook needs a fast tokenizer "
            "(word_ids()) to align labels; load it with AutoTokenizer.from_pretrained(..., use_fast=True)")


def align_word_labels(word_ids: Sequence[int | None], word_labels: Sequence[int]) -> list[int]:
    """Label the first subword of each word; ``-100`` on later subwords and special tokens.

    ``word_ids`` is what ``encoding.word_ids()`` returns: the word index of each subword,
    ``None`` for special tokens.
    """
    out: list[int] = []
    prev: int | None = None
    for w in word_ids:
        out.append(IGNORE_INDEX if w is None or w == prev else word_labels[w])
        prev = w
    return out


def naive_encode(words: Sequence[str], tag_ids: Sequence[int], tokenizer, max_length: int = 128,
                 o_id: int = 0) -> dict[str, list[int]]:
    """The seed code's encoding, kept to show what goes wrong. Do not train with it.

    It joins the words, pads every sentence to ``max_length``, cuts what is longer, and
    assigns the word labels to token positions one by one: labels ignore subwords and the
    ``[CLS]`` offset (so they are shifted), and padding gets the label ``O``, which then counts
    in the loss and the metrics.
    """
    enc = tokenizer(" ".join(words), padding="max_length", truncation=True, max_length=max_length)
    labels = (list(tag_ids) + [o_id] * max_length)[:max_length]
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": labels}


def word_pieces(tokenizer, sentences: Sequence[Sequence[str]], batch_size: int = 1000) -> list[list[list[int]]]:
    """Subword ids of every word of every sentence (a word the tokenizer drops gets ``[UNK]``)."""
    require_fast_tokenizer(tokenizer)
    unk = tokenizer.unk_token_id if tokenizer.unk_token_id is not None else 0
    out: list[list[list[int]]] = []
    for b in range(0, len(sentences), batch_size):
        chunk = [list(s) for s in sentences[b:b + batch_size]]
        enc = tokenizer(chunk, is_split_into_words=True, add_special_tokens=False, verbose=False)
        for i, words in enumerate(chunk):
            pieces: list[list[int]] = [[] for _ in words]
            for tok, w in zip(enc["input_ids"][i], enc.word_ids(i)):
                if w is not None:
                    pieces[w].append(tok)
            out.append([p or [unk] for p in pieces])
    return out


def window_spans(lengths: Sequence[int], budget: int, stride: int) -> list[tuple[int, int]]:
    """Cut words with ``lengths`` subwords into windows ``[start, end)`` of at most ``budget``.

    Consecutive windows overlap by up to ``stride`` subwords (whole words). A single word longer
    than the budget gets a window of its own (its subwords are cut; its first one is kept).
    """
    if budget < 1:
        raise ValueError(f"max_length leaves no room for words (budget {budget})")
    n, spans, s = len(lengths), [], 0
    while s < n:
        e, used = s, 0
        while e < n and used + lengths[e] <= budget:
            used += lengths[e]
            e += 1
        e = max(e, s + 1)
        spans.append((s, e))
        if e >= n:
            break
        j, overlap = e, 0
        while j - 1 > s and overlap + lengths[j - 1] <= stride:
            overlap += lengths[j - 1]
            j -= 1
        s = j
    return spans


@dataclass(frozen=True)
class WindowConfig:
    """How sentences become model inputs: window size, overlap, and document context."""

    max_length: int = 128
    stride: int = 32
    doc_context: bool = False


def special_template(tokenizer) -> tuple[list[int], list[int]]:
    """The special tokens a single sentence is wrapped in: (prefix ids, suffix ids).

    For BERT that is ``([CLS], [SEP])``; read off the tokenizer, so RoBERTa-style models work too.
    """
    enc = tokenizer(["a"], is_split_into_words=True, return_special_tokens_mask=True)
    ids, special = enc["input_ids"], enc["special_tokens_mask"]
    first = special.index(0)
    last = len(special) - 1 - special[::-1].index(0)
    return ids[:first], ids[last + 1:]


def window_budget(tokenizer, max_length: int) -> int:
    """How many subwords of words a window of ``max_length`` holds once the tokenizer's special
    tokens (:func:`special_template`) are in."""
    prefix, suffix = special_template(tokenizer)
    return max_length - len(prefix) - len(suffix)


def continuation_labels(names: Sequence[str]) -> dict[int, int]:
    """Tag id -> the label of a word's later subwords when every subword is labelled: ``I-X``
    for every tag of type ``X`` (``B-X``, ``I-X``, and BIOES' ``E-X``, ``S-X``), ``O`` for ``O``.
    The first subword keeps the word's own tag."""
    index = {n: i for i, n in enumerate(names)}
    return {i: index.get("I-" + n[2:], i) if n != "O" else i for i, n in enumerate(names)}


def encode_windows(dataset: datasets.Dataset, tokenizer, config: WindowConfig = WindowConfig(),
                   later_subwords: dict[int, int] | None = None) -> datasets.Dataset:
    """Turn a sentence dataset into model windows with aligned labels.

    Each row of the result is one window: ``input_ids``, ``attention_mask``, ``labels`` (the
    word's tag id on its first subword, ``-100`` elsewhere; with ``later_subwords``, a map from
    :func:`continuation_labels`, a word's later subwords get ``later_subwords[tag]`` instead of
    ``-100``: the model learns a tag for every subword), and for merging predictions back
    ``sentence`` (row index in ``dataset``) and ``word_index`` (the word at each position,
    ``-1`` where no label is read). With ``doc_context``, a sentence that fits is surrounded
    by the neighbouring sentences of its document (labels only on the sentence itself).
    """
    require_fast_tokenizer(tokenizer)
    prefix, suffix = special_template(tokenizer)
    budget = window_budget(tokenizer, config.max_length)
    if config.stride >= budget:
        raise ValueError(f"stride ({config.stride}) must be smaller than max_length minus special "
                         f"tokens ({budget})")
    cols = dataset.to_dict()  # plain lists: indexing a datasets Column reads Arrow at every access
    tokens = cols["tokens"]
    tags = cols["ner_tags"] if "ner_tags" in cols else [[0] * len(t) for t in tokens]
    doc_ids = cols["doc_id"] if "doc_id" in cols else list(range(len(tokens)))
    pieces = word_pieces(tokenizer, tokens)
    flat = [[t for p in ps for t in p] for ps in pieces]

    rows: dict[str, list] = {"input_ids": [], "attention_mask": [], "labels": [], "sentence": [],
                             "word_index": []}
    for i, ps in enumerate(pieces):
        lengths = [len(p) for p in ps]
        for s, e in window_spans(lengths, budget, config.stride):
            ids: list[int] = []
            labels: list[int] = []
            widx: list[int] = []
            for w in range(s, e):
                p = ps[w][:budget]
                ids += p
                later = IGNORE_INDEX if later_subwords is None else later_subwords[tags[i][w]]
                labels += [tags[i][w]] + [later] * (len(p) - 1)
                widx += [w] + [-1] * (len(p) - 1)
            if config.doc_context and (s, e) == (0, len(ps)):
                left, right = _context(i, flat, doc_ids, budget - len(ids))
                ids = left + ids + right
                labels = [IGNORE_INDEX] * len(left) + labels + [IGNORE_INDEX] * len(right)
                widx = [-1] * len(left) + widx + [-1] * len(right)
            full = prefix + ids + suffix
            full_labels = [IGNORE_INDEX] * len(prefix) + labels + [IGNORE_INDEX] * len(suffix)
            full_widx = [-1] * len(prefix) + widx + [-1] * len(suffix)
            rows["input_ids"].append(full)
            rows["attention_mask"].append([1] * len(full))
            rows["labels"].append(full_labels)
            rows["sentence"].append(i)
            rows["word_index"].append(full_widx)
    return datasets.Dataset.from_dict(rows)


def _context(i: int, flat: list[list[int]], doc_ids: Sequence[int], room: int) -> tuple[list[int], list[int]]:
    """Subwords of the neighbouring sentences of sentence ``i``'s document, at most ``room``."""
    left: list[int] = []
    j = i - 1
    while j >= 0 and doc_ids[j] == doc_ids[i] and len(left) < room:
        left = flat[j] + left
        j -= 1
    right: list[int] = []
    j = i + 1
    while j < len(flat) and doc_ids[j] == doc_ids[i] and len(right) < room:
        right = right + flat[j]
        j += 1
    half = room // 2
    n_left = min(len(left), max(half, room - len(right)))
    n_right = min(len(right), room - n_left)
    return left[len(left) - n_left:], right[:n_right]


def merge_windows(sentence: Sequence[int], word_index: Sequence[Sequence[int]], n_words: Sequence[int],
                  values: Sequence[Sequence]) -> list[list]:
    """Merge per-position values of windows back to one value per word.

    ``values[k][p]`` is what window ``k`` says at position ``p`` (a label id, a probability row).
    A word seen in several windows takes the value from the window where it sits farthest from
    the window's edges. Raises if any word got no value (which would mean a word was dropped).
    """
    best: list[list[tuple[int, object] | None]] = [[None] * n for n in n_words]
    for k, (sent, widx) in enumerate(zip(sentence, word_index)):
        positions = [p for p, w in enumerate(widx) if w >= 0]
        if not positions:
            continue
        lo, hi = positions[0], positions[-1]
        for p in positions:
            w = widx[p]
            margin = min(p - lo, hi - p)
            cur = best[sent][w]
            if cur is None or margin > cur[0]:
                best[sent][w] = (margin, values[k][p])
    out: list[list] = []
    for s, row in enumerate(best):
        missing = [w for w, v in enumerate(row) if v is None]
        if missing:
            raise RuntimeError(f"sentence {s}: words {missing[:10]} got no prediction")
        out.append([v[1] for v in row])
    return out
