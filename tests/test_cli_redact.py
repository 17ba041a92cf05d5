"""``nerbook redact``: patterns alone and with a model, plain and JSON-lines output, safe writing,
one-line errors (chapter "Safety and ethics")."""

from __future__ import annotations

import json
import re

import pytest

from nerbook.cli import main

TEXT = ("Mail jane.doe@example.com or call +44 20 7946 0958.\n"
        "\n"
        "👩🏽‍💻 Pay DE89 3704 0044 0532 0130 00 from 10.0.0.7, card 4111 1111 1111 1111.\n"
        "Nothing personal here: version 2.10.4 on 2024-03-12.\n")
REDACTED = ["Mail <EMAIL> or call <PHONE>.", "",
            "👩🏽‍💻 Pay <IBAN> from <IP_ADDRESS>, card <CREDIT_CARD>.",
            "Nothing personal here: version 2.10.4 on 2024-03-12."]


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "in.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def test_help_lists_every_option(capsys):
    with pytest.raises(SystemExit) as e:
        main(["redact", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "usage: nerbook redact" in out
    for option in ("--model", "--input", "--output", "--overwrite", "--json", "--min-confidence",
                   "--patterns-only", "--batch-size"):
        assert option in out
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "redact" in capsys.readouterr().out


def test_patterns_only_to_stdout_keeps_every_line(text_file, capsys):
    code, out, err = run(capsys, "redact", "--patterns-only", "--input", text_file)
    assert code == 0, err
    assert out.split("\n")[:-1] == REDACTED and out.endswith("\n")


def test_json_lines_hold_offsets_but_not_the_removed_text(text_file, tmp_path, capsys):
    dest = tmp_path / "out.jsonl"
    code, out, err = run(capsys, "redact", "--patterns-only", "--input", text_file, "--output", dest, "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["replacements"] == 5 and summary["lines"] == 4 and summary["model"] is None
    assert summary["by_type"] == {"CREDIT_CARD": 1, "EMAIL": 1, "IBAN": 1, "IP_ADDRESS": 1, "PHONE": 1}
    rows = [json.loads(line) for line in dest.read_text(encoding="utf-8").splitlines()]
    assert [r["text"] for r in rows] == REDACTED
    source = TEXT.split("\n")
    for row, original in zip(rows, source):
        for rec in row["replacements"]:
            assert row["text"][rec["out_start"]:rec["out_end"]] == rec["placeholder"]
            assert original[rec["start"]:rec["end"]] in original and "text" not in rec
    written = dest.read_text(encoding="utf-8")
    assert "jane.doe" not in written and "4111" not in written and "DE89" not in written


def test_the_model_part_runs(tiny_ckpt, tmp_path, capsys):
    path = tmp_path / "t.txt"
    path.write_text("Maria Rossi flew to Berlin with ACME Corp , mail maria@acme.example .\n\n"
                    "Shares of Siemens rose 3 percent in Paris .\n", encoding="utf-8")
    code, out, err = run(capsys, "redact", "--model", tiny_ckpt, "--input", path, "--json",
                         "--output", tmp_path / "o.jsonl", "--batch-size", "8")
    assert code == 0, err
    assert json.loads(out)["model"] == str(tiny_ckpt)
    rows = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 3 and rows[1] == {"text": "", "replacements": []}
    assert "<EMAIL>" in rows[0]["text"]
    assert {r["source"] for row in rows for r in row["replacements"]} <= {"pattern", "model", "repeat"}
    assert {r["type"] for row in rows for r in row["replacements"]} <= {
        "PERSON", "ORGANIZATION", "LOCATION", "EMAIL"}
    code, out, err = run(capsys, "redact", "--model", tiny_ckpt, "--input", path, "--min-confidence", "1",
                         "--json", "--output", tmp_path / "sure.jsonl")
    assert code == 0, err
    rows = [json.loads(line) for line in (tmp_path / "sure.jsonl").read_text(encoding="utf-8").splitlines()]
    assert all(r["score"] >= 0.9999 for row in rows for r in row["replacements"] if r["source"] != "pattern")


def test_output_is_never_the_input_nor_an_existing_file(text_file, tmp_path, capsys):
    dest = tmp_path / "out.txt"
    dest.write_text("keep me")
    code, out, err = run(capsys, "redact", "--patterns-only", "--input", text_file, "--output", dest)
    assert code == 2 and "exists; use --overwrite" in err and dest.read_text() == "keep me"
    code, out, err = run(capsys, "redact", "--patterns-only", "--input", text_file, "--output", dest, "--overwrite")
    assert code == 0, err
    assert dest.read_text(encoding="utf-8").splitlines() == REDACTED
    code, out, err = run(capsys, "redact", "--patterns-only", "--input", text_file, "--output", text_file,
                         "--overwrite")
    assert code == 2 and "is the --input file" in err and text_file.read_text(encoding="utf-8") == TEXT
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "out.txt"]  # no temporary left


@pytest.mark.parametrize("flags, match", [
    ([], r"--model is required \(or --patterns-only"),
    (["--patterns-only", "--min-confidence", "1.5"], r"--min-confidence 1.5: must be in \[0, 1\]"),
    (["--model", "{tmp}/no-model"], r"no-model"),
    (["--patterns-only", "--input", "{tmp}/missing.txt"], r"missing\.txt: no such file"),
    (["--patterns-only", "--input", "{tmp}/latin1.txt"], r"latin1\.txt:1: not valid UTF-8"),
])
def test_bad_input_is_a_one_line_error(text_file, tmp_path, capsys, flags, match):
    (tmp_path / "latin1.txt").write_bytes("Müller\n".encode("latin-1"))
    argv = [f.format(tmp=tmp_path) for f in flags]
    if "--input" not in argv:
        argv += ["--input", str(text_file)]
    code, out, err = run(capsys, "redact", *argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("nerbook: error: ")
    assert re.search(match, err), err


@pytest.mark.parametrize("flags", [["--batch-size", "0"], ["--min-confidence", "x"]])
def test_argparse_errors_exit_2(text_file, capsys, flags):
    with pytest.raises(SystemExit) as e:
        main(["redact", "--patterns-only", "--input", str(text_file), *flags])
    assert e.value.code == 2 and f"argument {flags[0]}: " in capsys.readouterr().err
