"""Committed records (records/*.json) carry provenance, and the results page can read them."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import pytest

from nerbook.records import (
    PROVENANCE_KEYS,
    RECORD_KINDS,
    TIMING_KEYS,
    bench_f1_runs,
    bench_rows,
    find_records,
    hardware,
    is_seed_rerun,
    load_records,
    missing_provenance,
    train_row,
    write_generated_record,
    write_record,
)

ROOT = Path(__file__).resolve().parents[1]
RECORDS = sorted((ROOT / "records").glob("*.json"))


def test_there_are_records():
    kinds = {json.loads(p.read_text())["kind"] for p in RECORDS}
    assert {"train", "bench"} <= kinds


@pytest.mark.parametrize("path", RECORDS, ids=[p.name for p in RECORDS])
def test_committed_record_has_provenance(path):
    rec = json.loads(path.read_text())
    assert missing_provenance(rec) == [], f"{path.name} lacks provenance"
    assert rec["kind"] in RECORD_KINDS
    if rec["kind"] in ("train", "bench"):
        assert rec["command"].startswith("nerbook ")
    assert all(len(h) == 64 for h in rec["data"].values())  # sha256 of every data file


def _saved_files(record: dict) -> dict[str, str]:
    """The files an experiment kept beside its record (``bench/generation.py --save``), by path."""
    res = record["result"]
    return {**res.get("tokenizer", {}), **{k: v for run in res.get("runs", []) for k, v in run.get("saved", {}).items()}}


def test_the_models_a_chapter_loads_are_the_ones_their_record_made():
    """Every file a record says it saved is committed unchanged: the sha256 of each, computed here
    with hashlib, matches the record (so a chapter that loads them shows what the record measured)."""
    saved = {k: v for p in RECORDS for k, v in _saved_files(json.loads(p.read_text())).items()}
    assert any(k.endswith("tuned/model.safetensors") for k in saved)
    for rel, digest in saved.items():
        assert not Path(rel).is_absolute() and (ROOT / rel).is_file(), rel
        assert hashlib.sha256((ROOT / rel).read_bytes()).hexdigest() == digest, f"{rel} differs from its record"


@pytest.mark.parametrize("path", RECORDS, ids=[p.name for p in RECORDS])
def test_results_page_reads_every_record(path):
    rec = json.loads(path.read_text())
    rec["_file"] = path.name
    if rec["kind"] not in ("train", "bench"):
        return  # an experiment: the results page lists its provenance, its chapter reads it
    rows = [train_row(rec)] if rec["kind"] == "train" else bench_rows(rec)
    assert rows
    for row in rows:
        f1 = row.get("dev F1")
        assert f1 is None or 0.0 <= f1 <= 1.0


@pytest.mark.parametrize("key", PROVENANCE_KEYS)
def test_a_record_without_provenance_is_caught(key):
    rec = copy.deepcopy(json.loads(RECORDS[0].read_text()))
    del rec[key]
    assert missing_provenance(rec) == [key]
    rec[key] = {} if key in ("hardware", "versions", "data") else ""
    assert missing_provenance(rec) == [key]


def test_write_record_then_load(tmp_path):
    data = tmp_path / "train.txt"
    data.write_text("EU B-ORG\n\n")
    write_record(tmp_path / "records" / "r.json", {"dev_f1": 0.5}, [data], command=["nerbook", "train"])
    (tmp_path / "pyproject.toml").write_text("")
    recs = load_records(find_records(tmp_path))
    assert len(recs) == 1 and recs[0]["_file"] == "r.json" and missing_provenance(recs[0]) == []
    assert list(recs[0]["data"]) == ["train.txt"]


def test_a_write_cut_short_leaves_the_old_record_whole(tmp_path, monkeypatch):
    """A sweep rewrites its record after every run; a kill in the middle of a write must not
    leave half a JSON file where the finished runs were."""
    data = tmp_path / "train.txt"
    data.write_text("EU B-ORG\n\n")
    path = write_record(tmp_path / "r.json", {"runs": [1]}, [data], kind="experiment", command=["x"])
    real_write = Path.write_text

    def cut_short(self, text, *args, **kwargs):
        real_write(self, text[: len(text) // 2], *args, **kwargs)
        raise KeyboardInterrupt  # killed half-way through the write

    monkeypatch.setattr(Path, "write_text", cut_short)
    with pytest.raises(KeyboardInterrupt):
        write_record(path, {"runs": [1, 2]}, [data], kind="experiment", command=["x"])
    monkeypatch.undo()
    assert json.loads(path.read_text())["result"] == {"runs": [1]}
    assert [r["_file"] for r in load_records(tmp_path)] == ["r.json"]


def _bench(seed, f1s, file="bench-train-x.json"):
    runs = [{"seconds": 1.0, "dev_f1": f} for f in f1s]
    contender = {"seconds": 1.0, "ratio": 1.0, "tokens_per_s": 10.0, "computed_tokens": 10, "padding_share": 0.0,
                 "peak_mem_mb": 1.0, "dev_f1": sum(f1s) / len(f1s), "runs": runs}
    setup = {"task": "train", "train": "data", "model": "offline", "limit": 800, "batch_size": 16, "epochs": 1,
             "lr": 5e-5, "max_length": 128, "device": "cpu", "seed": seed}
    return {"kind": "bench", "_file": file, "result": {"setup": setup, "contenders": {"nerbook": contender}}}


def test_seed_reruns_give_their_f1_but_not_their_timings():
    first, rerun = _bench(0, [0.1, 0.2]), _bench(2, [0.3], "bench-train-x-seed2.json")
    assert not is_seed_rerun(first) and is_seed_rerun(rerun)
    assert bench_rows(first)[0]["seconds"] == 1.0
    assert all(bench_rows(rerun)[0][k] is None for k in TIMING_KEYS if k in bench_rows(rerun)[0])
    assert bench_rows(rerun)[0]["dev F1"] == 0.3
    other = _bench(5, [0.9], "bench-train-y-seed5.json")
    other["result"]["setup"]["epochs"] = 3  # another experiment: not a run of this one
    assert bench_f1_runs([first, rerun, other], first) == {"nerbook": {0: 0.1, 1: 0.2, 2: 0.3}}


def test_a_record_of_generated_data_hashes_the_data_as_conll_files(tmp_path, synth):
    from nerbook.data import tag_names, write_conll

    splits = {"train": synth["train"].select(range(20)), "valid": synth["valid"].select(range(10))}
    path = write_generated_record(tmp_path / "r.json", {"f1": 0.5}, {"synthetic": splits},
                                  {"corpus.txt": "a b c\nd e"}, command=["python", "bench/x.py"])
    record = json.loads(path.read_text())
    expected = {"corpus.txt": hashlib.sha256(b"a b c\nd e").hexdigest()}
    for split, ds in splits.items():  # written again here, by the CoNLL writer, and hashed
        write_conll(tmp_path / split, ds["tokens"], tag_names(ds), doc_ids=ds["doc_id"])
        expected[f"synthetic-{split}.txt"] = hashlib.sha256((tmp_path / split).read_bytes()).hexdigest()
    assert record["data"] == expected
    assert record["kind"] == "experiment" and record["command"] == "python bench/x.py"
    assert record["result"] == {"f1": 0.5} and not missing_provenance(record)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "train", "valid"]  # no data files left


def test_hardware_names_the_cpu_and_its_bf16_instruction_sets(tmp_path):
    """Two records' bf16 matrix-product rates differ by several times between a CPU with AMX and
    one without: the record says which it had. A two-core cpuinfo, written here, in Linux's format."""
    core = ("processor\t: {n}\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Processor\n"
            "flags\t\t: fpu avx512f avx512_bf16 amx_bf16 amx_tile avx512_fp16\n\n")
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(core.format(n=0) + core.format(n=1))
    info = hardware(cpuinfo)
    assert info["cpu"] == "Intel(R) Xeon(R) Processor"
    assert info["bf16_flags"] == ["amx_bf16", "avx512_bf16"]
    cpuinfo.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 avx512f\n")
    assert hardware(cpuinfo)["bf16_flags"] == []                    # no bf16 instructions at all
    assert "bf16_flags" not in hardware(tmp_path / "missing")       # unknown, not "none"
