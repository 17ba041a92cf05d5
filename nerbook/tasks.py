"""What changes between tasks: features, batches and the dev score (chapter "One recipe, many tasks").

The fine-tuning recipe's second step says the task's head and loss are the only things that
change from one task to the next. :func:`nerbook.train.train` is one loop for every task (AdamW,
the schedule, clipping, mixed precision, early stopping, checkpoints and resuming); a *task*
object hands it the pieces that differ:

- ``name``, ``metric``: the task's name (kept with checkpoints) and how its main dev score is
  printed after each epoch;
- ``features(dataset, tokenizer, cfg)``: the training rows as model inputs and ``labels``;
- ``collator(model, tokenizer, cfg)``: how rows become a batch (a
  :class:`~nerbook.batching.PackingCollator` packs them into rows; anything else pads
  length-grouped batches);
- ``score(model, tokenizer, dataset, cfg, device, precision)``: the dev scores, a dict whose
  ``dev_f1`` (the main score: early stopping and the best checkpoint follow it) and other
  ``dev_...`` entries go into the epoch's record.

:class:`TokenTagging` is named-entity recognition, the task of this book;
:class:`nerbook.classify.SequenceClassification` labels whole texts. :func:`tagging_loss` is
NER's loss with label smoothing (``TrainConfig.label_smoothing``).
"""

from __future__ import annotations

from typing import Protocol

import datasets
import torch

from nerbook.align import WindowConfig, continuation_labels, encode_windows
from nerbook.batching import PackingCollator
from nerbook.data import schema_of
from nerbook.predict import Tagger


class Task(Protocol):
    """The pieces of :func:`nerbook.train.train` that depend on the task (see the module)."""

    name: str
    metric: str

    def features(self, dataset: datasets.Dataset, tokenizer, cfg) -> datasets.Dataset: ...

    def collator(self, model, tokenizer, cfg): ...

    def score(self, model, tokenizer, dataset: datasets.Dataset, cfg, device: str | None,
              precision: str) -> dict: ...


class TokenTagging:
    """Named-entity recognition: one label per word (chapters "NER data and labels", "Fine-tuning
    and evaluation"). Words are cut into windows of ``cfg.max_length`` subwords with their labels
    on the first subword (all subwords with ``cfg.label_all_subwords``), random batches are packed
    into rows where the model allows it (``cfg.packing``), and the dev score is entity-level F1."""

    name = "ner"
    metric = "dev entity F1"

    def features(self, dataset: datasets.Dataset, tokenizer, cfg) -> datasets.Dataset:
        later = continuation_labels(schema_of(dataset).names) if cfg.label_all_subwords else None
        return encode_windows(dataset, tokenizer, WindowConfig(cfg.max_length, cfg.stride, cfg.doc_context), later)

    def collator(self, model, tokenizer, cfg) -> PackingCollator | None:
        """Packing where it is exact (BERT models), else None: length-grouped padded batches."""
        return PackingCollator.for_model(model, tokenizer) if cfg.packing else None

    def evaluate(self, model, tokenizer, dataset: datasets.Dataset, cfg, device: str | None = None,
                 precision: str = "fp32", token_level: bool = False) -> dict:
        """Entity-level scores on a labelled dataset (on words, conlleval rules); with
        ``token_level``, the per-tag report too."""
        tagger = Tagger(model, tokenizer, cfg.max_length, cfg.stride, cfg.doc_context,
                        batch_size=cfg.eval_batch_size, device=device, precision=precision)
        return tagger.score(dataset, token_level=token_level)

    def score(self, model, tokenizer, dataset: datasets.Dataset, cfg, device: str | None,
              precision: str) -> dict:
        scores = self.evaluate(model, tokenizer, dataset, cfg, device, precision)
        overall = scores["overall"]
        return {"dev_f1": overall["f1"], "dev_precision": overall["precision"], "dev_recall": overall["recall"],
                "dev_per_type": {k: v["f1"] for k, v in scores["per_type"].items()}}


def tagging_loss(model, batch: dict, label_smoothing: float = 0.0) -> torch.Tensor:
    """The token-tagging cross-entropy with label smoothing (Szegedy et al. 2016): each labelled
    token's target puts ``1 - label_smoothing`` on its tag and spreads ``label_smoothing`` evenly over
    all tags (its own included), so the model is not pushed towards ever larger logits; positions
    labelled -100 (later subwords, special tokens, padding) count for nothing, as in the model's
    own loss, which this equals at ``label_smoothing=0`` (chapter "Results", the accuracy goal)."""
    labels = batch["labels"]
    logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    return torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                             ignore_index=-100, label_smoothing=label_smoothing)


def check_label_smoothing(cfg, task: Task | None) -> None:
    """A :class:`~nerbook.train.TrainConfig`'s ``label_smoothing`` must be in [0, 1), for token
    tagging, without adversarial training (whose extra passes take the model's own loss): else a
    ValueError that says which."""
    if not 0.0 <= cfg.label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {cfg.label_smoothing}")
    if cfg.label_smoothing and not isinstance(task, TokenTagging):
        raise ValueError(f"label_smoothing is for token tagging (NER) only, not {type(task).__name__}")
    if cfg.label_smoothing and cfg.adversarial:
        raise ValueError("label_smoothing with adversarial training is not supported: its extra passes "
                         "take the model's own loss")
