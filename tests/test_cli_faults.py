"""The command line with bad files, paths and checkpoints: one line on stderr, exit 2, nothing
lost; and inputs that used to be misread (plain text taken for CoNLL, a byte-order mark, U+2028)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from nerbook.cli import main

GOLD = "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\nPeter NNP B-NP B-PER\n\n"


def run(capsys, *argv):
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def broken_ckpts(tiny_ckpt, tmp_path_factory):
    """Checkpoints broken three ways: truncated weights, fewer labels than the head, a run folder."""
    root = tmp_path_factory.mktemp("broken")
    truncated = Path(shutil.copytree(tiny_ckpt, root / "truncated"))
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    labels = Path(shutil.copytree(tiny_ckpt, root / "labels"))
    config = json.loads((labels / "config.json").read_text())
    config["id2label"], config["label2id"] = {"0": "O", "1": "B-PER"}, {"O": 0, "B-PER": 1}
    (labels / "config.json").write_text(json.dumps(config))
    run_folder = root / "run"
    shutil.copytree(tiny_ckpt, run_folder / "best")
    return {"truncated": truncated, "labels": labels, "run": run_folder}


def broken_commands(tmp: Path, ckpt: Path, broken: dict, conll: Path) -> dict[str, tuple[list, str]]:
    """Each broken input: the command line, and what its one-line error must say."""
    (tmp / "gold.txt").write_text(GOLD)
    (tmp / "renamed.txt").write_text(GOLD.replace("EU", "XX"))
    (tmp / "short.txt").write_text("EU NNP B-NP B-ORG\nrejects VBZ B-VP\n")
    (tmp / "blank.txt").write_text("\n \n\n")
    (tmp / "text.txt").write_text("Paris\n")
    (tmp / "folder").mkdir(exist_ok=True)
    return {
        "evaluate other words": (["evaluate", "--gold", tmp / "gold.txt", "--pred", tmp / "renamed.txt"],
                                 "renamed.txt:3: word 'XX' but the gold file has 'EU' at"),
        "evaluate a folder": (["evaluate", "--gold", tmp / "folder", "--pred", tmp / "gold.txt"],
                              "folder: is a folder, not a file"),
        "predict a CoNLL line without its tag": (["predict", "--model", ckpt, "--input", tmp / "short.txt"],
                                                 "short.txt:2: expected 4 columns like the first word line"),
        "predict --format conll, the same": (["predict", "--model", ckpt, "--input", tmp / "short.txt",
                                              "--format", "conll"], "short.txt:2: expected 4 columns"),
        "predict a blank file": (["predict", "--model", ckpt, "--input", tmp / "blank.txt"],
                                 "blank.txt: no text"),
        "predict a folder": (["predict", "--model", ckpt, "--input", tmp / "folder"],
                             "folder: is a folder, not a file"),
        "predict into a folder": (["predict", "--model", ckpt, "--input", tmp / "text.txt", "--output",
                                   tmp / "folder"], "--output"),
        "predict into a missing folder": (["predict", "--model", ckpt, "--input", tmp / "text.txt", "--output",
                                           tmp / "nope" / "out.txt"], "does not exist"),
        "predict with truncated weights": (["predict", "--model", broken["truncated"], "--input",
                                            tmp / "text.txt"], "truncated: cannot load the weights"),
        "predict with fewer labels than the head": (["predict", "--model", broken["labels"], "--input",
                                                     tmp / "text.txt"], "labels: cannot load the weights"),
        "predict with a run folder": (["predict", "--model", broken["run"], "--input", tmp / "text.txt"],
                                      f"use {broken['run'] / 'best'}"),
        "evaluate with truncated weights": (["evaluate", "--model", broken["truncated"], "--data",
                                             conll / "test.txt"], "truncated: cannot load the weights"),
        "train from a folder without train.txt": (["train", "--train", tmp / "folder", "--out", tmp / "o",
                                                   "--model", "tiny"], "folder: none of train.txt"),
        "bench on a missing file": (["bench", "train", "--train", tmp / "nope.txt", "--model", "tiny",
                                     "--no-isolate"], "nope.txt: no such file"),
    }


CASES = ["evaluate other words", "evaluate a folder", "predict a CoNLL line without its tag",
         "predict --format conll, the same", "predict a blank file", "predict a folder",
         "predict into a folder", "predict into a missing folder", "predict with truncated weights",
         "predict with fewer labels than the head", "predict with a run folder",
         "evaluate with truncated weights", "train from a folder without train.txt", "bench on a missing file"]


@pytest.mark.parametrize("case", CASES)
def test_broken_input_is_one_line_and_exit_2(case, tmp_path, tiny_ckpt, broken_ckpts, conll_dir, capsys):
    argv, says = broken_commands(tmp_path, tiny_ckpt, broken_ckpts, conll_dir)[case]
    code, out, err = run(capsys, *argv)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("nerbook: error: "), err
    assert says in err
    assert not list(tmp_path.glob("**/.*.tmp"))  # no half-written output left behind


def test_unreadable_input_is_one_line(tmp_path, tiny_ckpt, capsys, monkeypatch):
    """An input the user may not read (PermissionError; simulated, since root reads anything)."""
    p = tmp_path / "secret.txt"
    p.write_text(GOLD)
    real = Path.read_bytes

    def read_bytes(self):
        if self == p:
            raise PermissionError(13, "Permission denied")
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    code, _, err = run(capsys, "evaluate", "--gold", p, "--pred", p)
    assert code == 2 and err == f"nerbook: error: {p}: cannot read it (Permission denied)\n"


def test_plain_text_lines_of_two_words_are_text(tmp_path, tiny_ckpt, capsys):
    """Lines of the same number of words are text unless their last column is a tag."""
    from nerbook.cli.predict import detect_format

    (tmp_path / "names.txt").write_text("Barack Obama\nAngela Merkel\nNew York\n")
    code, out, err = run(capsys, "predict", "--model", tiny_ckpt, "--input", tmp_path / "names.txt")
    assert code == 0, err
    assert [json.loads(x)["text"] for x in out.splitlines()] == ["Barack Obama", "Angela Merkel", "New York"]
    for text, fmt in [("Hello world\nGood morning\n", "text"), ("Obama B-PER\nsaid O\n", "conll"),
                      ("EU NNP B-NP B-ORG\n", "conll"), ("-DOCSTART- O\n\nEU B-ORG\n", "conll"),
                      ("I O\n", "conll"), ("Paris\n", "text")]:
        (tmp_path / "f.txt").write_text(text)
        assert detect_format(tmp_path / "f.txt") == fmt, text


def test_a_byte_order_mark_is_not_a_word(tmp_path, tiny_ckpt, capsys):
    (tmp_path / "gold.txt").write_text(GOLD)
    (tmp_path / "bom.txt").write_text("\ufeff" + GOLD, encoding="utf-8")
    code, out, err = run(capsys, "evaluate", "--gold", tmp_path / "gold.txt", "--pred", tmp_path / "bom.txt",
                         "--json")
    assert code == 0, err
    assert json.loads(out)["overall"]["f1"] == 1.0
    code, _, err = run(capsys, "predict", "--model", tiny_ckpt, "--input", tmp_path / "bom.txt",
                       "--output", tmp_path / "out.txt")
    assert code == 0, err
    lines = (tmp_path / "out.txt").read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("-DOCSTART- ") and not any("\ufeff" in line for line in lines)
    assert [ln.split()[0] for ln in lines if ln and not ln.startswith("-DOCSTART-")] == ["EU", "rejects", "Peter"]


def test_text_records_are_the_input_lines(tmp_path, tiny_ckpt, capsys):
    """U+2028, U+0085 and form feeds inside a line do not start a new record; CRLF is a newline."""
    lines = ["Paris\u2028Berlin", "Rome\x85Oslo\x0cLima", "Café in Wien"]
    (tmp_path / "t.txt").write_text("\r\n".join(lines) + "\r\n", encoding="utf-8", newline="")
    code, out, err = run(capsys, "predict", "--model", tiny_ckpt, "--input", tmp_path / "t.txt")
    assert code == 0, err
    assert [json.loads(x)["text"] for x in out.split("\n") if x] == lines  # JSON lines: one a "\n"


def test_words_keep_their_marks_and_flags_stay_whole():
    from nerbook.predict import split_words

    text = "cafe\u0301 nai\u0308ve 🇫🇷 👍🏽 👩\u200d💻 हिन्दी U.S."
    assert [w for w, _, _ in split_words(text)] == [
        "cafe\u0301", "nai\u0308ve", "🇫🇷", "👍🏽", "👩\u200d💻", "हिन्दी", "U", ".", "S", "."]
    assert all(text[s:e] == w for w, s, e in split_words(text))
    assert split_words("cafe\u0301 ok")[1] == ("ok", 6, 8)  # offsets count the mark


def test_predict_output_is_replaced_whole(tmp_path, tiny_ckpt, capsys, monkeypatch):
    """A crash while predicting leaves an existing output file as it was, and no temporary file."""
    import nerbook.cli.predict as predict

    (tmp_path / "t.txt").write_text("Paris\n")
    (tmp_path / "out.txt").write_text("earlier results\n")

    def crash(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(predict, "tag_text", crash)
    with pytest.raises(KeyboardInterrupt):
        main(["predict", "--model", str(tiny_ckpt), "--input", str(tmp_path / "t.txt"),
              "--output", str(tmp_path / "out.txt"), "--overwrite"])
    assert (tmp_path / "out.txt").read_text() == "earlier results\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt", "t.txt"]


def test_predict_keeps_an_existing_output_unless_overwrite(tmp_path, tiny_ckpt, capsys):
    """Nothing is silently overwritten: an existing --output, or the input itself, is refused."""
    (tmp_path / "t.txt").write_text("Paris\n")
    (tmp_path / "out.txt").write_text("earlier results\n")
    base = ["predict", "--model", tiny_ckpt, "--input", tmp_path / "t.txt"]
    code, out, err = run(capsys, *base, "--output", tmp_path / "out.txt")
    assert code == 2 and out == ""
    assert err == f"nerbook: error: --output {tmp_path / 'out.txt'}: exists; use --overwrite to replace it, or name another file\n"
    assert (tmp_path / "out.txt").read_text() == "earlier results\n"
    code, out, err = run(capsys, *base, "--output", tmp_path / "t.txt", "--overwrite")
    assert code == 2 and "is the --input file" in err and (tmp_path / "t.txt").read_text() == "Paris\n"
    code, out, err = run(capsys, *base, "--output", tmp_path / "out.txt", "--overwrite")
    assert code == 0, err
    assert json.loads((tmp_path / "out.txt").read_text().splitlines()[0])["text"] == "Paris"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt", "t.txt"]
