"""From words or raw text to entities (chapter "Fine-tuning and evaluation").

:class:`Tagger` runs a token-classification model over sentences in length-sorted batches,
reads the prediction at the first subword of every word (the same rule as training), merges
overlapping windows of long sentences, and returns one tag per word. ``predict_text`` goes
one step further: raw text in, entity spans with character offsets out.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import datasets
import numpy as np
import regex
import torch

from nerbook.align import WindowConfig, encode_windows, merge_windows
from nerbook.batching import LengthGroupedBatchSampler, token_collator
from nerbook.calibration import entity_confidences, tags_and_probs
from nerbook.data import Sentence, sentences_to_dataset, tag_names
from nerbook.export import is_onnx_export, load_onnx
from nerbook.metrics import entity_scores
from nerbook.model import load_model, read_checkpoint_meta, schema_of_model
from nerbook.runtime import resolve_device

#: A word: letters and digits with their combining marks (a decomposed ``é``, Devanagari vowel
#: signs), joined by ``-``/``'``; else one visible grapheme (``\X``: an emoji with its skin tone or
#: zero-width joins, a flag), from the ``regex`` library, which knows Unicode's rules.
_WORD_RE = regex.compile(r"[\w\p{M}]+(?:[-'’][\w\p{M}]+)*|(?!\s)\X")


def split_words(text: str) -> list[tuple[str, int, int]]:
    """Split raw text into words with character offsets: ``(word, start, end)``.

    Letters/digits (any script, with their combining marks) form words; every other visible
    character (punctuation, an emoji with its modifiers, a flag) is a word of its own. Offsets
    index the original string.
    """
    return [(m.group(), m.start(), m.end()) for m in _WORD_RE.finditer(text)]


@dataclass(frozen=True)
class Entity:
    """An entity found in text: ``text[start:end]`` is of ``type``; ``score`` is its confidence,
    the probability of its least sure word (:func:`nerbook.calibration.entity_confidences`,
    chapter "Safety and ethics")."""

    type: str
    start: int
    end: int
    text: str
    score: float

    def as_dict(self) -> dict:
        return {"type": self.type, "start": self.start, "end": self.end, "text": self.text,
                "score": round(self.score, 4)}


def autocast_for(device: str, precision: str):
    """A ``torch.autocast`` context for ``bf16``/``fp16``, or a no-op for ``fp32``."""
    if precision in ("fp32", "no", None):
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return torch.autocast(device_type=device, dtype=dtype)


class Tagger:
    """Batched, length-sorted NER inference with one prediction per word.

    Chapter "Fine-tuning and evaluation". ``max_length``/``stride``/``doc_context`` must match
    how the model was trained (see ``nerbook.json`` in a checkpoint).
    """

    def __init__(self, model, tokenizer, max_length: int = 128, stride: int = 32,
                 doc_context: bool = False, batch_size: int = 64, device: str | None = None,
                 precision: str = "fp32", temperature: float = 1.0) -> None:
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.model = model
        self.tokenizer = tokenizer
        self.window = WindowConfig(max_length, stride, doc_context)
        self.batch_size = batch_size
        self.device = device or next(model.parameters()).device.type
        self.precision = precision
        self.temperature = temperature  # probabilities = softmax(logits / T) (nerbook.calibration)
        self.schema = schema_of_model(model)
        self.collator = token_collator(tokenizer)

    @classmethod
    def from_checkpoint(cls, path: str, **kwargs) -> Tagger:
        """Load a checkpoint saved by ``nerbook train`` with its window settings; or an ONNX
        export of one (:mod:`nerbook.export`, a folder with ``model.onnx``), run on the CPU."""
        meta = read_checkpoint_meta(path)
        for key in ("max_length", "stride", "doc_context"):
            if key in meta and key not in kwargs:
                kwargs[key] = meta[key]
        if is_onnx_export(path):
            model, tokenizer = load_onnx(path)
            device = kwargs.pop("device", None)
            device = "cpu" if device in (None, "auto") else device
        else:
            model, tokenizer = load_model(str(path))
            device = resolve_device(kwargs.pop("device", None))
        model.to(device)
        return cls(model, tokenizer, device=device, **kwargs)

    @torch.inference_mode()
    def _window_logits(self, windows: datasets.Dataset) -> list[np.ndarray]:
        """The logits of every window, a ``(length, tags)`` float32 array each (rows of all its
        positions; :func:`~nerbook.align.merge_windows` reads the labelled ones)."""
        self.model.eval()
        rows = windows.select_columns(["input_ids", "attention_mask"]).to_list()
        out: list[np.ndarray] = [np.empty((0, 0), np.float32)] * len(rows)
        sampler = LengthGroupedBatchSampler([len(r["input_ids"]) for r in rows], self.batch_size,
                                            shuffle=False)
        for batch_idx in sampler:
            batch = self.collator([rows[i] for i in batch_idx])
            batch = {k: v.to(self.device) for k, v in batch.items()}
            with autocast_for(self.device, self.precision):
                logits = self.model(**batch).logits.float().cpu().numpy()
            for row, i in enumerate(batch_idx):
                out[i] = logits[row, :len(rows[i]["input_ids"])]
        return out

    def word_logits(self, dataset: datasets.Dataset) -> list[torch.Tensor]:
        """The raw logits at every word of every sentence, a ``(words, tags)`` tensor each (before
        any temperature): what temperature scaling is fitted on (chapter "Safety and ethics")."""
        windows = encode_windows(dataset, self.tokenizer, self.window)
        values = self._window_logits(windows)
        cols = windows.select_columns(["sentence", "word_index"]).to_dict()
        merged = merge_windows(cols["sentence"], cols["word_index"],
                               [len(t) for t in dataset["tokens"]], values)
        n_tags = len(self.schema.names)
        return [torch.from_numpy(np.stack(sent)) if sent else torch.zeros(0, n_tags) for sent in merged]

    def predict_dataset(self, dataset: datasets.Dataset) -> tuple[list[list[str]], list[list[float]]]:
        """Tags and probabilities (``softmax(logits / temperature)`` of the chosen tag) for every
        word of every sentence of a dataset."""
        return tags_and_probs(self.word_logits(dataset), self.schema.names, self.temperature)

    def score(self, dataset: datasets.Dataset, mode: str | None = None, token_level: bool = False) -> dict:
        """Entity-level scores of the predicted tags against a labelled dataset's (on words;
        ``mode`` as in :func:`nerbook.metrics.entity_scores`); with ``token_level``, the per-tag
        report too, under ``token_level``."""
        pred, _ = self.predict_dataset(dataset)
        return entity_scores(tag_names(dataset), pred, mode=mode, token_level=token_level)

    def tag(self, sentences: Sequence[Sequence[str]], doc_ids: Sequence[int] | None = None) -> list[list[str]]:
        """One tag per word for pre-split sentences (``doc_ids`` enable document context)."""
        return self.tag_with_scores(sentences, doc_ids)[0]

    def tag_with_scores(self, sentences: Sequence[Sequence[str]], doc_ids: Sequence[int] | None = None):
        sents = [Sentence(list(s), None, doc_ids[i] if doc_ids is not None else i, 0)
                 for i, s in enumerate(sentences)]
        if not sents:
            return [], []
        ds = sentences_to_dataset(sents, self.schema)
        return self.predict_dataset(ds)

    def predict_text(self, texts: str | Sequence[str]) -> list[list[Entity]] | list[Entity]:
        """Entities with character offsets for one text or a list of texts."""
        single = isinstance(texts, str)
        batch = [texts] if single else list(texts)
        words = [split_words(t) for t in batch]
        tags, probs = self.tag_with_scores([[w for w, _, _ in ws] for ws in words])
        out: list[list[Entity]] = []
        for text, ws, sent_spans in zip(batch, words, entity_confidences(tags, probs)):
            out.append([Entity(typ, ws[s][1], ws[e][2], text[ws[s][1]:ws[e][2]], conf)
                        for typ, s, e, conf in sent_spans])
        return out[0] if single else out
