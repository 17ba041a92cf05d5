"""Committed records (records/*.json) carry provenance, and the results page can read them."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from nerbook.records import (
    PROVENANCE_KEYS,
    bench_rows,
    find_records,
    load_records,
    missing_provenance,
    train_row,
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
    assert rec["kind"] in ("train", "bench")
    assert rec["command"].startswith("nerbook ")
    assert all(len(h) == 64 for h in rec["data"].values())  # sha256 of every data file


@pytest.mark.parametrize("path", RECORDS, ids=[p.name for p in RECORDS])
def test_results_page_reads_every_record(path):
    rec = json.loads(path.read_text())
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
