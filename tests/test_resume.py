"""Runs that survive faults: a deterministic tiny model (tokenizer included), checkpoints written
all at once, ``nerbook train --resume`` after a SIGKILL ending bitwise as an uninterrupted run,
and one-line errors for a bad ``--out`` or a damaged resume folder."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from nerbook.cli import main
from nerbook.data import schema_of
from nerbook.model import load_model
from nerbook.train import TrainConfig, train

QUIET = dict(progress=False, max_length=64, stride=16)
SMALL = ["--model", "tiny", "--precision", "no", "--max-length", "64", "--stride", "16", "--epochs", "1",
         "--limit", "40", "--batch-size", "16"]

TINY_IN_A_PROCESS = """
import hashlib, json, sys, torch
from nerbook.synthetic import synthetic_conll
from nerbook.data import schema_of
from nerbook.model import load_model
train = synthetic_conll(n_train=200, n_valid=5, n_test=5, seed=0)["train"]
model, tok = load_model("tiny", schema_of(train), texts=train["tokens"], seed=3)
h = hashlib.sha256()
for name, t in sorted(model.state_dict().items()):
    h.update(name.encode()); h.update(t.numpy().tobytes())
print(json.dumps({"vocab": tok.get_vocab(), "weights": h.hexdigest()}))
"""


def env(**extra) -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
            "OMP_NUM_THREADS": "1", **extra}


def test_tiny_model_is_the_same_in_every_process():
    """Same texts and seed, two processes with different hash seeds: the same vocabulary (ids
    too) and bitwise the same weights. 200 synthetic sentences: HF's trainer broke an overlapping
    tie (``##nc`` / ``##ce``) differently in each process here."""
    runs = [subprocess.Popen([sys.executable, "-c", TINY_IN_A_PROCESS], stdout=subprocess.PIPE, text=True,
                             env=env(PYTHONHASHSEED=str(s))) for s in (1, 2)]
    out = [json.loads(p.communicate(timeout=120)[0]) for p in runs]
    assert all(p.returncode == 0 for p in runs)
    assert len(out[0]["vocab"]) == 400
    assert out[0]["vocab"] == out[1]["vocab"]
    assert out[0]["weights"] == out[1]["weights"]


def nerbook_train(conll_dir: Path, out: Path, *more: str) -> subprocess.Popen:
    args = ["--train", str(conll_dir / "train.txt"), "--valid", str(conll_dir / "valid.txt"), "--out", str(out),
            "--model", "tiny", "--precision", "no", "--epochs", "3", "--limit", "200", "--batch-size", "16",
            "--lr", "3e-3", "--max-length", "64", "--stride", "16", "--seed", "7", "--json", *more]
    return subprocess.Popen([sys.executable, "-m", "nerbook", "train", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env())


def finished_epochs(last: Path) -> int:
    try:
        return len(json.loads((last / "history.json").read_text())["history"]["epochs"])
    except (OSError, ValueError):  # not there yet (or, without atomic saving, half-written)
        return 0


def test_sigkill_in_epoch_2_then_resume_is_bitwise_the_uninterrupted_run(tmp_path, conll_dir):
    """Kill ``nerbook train`` (SIGKILL) as soon as epoch 1's state is saved, i.e. during epoch 2;
    ``--resume OUT/last`` then ends with bitwise the weights (best/ and last/), dev F1 and history
    of the same run left alone. On CPU, one thread, fp32: every step is the same computation on
    the same numbers (weights, AdamW moments and step, scheduler, sampler order and dropout seeds
    are all restored or re-derived from seed + epoch), so there is no tolerance to allow for."""
    from safetensors.torch import load_file

    full = nerbook_train(conll_dir, tmp_path / "full")
    cut = nerbook_train(conll_dir, tmp_path / "cut")
    deadline = time.monotonic() + 60
    while finished_epochs(tmp_path / "cut" / "last") < 1:
        assert cut.poll() is None and time.monotonic() < deadline, cut.communicate()[1][-2000:]
        time.sleep(0.02)
    os.kill(cut.pid, signal.SIGKILL)
    cut.communicate()
    assert cut.returncode == -signal.SIGKILL
    assert json.loads((tmp_path / "cut" / "last" / "nerbook.json").read_text())["epoch"] == 1  # killed in epoch 2
    resumed = nerbook_train(conll_dir, tmp_path / "cut", "--resume", str(tmp_path / "cut" / "last"))
    results = []
    for p in (full, resumed):
        stdout, stderr = p.communicate(timeout=120)
        assert p.returncode == 0, stderr[-2000:]
        results.append(json.loads(stdout.splitlines()[-1]))
    a, b = results
    assert a["dev_f1"] == b["dev_f1"] and a["best_epoch"] == b["best_epoch"] and len(b["epochs"]) == 3
    for key in ("train_loss", "dev_f1", "step"):
        assert [e[key] for e in a["epochs"]] == [e[key] for e in b["epochs"]], key
    assert a["dev_scores"] == b["dev_scores"]
    for folder in ("best", "last"):
        wa, wb = (load_file(str(tmp_path / run / folder / "model.safetensors")) for run in ("full", "cut"))
        assert wa.keys() == wb.keys()
        for name in wa:
            assert torch.equal(wa[name], wb[name]), f"{folder}: {name}"
    assert not list((tmp_path / "cut").glob(".*")), "temporary folders left behind"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, synth):
    """A one-epoch tiny run with OUT/best and OUT/last."""
    out = tmp_path_factory.mktemp("run")
    model, tok = load_model("tiny", schema_of(synth["train"]), texts=synth["train"]["tokens"])
    train(model, tok, synth["train"].select(range(48)), synth["valid"].select(range(16)),
          TrainConfig(epochs=1, batch_size=16, mixed_precision="no", **QUIET), out_dir=out)
    return out


def contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_crash_while_saving_state_keeps_the_previous_last(tmp_path, run_dir, synth, monkeypatch):
    """Epoch 2's save of OUT/last dies half-way through train_state.pt: OUT/last is still epoch
    1's, byte for byte, loadable and resumable; no temporary folder is left."""
    out = tmp_path / "run"
    shutil.copytree(run_dir, out)
    before = contents(out / "last")
    real_save = torch.save

    def dies_half_way(obj, f, *a, **kw):
        if str(f).endswith("train_state.pt"):
            Path(f).write_bytes(b"\x80\x02half")
            raise OSError("disk full")
        return real_save(obj, f, *a, **kw)

    monkeypatch.setattr(torch, "save", dies_half_way)
    model, tok = load_model(str(out / "last"))
    with pytest.raises(OSError, match="disk full"):
        train(model, tok, synth["train"].select(range(48)), synth["valid"].select(range(16)),
              TrainConfig(epochs=2, batch_size=16, mixed_precision="no", **QUIET), out_dir=out,
              resume_from=out / "last")
    monkeypatch.undo()
    assert contents(out / "last") == before
    assert sorted(p.name for p in out.iterdir()) == ["best", "last"]
    model, tok = load_model(str(out / "last"))
    res = train(model, tok, synth["train"].select(range(48)), synth["valid"].select(range(16)),
                TrainConfig(epochs=2, batch_size=16, mixed_precision="no", **QUIET), out_dir=out,
                resume_from=out / "last")
    assert [e["epoch"] for e in res.history["epochs"]] == [1, 2]


def test_crash_while_saving_a_checkpoint_keeps_the_previous_one(tmp_path, run_dir, monkeypatch):
    """save_checkpoint dies after the new weights are written, before the tokenizer: the old
    best/ is whole and loads."""
    from nerbook.model import save_checkpoint

    best = tmp_path / "best"
    shutil.copytree(run_dir / "best", best)
    before = contents(best)
    model, tok = load_model(str(best))
    with torch.no_grad():
        model.classifier.bias += 1
    monkeypatch.setattr(type(tok), "save_pretrained", lambda *a, **k: (_ for _ in ()).throw(OSError("killed")))
    with pytest.raises(OSError, match="killed"):
        save_checkpoint(model, tok, best, {"epoch": 2})
    assert contents(best) == before
    assert [p.name for p in tmp_path.iterdir()] == ["best"]
    load_model(str(best))


def cli(capsys, *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    rc = main(["train", *argv])
    return rc, capsys.readouterr().err


def bad_train_state(last: Path) -> None:
    (last / "train_state.pt").write_bytes(b"not a pickle at all")


@pytest.mark.parametrize("damage, named", [
    (lambda last: (last / "train_state.pt").unlink(), "train_state.pt: missing"),
    (bad_train_state, "train_state.pt: cannot resume"),
    (lambda last: (last / "train_state.pt").write_bytes((last / "train_state.pt").read_bytes()[:100]),
     "train_state.pt: cannot resume"),
    (lambda last: (last / "history.json").unlink(), "history.json: missing"),
    (lambda last: (last / "history.json").write_text('{"history": {"epo'), "history.json: cannot resume"),
    (lambda last: (last / "history.json").write_text('{"best_f1": 0.5}'), "history.json: cannot resume"),
])
def test_damaged_resume_folder_is_one_line_naming_the_file(tmp_path, run_dir, conll_dir, capsys, damage, named):
    last = tmp_path / "last"
    shutil.copytree(run_dir / "last", last)
    damage(last)
    rc, err = cli(capsys, "--train", str(conll_dir), "--out", str(tmp_path / "again"), "--resume", str(last), *SMALL)
    assert rc == 2
    assert err.startswith("nerbook: error: ") and len(err.strip().splitlines()) == 1, err
    assert f"{last}/{named}" in err, err


def test_resume_uses_the_saved_tokenizer(tmp_path, conll_dir, synth, capsys):
    """A run whose tokenizer was learnt on other texts resumes with that tokenizer (a new one
    learnt from the data would not match the saved embeddings)."""
    from nerbook.synthetic import synthetic_conll

    other = synthetic_conll(n_train=80, n_valid=5, n_test=5, seed=5)["train"]["tokens"]
    model, tok = load_model("tiny", schema_of(synth["train"]), texts=other)
    out = tmp_path / "run"
    train(model, tok, synth["train"].select(range(32)), None,
          TrainConfig(epochs=1, batch_size=16, mixed_precision="no", **QUIET), out_dir=out)
    rc, err = cli(capsys, "--train", str(conll_dir), "--out", str(out), "--resume", str(out / "last"),
                  *[a if a != "1" else "2" for a in SMALL])
    assert rc == 0, err
    assert (out / "best" / "tokenizer.json").read_bytes() == (out / "last" / "tokenizer.json").read_bytes()
    assert json.loads((out / "last" / "tokenizer.json").read_text())["model"]["vocab"] == tok.get_vocab()
    assert json.loads((out / "last" / "nerbook.json").read_text())["epoch"] == 2


def test_resume_with_other_labels_is_one_line(tmp_path, run_dir, conll_dir, capsys):
    last = tmp_path / "last"
    shutil.copytree(run_dir / "last", last)
    config = json.loads((last / "config.json").read_text())
    config["id2label"]["1"] = "B-PERSON"
    config["label2id"] = {v: int(k) for k, v in config["id2label"].items()}
    (last / "config.json").write_text(json.dumps(config))
    rc, err = cli(capsys, "--train", str(conll_dir), "--out", str(tmp_path / "o"), "--resume", str(last), *SMALL)
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"nerbook: error: --resume {last}: its labels") and "B-PERSON" in err, err


def test_out_must_be_new_or_empty(tmp_path, conll_dir, capsys):
    out = tmp_path / "out"
    (out / "best").mkdir(parents=True)
    (out / "best" / "model.safetensors").write_bytes(b"stale weights")
    t0 = time.perf_counter()
    rc, err = cli(capsys, "--train", str(conll_dir), "--out", str(out), *SMALL)
    assert rc == 2 and err == f"nerbook: error: --out {out}: is not empty (an earlier run?); use --overwrite " \
                              "to replace it, --resume OUT/last to continue it, or another folder\n"
    (tmp_path / "file").write_text("x")
    rc, err = cli(capsys, "--train", str(conll_dir), "--out", str(tmp_path / "file"), *SMALL)
    assert rc == 2 and err == f"nerbook: error: --out {tmp_path / 'file'}: is a file, not a folder\n"
    assert time.perf_counter() - t0 < 2, "refused before loading data or training"
    assert (out / "best" / "model.safetensors").read_bytes() == b"stale weights"
    rc, err = cli(capsys, "--train", str(conll_dir), "--out", str(out), "--overwrite", "--patience", "0", *SMALL)
    assert rc == 0, err
    assert (out / "best" / "model.safetensors").read_bytes() != b"stale weights"
    load_model(str(out / "best"))
    with pytest.raises(SystemExit) as e:
        main(["train", "--train", str(conll_dir), "--out", str(out), "--overwrite", "--resume", str(out / "last")])
    assert e.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


def test_overwrite_clears_the_old_best_before_training(tmp_path, conll_dir, capsys, monkeypatch):
    """A run with --overwrite that dies in its first epoch leaves no old best/ to be taken for its own."""
    import nerbook.train as T

    out = tmp_path / "out"
    (out / "best").mkdir(parents=True)
    (out / "best" / "model.safetensors").write_bytes(b"stale weights")
    monkeypatch.setattr(T, "train_epoch", lambda *a, **k: (_ for _ in ()).throw(T.TrainingDiverged("nan")))
    rc, err = cli(capsys, "--train", str(conll_dir), "--out", str(out), "--overwrite", *SMALL)
    assert rc == 2 and "nan" in err
    assert not (out / "best").exists()
