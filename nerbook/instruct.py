"""A third task with one head change: answers in text (for chapter "One recipe, many tasks").

The recipe's second step says that for generation the head is the decoder's distribution over
the next token and the loss its negative log-likelihood. Here a small causal LM (chapter
"Self-supervised pretraining") is fine-tuned to answer an instruction about a sentence with the
sentence's entities, written out as text, through :func:`nerbook.train.train`'s loop, shared
with NER and classification; :class:`CausalGeneration` hands it what differs (see
:mod:`nerbook.tasks`):

- :func:`instruction_pair`  a tagged sentence -> the prompt's words and the answer's words
- :func:`parse_answer`, :func:`entities_of`, :func:`answer_scores`  an answer's text (or a
  tagged sentence) -> its entities; precision, recall and F1 of entity sets (the same counting
  as conlleval, on strings instead of positions)
- :func:`answer`  greedy decoding of one answer, until ``[SEP]`` (the pretraining chapter's loop)
- :func:`load_causal_lm`  a saved causal LM and its tokenizer (safetensors only), such as the
  models ``bench/generation.py --save`` keeps for chapter "Answers in text"
- :class:`CausalGeneration`  the task: features with the loss on the answer only, padded
  batches, and the dev score (F1 of the generated answers)
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Sequence

import datasets

from nerbook.align import IGNORE_INDEX
from nerbook.data import tag_names
from nerbook.metrics import spans
from nerbook.pretrain import continue_ids

#: The instruction before the sentence, and the cue before the answer.
INSTRUCTION = ("entities", "in", ":")
CUE = ("answer", ":")
#: The answer when a sentence has no entity, and the mark between two entities.
NONE, SEPARATOR = "none", ";"


def instruction_pair(words: Sequence[str], tags: Sequence[str]) -> tuple[list[str], list[str]]:
    """``(prompt, answer)`` as words: ``entities in : <sentence> answer :`` and, for each entity
    in reading order, its type and its words, separated by ``;`` (``none`` when there is none).

    >>> instruction_pair(["Ann", "met", "Bo", "Li", "in", "Rome"], ["B-PER", "O", "B-PER", "I-PER", "O", "B-LOC"])[1]
    ['PER', 'Ann', ';', 'PER', 'Bo', 'Li', ';', 'LOC', 'Rome']
    """
    reply: list[str] = []
    for kind, first, last in spans(tags):
        reply += ([SEPARATOR] if reply else []) + [kind, *words[first:last + 1]]
    return [*INSTRUCTION, *words, *CUE], reply or [NONE]


def parse_answer(words: Iterable[str], types: Iterable[str] = ("PER", "ORG", "LOC", "MISC")) -> Counter:
    """The entities an answer names, as a multiset of ``(type, text)``. A part between two ``;``
    counts only if it starts with a known type and has at least one word after it; anything
    else the model wrote (``none``, a stray word) names no entity."""
    types, found, part = set(types), Counter(), []
    for word in [*words, SEPARATOR]:
        if word != SEPARATOR:
            part.append(word)
            continue
        if len(part) >= 2 and part[0] in types:
            found[part[0], " ".join(part[1:])] += 1
        part = []
    return found


def entities_of(words: Sequence[str], tags: Sequence[str]) -> Counter:
    """The entities of a tagged sentence as a multiset of ``(type, text)``: what a perfect answer
    names, and how a tagger's output is scored beside a generated answer."""
    return Counter((kind, " ".join(words[first:last + 1])) for kind, first, last in spans(tags))


def answer_scores(gold: Sequence[Counter], predicted: Sequence[Counter]) -> dict[str, float]:
    """Micro precision, recall and F1 over entity sets, sentence by sentence: an entity counts as
    found when the answer names the same type and the same words (as often as the gold has it)."""
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold answers but {len(predicted)} predicted")
    tp = sum(sum((g & p).values()) for g, p in zip(gold, predicted))
    n_pred, n_gold = sum(sum(p.values()) for p in predicted), sum(sum(g.values()) for g in gold)
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "exact": float(
        sum(g == p for g, p in zip(gold, predicted)) / max(1, len(gold)))}


def _ids(tokenizer, words: Sequence[str]) -> list[int]:
    return tokenizer(list(words), is_split_into_words=True, add_special_tokens=False)["input_ids"]


def answer(model, tokenizer, prompt: Sequence[str], max_new_tokens: int = 48) -> list[str]:
    """Greedy decoding (:func:`nerbook.pretrain.continue_ids`, the loop of chapter
    "Self-supervised pretraining"): the most probable next token, one at a time, after
    ``[CLS]`` and the prompt, until ``[SEP]``; the answer's words (pieces joined back)."""
    ids = [tokenizer.cls_token_id, *_ids(tokenizer, prompt)]
    return tokenizer.decode(continue_ids(model, ids, tokenizer.sep_token_id, max_new_tokens)).split()


def load_causal_lm(folder: str | os.PathLike, tokenizer_folder: str | os.PathLike | None = None):
    """``(model, tokenizer)``: a causal LM saved with ``save_pretrained`` in ``folder`` (weights
    from safetensors only, never pickles or remote code) and the tokenizer saved in
    ``tokenizer_folder`` (default: the same folder), the model in eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from nerbook.model import quiet_transformers

    with quiet_transformers():
        model = AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True)
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder or folder)
    return model.eval(), tokenizer


class CausalGeneration:
    """Answers in text: each tagged sentence becomes
    ``[CLS] prompt answer [SEP]`` (:func:`instruction_pair`); the labels are the tokens, with
    ``-100`` on ``[CLS]`` and the prompt, so the loss is the negative log-likelihood of the
    answer given the prompt (the model's own shifted loss). Batches are padded and length
    grouped. The dev score is the F1 of the entities named by greedily decoded answers."""

    name = "generation"
    metric = "dev answer F1"

    def features(self, dataset: datasets.Dataset, tokenizer, cfg) -> datasets.Dataset:
        rows = {"input_ids": [], "attention_mask": [], "labels": []}
        for words, tags in zip(dataset["tokens"], tag_names(dataset)):
            prompt, reply = instruction_pair(words, tags)
            p, r = _ids(tokenizer, prompt), _ids(tokenizer, reply)
            ids = [tokenizer.cls_token_id, *p, *r, tokenizer.sep_token_id][:cfg.max_length]
            rows["input_ids"].append(ids)
            rows["attention_mask"].append([1] * len(ids))
            rows["labels"].append(([IGNORE_INDEX] * (1 + len(p)) + ids[1 + len(p):])[:len(ids)])
        return datasets.Dataset.from_dict(rows)

    def collator(self, model, tokenizer, cfg) -> None:
        """None: padded, length-grouped batches (a causal LM cannot be packed as BERT is here)."""
        return None

    def answers(self, model, tokenizer, dataset: datasets.Dataset) -> tuple[list[Counter], list[Counter]]:
        """``(gold, predicted)`` entity multisets for every sentence of a tagged dataset."""
        gold, predicted = [], []
        for words, tags in zip(dataset["tokens"], tag_names(dataset)):
            gold.append(entities_of(words, tags))
            predicted.append(parse_answer(answer(model, tokenizer, instruction_pair(words, tags)[0])))
        return gold, predicted

    def score(self, model, tokenizer, dataset: datasets.Dataset, cfg, device: str | None,
              precision: str) -> dict:
        scores = answer_scores(*self.answers(model, tokenizer, dataset))
        return {"dev_f1": scores["f1"], "dev_precision": scores["precision"], "dev_recall": scores["recall"],
                "dev_exact": scores["exact"]}
