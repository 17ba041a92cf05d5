"""The nerbook command line: JSON outputs, exact scores, lossless prediction, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from seqeval.metrics import classification_report, f1_score, precision_score, recall_score

from nerbook.cli import main
from nerbook.data import read_conll_sentences, write_conll


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("cmd", ["train", "evaluate", "predict", "bench"])
def test_help(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0
    assert "usage: nerbook " + cmd in capsys.readouterr().out


def test_python_dash_m():
    r = subprocess.run([sys.executable, "-m", "nerbook", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "nerbook 0.1.0"


def test_train_json(tmp_path, conll_dir, capsys):
    code, out, err = run(capsys, "train", "--train", conll_dir, "--model", "tiny", "--out", tmp_path / "run",
                         "--epochs", "1", "--batch-size", "32", "--lr", "3e-3", "--max-length", "64",
                         "--limit", "200", "--json", "--record", tmp_path / "rec.json")
    assert code == 0, err
    r = json.loads(out)
    assert 0.0 <= r["dev_f1"] <= 1.0 and len(r["epochs"]) == 1 and r["n_train"] == 200
    assert (tmp_path / "run" / "best" / "model.safetensors").is_file() and r["out"].endswith("best")
    rec = json.loads((tmp_path / "rec.json").read_text())
    assert rec["kind"] == "train" and set(rec["data"]) == {"train.txt", "valid.txt", "test.txt"}
    assert 0.0 <= rec["result"]["dev_scores"]["token_level"]["accuracy"] <= 1.0


@pytest.mark.parametrize("flags, trains_embeddings", [
    ([], False), (["--train-embeddings", "--no-packing", "--label-all-subwords"], True)])
def test_train_keeps_pretrained_embeddings_unless_asked(tmp_path, conll_dir, capsys, flags, trains_embeddings):
    code, out, err = run(capsys, "train", "--train", conll_dir, "--model", "offline", "--out", tmp_path / "run",
                         "--epochs", "1", "--batch-size", "8", "--max-length", "32", "--stride", "8", "--limit", "8",
                         "--json", *flags)
    assert code == 0, err
    r = json.loads(out)
    embeddings = 30522 * 384  # MiniLM's word-embedding table
    total = 22_568_841
    assert r["trainable_parameters"] == (total if trains_embeddings else total - embeddings)
    assert r["config"]["train_embeddings"] is trains_embeddings and r["config"]["packing"] is not trains_embeddings
    saved = json.loads((tmp_path / "run" / "best" / "nerbook.json").read_text())["train_config"]
    assert saved["label_all_subwords"] is trains_embeddings and saved["packing"] is not trains_embeddings


def _perturbed_pred_file(tmp_path, gold_path):
    sents = read_conll_sentences(gold_path, normalize=False)
    preds = []
    for i, s in enumerate(sents):
        p = list(s.tags)
        for j, t in enumerate(p):
            k = (i * 7 + j) % 11
            if k == 0 and t != "O":
                p[j] = t[:2] + ("ORG" if "PER" in t else "PER")  # type error
            elif k == 1:
                p[j] = "I-LOC"  # I- start
            elif k == 2:
                p[j] = "O"  # boundary error / miss
        preds.append(p)
    write_conll(tmp_path / "pred.txt", [s.tokens for s in sents], preds)
    return [s.tags for s in sents], preds


def test_evaluate_gold_pred_equals_seqeval(tmp_path, conll_dir, capsys):
    gold, pred = _perturbed_pred_file(tmp_path, conll_dir / "valid.txt")
    code, out, err = run(capsys, "evaluate", "--gold", conll_dir / "valid.txt", "--pred", tmp_path / "pred.txt", "--json")
    assert code == 0, err
    r = json.loads(out)
    assert abs(r["overall"]["precision"] - precision_score(gold, pred)) < 1e-9
    assert abs(r["overall"]["recall"] - recall_score(gold, pred)) < 1e-9
    assert abs(r["overall"]["f1"] - f1_score(gold, pred)) < 1e-9
    rep = classification_report(gold, pred, output_dict=True)
    for typ in ("PER", "ORG", "LOC", "MISC"):
        for k, sk in (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score")):
            assert abs(r["per_type"][typ][k] - rep[typ][sk]) < 1e-9
    assert 0 < r["token_level"]["accuracy"] <= 1 and r["overall"]["f1"] < 1


def test_predict_conll_tags_every_token_line(tmp_path, tiny_ckpt, capsys):
    words = [f"w{i}" for i in range(500)]
    (tmp_path / "in.txt").write_text("-DOCSTART- -X- -X- O\n\n" + "\n".join(f"{w} NN B-NP O" for w in words)
                                     + "\n\nParis NNP B-NP B-LOC\n")
    code, out, err = run(capsys, "predict", "--model", tiny_ckpt, "--input", tmp_path / "in.txt",
                         "--output", tmp_path / "out.txt", "--json")
    assert code == 0, err
    assert json.loads(out)["tagged"] == 501
    lines = [ln.split() for ln in (tmp_path / "out.txt").read_text().splitlines() if ln.strip()]
    token_lines = [ln for ln in lines if ln[0] != "-DOCSTART-"]
    assert len(token_lines) == 501 and all(len(ln) == 5 for ln in token_lines)


def test_predict_text_json_lines(tmp_path, tiny_ckpt, capsys):
    text = "Maria Rossi flew to 東京 😀 with ACME Corp.\n\nשלום from Berlin\n"
    (tmp_path / "t.txt").write_text(text, encoding="utf-8")
    code, out, err = run(capsys, "predict", "--model", tiny_ckpt, "--input", tmp_path / "t.txt")
    assert code == 0, err
    rows = [json.loads(x) for x in out.splitlines()]
    assert [r["text"] for r in rows] == text.splitlines()
    for r in rows:
        for e in r["entities"]:
            assert r["text"][e["start"]:e["end"]] == e["text"]


def test_evaluate_model_data(tiny_ckpt, conll_dir, capsys):
    code, out, err = run(capsys, "evaluate", "--model", tiny_ckpt, "--data", conll_dir / "test.txt", "--json")
    assert code == 0, err
    assert set(json.loads(out)) >= {"overall", "per_type", "token_level"}


@pytest.mark.parametrize("content,match", [
    ("a O\nb B-PER x\n", r"bad\.txt:2: expected 2 columns"),
    ("a O\nb Q-PER\n", r"bad\.txt:2: unknown tag 'Q-PER'"),
    ("", r"bad\.txt: no sentences"),
    (b"a O\n\xff O\n", r"bad\.txt:2: not valid UTF-8"),
])
def test_bad_input_one_line_error(tmp_path, capsys, content, match):
    import re

    p = tmp_path / "bad.txt"
    p.write_bytes(content) if isinstance(content, bytes) else p.write_text(content)
    code, out, err = run(capsys, "evaluate", "--gold", p, "--pred", p)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("nerbook: error: ")
    assert re.search(match, err)


def test_unknown_type_in_dev_file(tmp_path, conll_dir, capsys):
    (tmp_path / "dev.txt").write_text("Paris B-LOC\nrocks B-GENRE\n")
    code, _, err = run(capsys, "train", "--train", conll_dir / "train.txt", "--valid", tmp_path / "dev.txt",
                       "--model", "tiny", "--out", tmp_path / "o", "--epochs", "1")
    assert code == 2 and "dev.txt:2: unknown tag 'B-GENRE'" in err


def test_missing_model_and_mismatched_files(tmp_path, conll_dir, capsys):
    code, _, err = run(capsys, "predict", "--model", tmp_path / "nope", "--input", conll_dir / "test.txt")
    assert code == 2 and "no such model folder" in err
    (tmp_path / "short.txt").write_text("a O\n")
    code, _, err = run(capsys, "evaluate", "--gold", conll_dir / "test.txt", "--pred", tmp_path / "short.txt")
    assert code == 2 and "sentences" in err
    code, _, err = run(capsys, "evaluate", "--gold", conll_dir / "test.txt")
    assert code == 2 and "--gold FILE --pred FILE" in err


def test_predict_checkpoint_without_labels(tmp_path, synth, capsys):
    from transformers import AutoModelForTokenClassification

    from nerbook.model import tiny_config, train_wordpiece

    tok = train_wordpiece(synth["train"]["tokens"][:50])
    AutoModelForTokenClassification.from_config(tiny_config(len(tok))).save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    (tmp_path / "in.txt").write_text("Hello world\n")
    code, _, err = run(capsys, "predict", "--model", tmp_path / "m", "--input", tmp_path / "in.txt")
    assert code == 2 and "no label names" in err
