"""nerbook.data and nerbook.synthetic: reading, checking and generating CoNLL data."""

from __future__ import annotations

import datasets
import pytest

from nerbook.data import (
    CONLL2003,
    ConllFormatError,
    LabelSchema,
    iob2_to_bioes,
    load_hub,
    load_local,
    read_conll,
    read_conll_sentences,
    schema_of,
    tag_names,
    to_iob2,
    write_conll,
)
from nerbook.synthetic import name_pools, synthetic_conll

FOUR_COL = """-DOCSTART- -X- -X- O

EU NNP B-NP I-ORG
rejects VBZ B-VP O
German JJ B-NP I-MISC
call NN I-NP O
. . O O

Peter NNP B-NP I-PER
Blackburn NNP I-NP I-PER

-DOCSTART- -X- -X- O

BRUSSELS NNP B-NP I-LOC
1996-08-22 CD I-NP O
"""


def write(tmp_path, text, name="f.txt", mode="w"):
    p = tmp_path / name
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text, encoding="utf-8")
    return p


def test_reads_four_columns_iob1_with_documents(tmp_path):
    sents = read_conll_sentences(write(tmp_path, FOUR_COL))
    assert [s.tokens for s in sents] == [["EU", "rejects", "German", "call", "."],
                                         ["Peter", "Blackburn"], ["BRUSSELS", "1996-08-22"]]
    # IOB1 (I- at entity start) normalised to IOB2
    assert sents[0].tags == ["B-ORG", "O", "B-MISC", "O", "O"]
    assert sents[1].tags == ["B-PER", "I-PER"]
    assert [s.doc_id for s in sents] == [0, 0, 1]
    assert sents[1].line == 9
    raw = read_conll_sentences(write(tmp_path, FOUR_COL), normalize=False)
    assert raw[1].tags == ["I-PER", "I-PER"]


def test_reads_two_columns_into_dataset(tmp_path):
    ds = read_conll(write(tmp_path, "John B-PER\nSmith I-PER\nruns O\n\nParis B-LOC\n"))
    assert isinstance(ds, datasets.Dataset)
    assert ds.column_names == ["tokens", "ner_tags", "doc_id"]
    assert schema_of(ds) == CONLL2003
    assert tag_names(ds) == [["B-PER", "I-PER", "O"], ["B-LOC"]]


def test_iob_schemes():
    assert to_iob2(["I-PER", "I-PER", "B-PER", "O", "I-LOC"]) == ["B-PER", "I-PER", "B-PER", "O", "B-LOC"]
    assert to_iob2(["B-PER", "I-PER", "I-ORG"]) == ["B-PER", "I-PER", "B-ORG"]
    bioes = iob2_to_bioes(["B-PER", "I-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC"])
    assert bioes == ["B-PER", "I-PER", "E-PER", "O", "S-LOC", "B-LOC", "E-LOC"]
    assert to_iob2(bioes) == ["B-PER", "I-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC"]


def test_bioes_file_is_read_as_iob2(tmp_path):
    sents = read_conll_sentences(write(tmp_path, "New B-LOC\nYork E-LOC\nis O\nbig O\nBob S-PER\n"))
    assert sents[0].tags == ["B-LOC", "I-LOC", "O", "O", "B-PER"]


def test_schema_b_to_i_from_names_not_parity():
    shuffled = LabelSchema(("I-PER", "O", "B-LOC", "B-PER", "I-LOC"))
    assert shuffled.b_to_i == {3: 0, 2: 4}
    assert CONLL2003.b_to_i == {1: 2, 3: 4, 5: 6, 7: 8}
    assert LabelSchema.from_types(["PER"], scheme="bioes").names == ("O", "B-PER", "I-PER", "E-PER", "S-PER")
    with pytest.raises(ValueError, match="unknown tag 'B-FOO'"):
        CONLL2003.encode(["B-FOO"])


def test_schema_validation_and_b_to_i_by_name():
    with pytest.raises(ValueError, match="duplicate tag names"):
        LabelSchema(("O", "B-PER", "I-PER", "B-PER"))
    for bad in ("B_PER", "X-PER", "B-", "o", "", "BPER", "O-PER", "PER"):
        with pytest.raises(ValueError, match="is not 'O' or PREFIX-TYPE"):
            LabelSchema(("O", bad))
    # B-X -> I-X by name, wherever the two sit; a B- with no I- of its type maps to nothing
    schema = LabelSchema(["I-LOC", "O", "B-MISC", "B-LOC", "B-ORG", "I-ORG"])
    assert schema.names == ("I-LOC", "O", "B-MISC", "B-LOC", "B-ORG", "I-ORG")
    assert schema.b_to_i == {3: 0, 4: 5}
    assert schema.encode(["O", "B-LOC", "I-LOC"]) == [1, 3, 0]
    bioes = LabelSchema.from_types(["PER", "LOC"], scheme="bioes")
    assert {bioes.names[b]: bioes.names[i] for b, i in bioes.b_to_i.items()} == {"B-PER": "I-PER", "B-LOC": "I-LOC"}
    # from_tags: CoNLL's types first in CoNLL's order, then the others sorted
    assert LabelSchema.from_tags(["B-ZOO", "O", "I-LOC", "B-ANIMAL", "B-PER"]).names == (
        "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ANIMAL", "I-ANIMAL", "B-ZOO", "I-ZOO")


def test_malformed_line_names_file_and_line(tmp_path):
    p = write(tmp_path, "EU NNP B-NP B-ORG\nrejects VBZ O\n")
    with pytest.raises(ConllFormatError, match=r"f\.txt:2: expected 4 columns.*found 3"):
        read_conll_sentences(p)


def test_unknown_tag_is_named(tmp_path):
    p = write(tmp_path, "a O\nb X-PER\n")
    with pytest.raises(ConllFormatError, match=r"f\.txt:2: .*'X-PER'"):
        read_conll_sentences(p)
    p = write(tmp_path, "a O\nb B-FOO\n", "g.txt")
    with pytest.raises(ConllFormatError, match=r"g\.txt:2: unknown tag 'B-FOO'"):
        read_conll_sentences(p, schema=CONLL2003)


def test_empty_file_and_blank_only_file(tmp_path):
    with pytest.raises(ConllFormatError, match="no sentences"):
        read_conll_sentences(write(tmp_path, ""))
    with pytest.raises(ConllFormatError, match="no sentences"):
        read_conll_sentences(write(tmp_path, "\n\n-DOCSTART- O\n\n", "b.txt"))


def test_non_utf8_names_line(tmp_path):
    p = write(tmp_path, b"a O\nb O\n\xff\xfe O\n")
    with pytest.raises(ConllFormatError, match=r"f\.txt:3: not valid UTF-8"):
        read_conll_sentences(p)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_conll_sentences(tmp_path / "nope.txt")


def test_empty_sentences_are_not_created(tmp_path):
    sents = read_conll_sentences(write(tmp_path, "\n\na O\n\n\n\nb B-PER\n\n\n"))
    assert [s.tokens for s in sents] == [["a"], ["b"]]


def test_write_read_roundtrip(tmp_path, synth):
    ds = synth["valid"]
    write_conll(tmp_path / "v.txt", ds["tokens"], tag_names(ds), doc_ids=ds["doc_id"])
    back = read_conll(tmp_path / "v.txt")
    assert back["tokens"] == ds["tokens"]
    assert tag_names(back) == tag_names(ds)
    assert back["doc_id"] == [d - ds["doc_id"][0] for d in ds["doc_id"]]


def test_write_read_roundtrip_with_extra_columns(tmp_path):
    """Four columns as CoNLL-2003 has them (word POS chunk tag): the columns are written in the
    order given, so the tag column goes last, where the reader takes it from."""
    words = [["EU", "rejects", "German", "call"], ["Peter", "Blackburn"], ["BRUSSELS", "1996-08-22"]]
    pos = [["NNP", "VBZ", "JJ", "NN"], ["NNP", "NNP"], ["NNP", "CD"]]
    chunk = [["B-NP", "B-VP", "B-NP", "I-NP"], ["B-NP", "I-NP"], ["B-NP", "I-NP"]]
    tags = [["B-ORG", "O", "B-MISC", "O"], ["B-PER", "I-PER"], ["B-LOC", "O"]]
    path = tmp_path / "four.txt"
    write_conll(path, words, pos, chunk, tags, doc_ids=[7, 7, 9])
    lines = path.read_text(encoding="utf-8").splitlines()
    assert "EU NNP B-NP B-ORG" in lines and "1996-08-22 CD I-NP O" in lines
    assert sum(line.startswith("-DOCSTART-") for line in lines) == 2
    back = read_conll_sentences(path)
    assert [s.tokens for s in back] == words
    assert [s.tags for s in back] == tags
    assert [s.columns for s in back] == [[[w, p, c, t] for w, p, c, t in zip(*cols)]
                                         for cols in zip(words, pos, chunk, tags)]
    assert [s.doc_id for s in back] == [0, 0, 1]
    assert [s.tokens for s in read_conll_sentences(path, with_tags=False)] == words
    ds = read_conll(path)
    assert tag_names(ds) == tags and ds["tokens"] == words


def test_load_local(conll_dir, synth):
    dd = load_local(conll_dir)
    assert set(dd) == {"train", "valid", "test"}
    assert len(dd["train"]) == len(synth["train"])
    with pytest.raises(FileNotFoundError):
        load_local(conll_dir / "nope")


def _hub_standin(folder):
    """A local folder of parquet files with the hub conll2003 schema."""
    names = list(CONLL2003.names)
    feats = datasets.Features({
        "id": datasets.Value("string"),
        "tokens": datasets.Sequence(datasets.Value("string")),
        "pos_tags": datasets.Sequence(datasets.ClassLabel(names=["NN", "NNP"])),
        "chunk_tags": datasets.Sequence(datasets.ClassLabel(names=["O", "B-NP"])),
        "ner_tags": datasets.Sequence(datasets.ClassLabel(names=names)),
    })
    rows = {"id": ["0", "1"], "tokens": [["EU", "rejects"], ["Peter", "Blackburn"]],
            "pos_tags": [[1, 0], [1, 1]], "chunk_tags": [[1, 0], [1, 1]], "ner_tags": [[3, 0], [1, 2]]}
    folder.mkdir()
    for split in ("train", "validation", "test"):
        datasets.Dataset.from_dict(rows, features=feats).to_parquet(str(folder / f"{split}.parquet"))
    return folder


def test_load_hub_with_local_standin(tmp_path):
    dd = load_hub(str(_hub_standin(tmp_path / "conll2003")))
    assert set(dd) == {"train", "valid", "test"}
    assert dd["train"].column_names == ["tokens", "ner_tags", "doc_id"]
    assert tag_names(dd["valid"]) == [["B-ORG", "O"], ["B-PER", "I-PER"]]
    assert schema_of(dd["test"]) == CONLL2003


def test_load_hub_offline_is_a_clear_error(tmp_path, monkeypatch):
    # Offline with an empty hub cache: nothing to read (tests/test_full_profile.py reads a full one).
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RuntimeError, match="offline") as err:
        load_hub("lhoestq/conll2003")
    assert len(str(err.value).splitlines()) == 1 and str(tmp_path / "hub") in str(err.value)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")  # either variable means offline
    with pytest.raises(RuntimeError, match="offline"):
        load_hub("lhoestq/conll2003")


def test_synthetic_is_seeded_and_holds_out_names():
    a = synthetic_conll(300, 100, 100, seed=1)
    b = synthetic_conll(300, 100, 100, seed=1)
    assert a["train"]["tokens"] == b["train"]["tokens"]
    assert synthetic_conll(300, 0, 0, seed=2)["train"]["tokens"] != a["train"]["tokens"]
    pools = name_pools(1)
    for typ in ("PER", "ORG", "LOC"):
        train = set(pools["train"][typ])
        assert not train & set(pools["test"][typ]) and not train & set(pools["valid"][typ])
    types = {t[2:] for sent in tag_names(a["train"]) for t in sent if t != "O"}
    assert types == {"PER", "ORG", "LOC", "MISC"}
    words = {w for s in a["train"]["tokens"] for w in s}
    assert any(not w.isascii() for w in words)  # names from several locales
    assert max(len(s) for s in synthetic_conll(600, 0, 0, seed=0)["train"]["tokens"]) > 128


def test_load_splits_folder_file_dev_and_limit(conll_dir, tmp_path):
    from nerbook.data import CONLL2003, load_splits

    train, valid, schema = load_splits(conll_dir)
    assert schema == CONLL2003 and valid is not None and len(train) > 8
    n_valid = len(valid)
    train, valid, _ = load_splits(conll_dir / "train.txt", limit=8)
    assert len(train) == 8 and valid is None  # a file: no dev set unless named
    (tmp_path / "dev.txt").write_text("Paris B-LOC\nrocks O\n")
    _, valid, _ = load_splits(conll_dir, tmp_path / "dev.txt")
    assert len(valid) == 1 != n_valid and valid["tokens"] == [["Paris", "rocks"]]
    with pytest.raises(FileNotFoundError, match="nope: no such file or folder"):
        load_splits(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="none of train.txt"):
        load_splits(tmp_path / "empty")
    (tmp_path / "dev.txt").write_text("Paris B-LOC\nrocks B-GENRE\n")
    with pytest.raises(ConllFormatError, match=r"dev\.txt:2: unknown tag 'B-GENRE'"):
        load_splits(conll_dir, tmp_path / "dev.txt")


def test_conll_lines_docstart_columns():
    from nerbook.data import conll_lines

    words, pos, tags = [["a"], ["b"]], [["DT"], ["NN"]], [["O"], ["B-PER"]]
    assert list(conll_lines(words, tags, doc_ids=[0, 1])) == [
        "-DOCSTART- O", "", "a O", "", "-DOCSTART- O", "", "b B-PER", ""]
    assert list(conll_lines(words, pos, tags, doc_ids=[5, 5]))[:4] == ["-DOCSTART- -X- O", "", "a DT O", ""]
    assert list(conll_lines(words)) == ["a", "", "b", ""]
