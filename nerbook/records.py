"""Benchmark and training records with provenance (chapter "Results").

Every number on the results page comes from a JSON record written by ``nerbook train --record``
or ``nerbook bench --record``. A record says what produced it: the command, the date, the
hardware, the library versions and the sha256 of the data files, so that a reader can rerun it.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

#: Keys every record must carry (a test checks the committed records).
PROVENANCE_KEYS = ("command", "date", "hardware", "versions", "data")

#: What a record can be: ``nerbook train --record`` (``train``), ``nerbook bench --record``
#: (``bench``), or a script under ``bench/`` that measures one question (``experiment``).
RECORD_KINDS = ("train", "bench", "experiment")

#: A bench record named ``...-seedN.json`` reruns a benchmark with another seed for the spread of
#: its dev F1 only. Such reruns may have shared the machine with other work, so their timings are
#: not compared with anything: :func:`bench_rows` leaves them out.
SEED_RERUN = re.compile(r"-seed(\d+)\.json$")


def hardware(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> dict:
    """CPU model and cores, the CPU's bf16 instruction sets (``bf16_flags``, from Linux's
    ``cpuinfo``: ``avx512_bf16`` for bf16 dot products in AVX-512, ``amx_bf16`` for AMX matrix
    units), and the GPU if there is one. The flags help explain why two records' matrix-product
    rates differ (chapter "Making it fast")."""
    import torch

    model, flags = None, None  # the first core's: every core reports the same
    try:
        for line in Path(cpuinfo).read_text().splitlines():
            key, _, value = (part.strip() for part in line.partition(":"))
            if key == "model name" and model is None:
                model = value
            elif key == "flags" and flags is None:
                flags = sorted(f for f in value.split() if "bf16" in f)
    except OSError:
        pass
    info = {"cpu": model or platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "machine": platform.machine()}
    if flags is not None:
        info["bf16_flags"] = flags
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_count"] = torch.cuda.device_count()
    return info


def versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("nerbook", "torch", "transformers", "datasets", "accelerate", "tokenizers", "seqeval"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    out["nerbook_commit"] = _git_commit()
    return out


def _git_commit() -> str | None:
    """The commit of the nerbook checkout that made a record (with ``+dirty`` for local edits)."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    if not (root / "pyproject.toml").is_file():
        return None  # an installed wheel, not a checkout
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None  # no git, or not a git checkout
    return head + ("+dirty" if dirty else "")


def data_hashes(paths: Sequence[str | os.PathLike]) -> dict:
    """sha256 of each data file (of train/valid/test.txt in a folder), by file name."""
    from nerbook.model import sha256_file

    out = {}
    for p in paths:
        p = Path(p)
        files = [p / n for n in ("train.txt", "valid.txt", "test.txt")] if p.is_dir() else [p]
        for f in files:
            if f.is_file():
                out[f.name] = sha256_file(f)
    return out


def generated_data_files(folder: str | os.PathLike, splits, prefix: str = "synthetic") -> list[Path]:
    """Generated splits (a mapping of split name to tagged dataset) written as CoNLL files
    ``folder/{prefix}-{split}.txt``: data that was never downloaded has these files' sha256 as
    its provenance (:func:`write_generated_record` writes them and the record)."""
    from nerbook.data import tag_names, write_conll

    paths = []
    for split, ds in splits.items():
        paths.append(Path(folder) / f"{prefix}-{split}.txt")
        write_conll(paths[-1], ds["tokens"], tag_names(ds), doc_ids=ds["doc_id"])
    return paths


def write_generated_record(path: str | os.PathLike, result: dict, splits: Mapping[str, Mapping],
                           texts: Mapping[str, str] | None = None,
                           command: Sequence[str] | None = None) -> Path:
    """An ``"experiment"`` record of a run on generated data, whose provenance is the sha256 of
    that data: ``splits`` maps a file prefix to splits (:func:`generated_data_files`), ``texts``
    a file name to other generated text (a pretraining corpus). The files live only while the
    record is written."""
    with tempfile.TemporaryDirectory() as tmp:
        files = [f for prefix, data in splits.items() for f in generated_data_files(tmp, data, prefix)]
        for name, text in (texts or {}).items():
            files.append(Path(tmp) / name)
            files[-1].write_text(text, encoding="utf-8")
        return write_record(path, result, data=files, kind="experiment", command=command)


def provenance(data: Sequence[str | os.PathLike] = (), command: Sequence[str] | None = None) -> dict:
    """The provenance block of a record."""
    argv = list(command) if command is not None else ["nerbook", *sys.argv[1:]]
    return {
        "command": " ".join(argv),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "hardware": hardware(),
        "versions": versions(),
        "data": data_hashes(data),
    }


def write_record(path: str | os.PathLike, result: dict, data: Sequence[str | os.PathLike] = (),
                 kind: str = "train", command: Sequence[str] | None = None) -> Path:
    """Write ``result`` with its provenance as a JSON record."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"kind": kind, **provenance(data, command), "result": result}
    part = path.with_name(path.name + ".part")  # a run killed mid-write leaves the old record whole
    part.write_text(json.dumps(record, indent=2, default=float) + "\n")
    os.replace(part, path)
    return path


def missing_provenance(record: dict) -> list[str]:
    """Provenance keys a record lacks or leaves empty (``data`` may not be empty either)."""
    return [k for k in PROVENANCE_KEYS if not record.get(k)]


def load_records(folder: str | os.PathLike) -> list[dict]:
    """All JSON records in a folder, each with its file name under ``_file``."""
    out = []
    for f in sorted(Path(folder).glob("*.json")):
        rec = json.loads(f.read_text())
        rec["_file"] = f.name
        out.append(rec)
    return out


def find_records(start: str | os.PathLike = ".") -> Path:
    """The ``records/`` folder of the repository holding ``start`` (walking up to ``pyproject.toml``)."""
    here = Path(start).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "records").is_dir():
            return folder / "records"
    raise FileNotFoundError(f"no records/ folder next to a pyproject.toml above {here}")


def train_row(record: dict) -> dict:
    """One row of the results table for a ``nerbook train --record`` record."""
    res, cfg = record["result"], record["result"]["config"]
    epochs = res["epochs"]
    dev = res.get("dev_scores") or {}
    row = {"model": cfg["model"], "data": ", ".join(sorted(record["data"])),
           "doc context": cfg["doc_context"], "epochs": len(epochs), "n train": res["n_train"],
           # records made before nerbook kept the word embeddings frozen trained every weight
           "word embeddings": "trained" if cfg.get("train_embeddings", True) or cfg["model"] == "tiny" else "frozen",
           "subword labels": "all" if cfg.get("label_all_subwords") else "first",
           # records made before --warmup-ratio existed warmed up over TrainConfig's 10%
           "warm-up": cfg.get("warmup_ratio") if cfg.get("warmup_ratio") is not None else 0.1,
           "dev F1": res["dev_f1"]}
    for typ, f1 in sorted(epochs[res["best_epoch"] - 1].get("dev_per_type", {}).items()):
        row[f"F1 {typ}"] = f1
    row["token accuracy"] = (dev.get("token_level") or {}).get("accuracy")
    row["s / epoch"] = sum(e["seconds"] for e in epochs) / len(epochs)
    row["hardware"] = record["hardware"].get("gpu") or f'{record["hardware"]["cpu"]} ({record["hardware"]["cores"]} cores)'
    row["date"] = record["date"][:10]
    return row


def is_seed_rerun(record: dict) -> bool:
    """Is this a bench record kept for its dev F1 only (file ``...-seedN.json``, see :data:`SEED_RERUN`)?"""
    return record.get("kind") == "bench" and bool(SEED_RERUN.search(record.get("_file", "")))


TIMING_KEYS = ("seconds", "ratio", "tokens/s", "peak MB", "sentences_per_s")


def bench_rows(record: dict, timings: bool | None = None) -> list[dict]:
    """Rows (one per contender) for a ``nerbook bench --record`` record.

    ``timings`` (default: unless the record is a seed rerun, :func:`is_seed_rerun`) keeps the
    seconds, ratios, throughput and memory; without it they are ``None``, so that a table never
    mixes the timings of a shared machine with those of a quiet one.
    """
    if timings is None:
        timings = not is_seed_rerun(record)
    setup, rows = record["result"]["setup"], []
    for name, c in record["result"]["contenders"].items():
        row = {"task": setup["task"], "contender": name, "seconds": c["seconds"], "ratio": c["ratio"]}
        if setup["task"] == "train":
            row.update({"tokens/s": c["tokens_per_s"], "computed tokens": c["computed_tokens"],
                        "padding share": c["padding_share"], "peak MB": c["peak_mem_mb"], "dev F1": c["dev_f1"]})
        else:
            row.update({k: c.get(k) for k in ("sentences_per_s", "agreement", "agreement_same_words", "f1")})
        if not timings:
            row.update({k: None for k in TIMING_KEYS if k in row})
        rows.append(row)
    return rows


#: The settings two ``bench train`` records must share for their dev F1s to be runs of one experiment.
SAME_EXPERIMENT = ("train", "model", "limit", "valid_limit", "batch_size", "epochs", "lr", "max_length", "device")


def bench_f1_runs(records: Sequence[dict], like: dict) -> dict[str, dict[int, float]]:
    """The dev F1 of every contender by seed, from the ``bench train`` records run like ``like``.

    Repeat ``r`` of a record ran seed ``setup["seed"] + r`` (for nerbook's loop, the model's new head
    and the data order; the Trainer draws its own order from ``42 + seed + r``, or from ``42 + r``
    alone in records made before that fix, such as the committed seed reruns), and each repeat keeps its
    own F1 under ``runs``. A seed met twice keeps the first record's run (records are read sorted
    by file name). Returns ``{contender: {seed: dev_f1}}``.
    """
    key = {k: like["result"]["setup"].get(k) for k in SAME_EXPERIMENT}
    out: dict[str, dict[int, float]] = {}
    for rec in records:
        if rec.get("kind") != "bench":
            continue
        setup = rec["result"]["setup"]
        if setup.get("task") != "train" or any(setup.get(k) != v for k, v in key.items()):
            continue
        for name, c in rec["result"]["contenders"].items():
            for r, run in enumerate(c.get("runs") or []):
                if run.get("dev_f1") is not None:
                    out.setdefault(name, {}).setdefault(setup["seed"] + r, float(run["dev_f1"]))
    return out
