"""``nerbook robustness``: JSON and table reports, gold and consistency scoring, one-line errors."""

from __future__ import annotations

import json
import re

import pytest

from nerbook.cli import main
from nerbook.data import tag_names, write_conll
from nerbook.perturb import PERTURBATIONS


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def small_conll(synth, tmp_path_factory):
    """The first 25 test sentences of the synthetic data, as a labelled CoNLL file."""
    ds = synth["test"].select(range(25))
    path = tmp_path_factory.mktemp("robust") / "small.txt"
    write_conll(path, ds["tokens"], tag_names(ds), doc_ids=ds["doc_id"])
    return path


def test_help_lists_every_option(capsys):
    with pytest.raises(SystemExit) as e:
        main(["robustness", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "usage: nerbook robustness" in out
    for option in ("--model", "--data", "--format", "--perturbations", "--rate", "--seed", "--batch-size", "--json"):
        assert option in out
    assert all(name in out for name in PERTURBATIONS)


def test_json_report_on_gold_data(tiny_ckpt, small_conll, capsys):
    code, out, err = run(capsys, "robustness", "--model", tiny_ckpt, "--data", small_conll,
                         "--perturbations", "char_noise,upper", "--rate", "0.1", "--seed", "1", "--json")
    assert code == 0, err
    r = json.loads(out)
    assert r["reference"] == "gold" and r["rate"] == 0.1 and r["seed"] == 1 and r["sentences"] == 25
    assert list(r["results"]) == ["clean", "char_noise", "upper"]
    for row in r["results"].values():
        assert set(row) == {"precision", "recall", "f1", "support", "drop", "per_type", "sentences_changed"}
        assert 0.0 <= row["f1"] <= 1.0 and set(row["per_type"]) <= {"PER", "ORG", "LOC", "MISC"}
    code, out, err = run(capsys, "evaluate", "--model", tiny_ckpt, "--data", small_conll, "--json")
    assert code == 0, err
    assert r["results"]["clean"]["f1"] == json.loads(out)["overall"]["f1"]


def test_table_mentions_every_perturbation(tiny_ckpt, small_conll, capsys):
    code, out, err = run(capsys, "robustness", "--model", tiny_ckpt, "--data", small_conll)
    assert code == 0, err
    assert "scored against gold tags" in out and "F1 per entity type" in out
    for name in ["clean", *PERTURBATIONS]:
        assert len(re.findall(rf"^{name} ", out, re.M)) == 2  # the overall row and the per-type row


def test_plain_text_is_scored_for_consistency(tiny_ckpt, tmp_path, capsys):
    (tmp_path / "t.txt").write_text("Maria Rossi flew to Berlin with ACME Corp.\n\nShares of Siemens rose .\n")
    code, out, err = run(capsys, "robustness", "--model", tiny_ckpt, "--data", tmp_path / "t.txt",
                         "--perturbations", "entity_swap,lower", "--json")
    assert code == 0, err
    r = json.loads(out)
    assert r["reference"] == "clean predictions" and r["sentences"] == 2
    assert list(r["results"]) == ["clean", "entity_swap", "lower"]
    code, out, err = run(capsys, "robustness", "--model", tiny_ckpt, "--data", tmp_path / "t.txt",
                         "--perturbations", "lower")
    assert code == 0, err
    assert "clean predictions (consistency)" in out


@pytest.mark.parametrize("flags, match", [
    (["--perturbations", "char_noise,typos"],
     r"--perturbations 'char_noise,typos': unknown perturbation\(s\) typos; choose from " + ", ".join(PERTURBATIONS)),
    (["--perturbations", ","], r"unknown perturbation\(s\) \(none given\)"),
    (["--rate", "0"], r"--rate 0.0: must be in \(0, 1\]"),
    (["--rate", "1.5"], r"--rate 1.5: must be in \(0, 1\]"),
    (["--rate", "nan"], r"--rate nan: must be in \(0, 1\]"),
])
def test_bad_arguments_are_one_line_errors(small_conll, tmp_path, capsys, flags, match):
    code, out, err = run(capsys, "robustness", "--model", tmp_path / "no-model", "--data", small_conll, *flags)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("nerbook: error: ")
    assert re.search(match, err), err


@pytest.mark.parametrize("content, match", [
    (None, r"missing\.txt: no such file"),
    ("Paris B-LOC\nrocks\n", r"bad\.txt:2: expected 2 columns"),
    ("Paris B-LOC\nrocks Q-PER\n", r"bad\.txt:2: unknown tag 'Q-PER'"),
    ("\n\n", r"bad\.txt: no text"),
])
def test_bad_data_fails_before_the_model_loads(tmp_path, capsys, content, match):
    path = tmp_path / ("missing.txt" if content is None else "bad.txt")
    if content is not None:
        path.write_text(content)
    code, out, err = run(capsys, "robustness", "--model", tmp_path / "no-model", "--data", path)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert re.search(match, err), err


def test_unknown_entity_type_names_the_line(tiny_ckpt, tmp_path, capsys):
    (tmp_path / "g.txt").write_text("Paris B-LOC\nrocks B-GENRE\n")
    code, out, err = run(capsys, "robustness", "--model", tiny_ckpt, "--data", tmp_path / "g.txt")
    assert code == 2 and "g.txt:2: unknown tag 'B-GENRE'" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("flags", [["--batch-size", "0"], ["--seed", "x"], ["--format", "xml"]])
def test_argparse_errors_exit_2(small_conll, capsys, flags):
    with pytest.raises(SystemExit) as e:
        main(["robustness", "--model", "m", "--data", str(small_conll), *flags])
    assert e.value.code == 2 and f"argument {flags[0]}: " in capsys.readouterr().err
