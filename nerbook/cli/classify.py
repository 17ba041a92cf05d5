"""``nerbook train --task classify``: the same training command for labelled texts (chapter "One
recipe, many tasks"). Only the inputs differ; :mod:`nerbook.cli.train` does the rest."""

from __future__ import annotations

import argparse

from nerbook.cli.common import CliError

#: Settings of ``nerbook train`` that mean something for NER only, by their flags.
NER_ONLY = {"doc_context": "--doc-context", "label_all_subwords": "--label-all-subwords",
            "adversarial": "--adversarial"}


def classify_inputs(args: argparse.Namespace):
    """``(train_ds, valid_ds, model, tokenizer, task)`` for ``--task classify``: the labelled texts
    (:func:`nerbook.classify.load_text_splits`), a model with a classification head (or the
    interrupted run's, with ``--resume``) and the task."""
    from nerbook.classify import (
        SequenceClassification,
        class_names,
        load_classifier,
        load_text_splits,
    )

    for key, flag in NER_ONLY.items():
        if getattr(args, key):
            raise CliError(f"{flag}: for --task ner only")
    train_ds, valid_ds, classes = load_text_splits(args.train, args.valid, args.limit)
    if args.resume:
        model, tokenizer = load_classifier(args.resume)
        saved = class_names(model.config)
        if saved != list(classes):
            raise CliError(f"--resume {args.resume}: its classes {', '.join(saved)} are not the data's "
                           f"({', '.join(classes)}); resume with the data it was trained on")
    else:
        model, tokenizer = load_classifier(args.model, classes, texts=list(train_ds["text"]), seed=args.seed)
    return train_ds, valid_ds, model, tokenizer, SequenceClassification()


def evaluate_classifier(folder: str, data: str, batch_size: int) -> dict:
    """``nerbook evaluate --model DIR --data FILE`` for a checkpoint trained with ``--task classify``:
    accuracy, macro-F1 and each class's F1 on a labelled-text file read with the checkpoint's
    classes (a label it does not know is an error naming ``file:line``)."""
    from nerbook.classify import (
        class_names,
        classification_scores,
        load_classifier,
        predict_classes,
        read_labelled_texts,
    )
    from nerbook.model import read_checkpoint_meta

    model, tokenizer = load_classifier(folder)
    classes = class_names(model.config)
    ds = read_labelled_texts(data, classes)
    max_length = read_checkpoint_meta(folder).get("max_length", 128)
    predicted = predict_classes(model, tokenizer, list(ds["text"]), max_length, batch_size)
    return {"task": "classify", "n": len(ds), **classification_scores(list(ds["label"]), predicted, classes)}


def show_scores(r: dict) -> None:
    """The table ``nerbook evaluate`` prints for a classifier."""
    print(f"{'class':<16}{'f1':>8}")
    for name, f1 in r["per_class"].items():
        print(f"{name:<16}{f1:>8.4f}")
    print(f"accuracy {r['accuracy']:.4f}, macro-F1 {r['macro_f1']:.4f} on {r['n']} texts")
