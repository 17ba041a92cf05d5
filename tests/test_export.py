"""nerbook.export and ``nerbook export``: the tiny checkpoint exported to ONNX, checked against
PyTorch, quantized to int8 (ONNX Runtime and PyTorch), run by the Tagger, the CLI and the bench."""

from __future__ import annotations

import contextlib
import io
import json
import shutil

import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from nerbook.cli import main  # noqa: E402
from nerbook.export import (  # noqa: E402
    CHECK_SHAPES,
    OnnxTokenClassifier,
    quantize_onnx_int8,
    quantize_torch_int8,
    sample_inputs,
    weights_mb,
)

#: Word tags an int8 model must share with its fp32 original on the synthetic test set. Measured
#: on the tiny checkpoint (64 hidden units, 2 epochs; onnxruntime 1.32, torch 2.13): 99.86% for
#: ONNX Runtime's per-channel int8 (99.78% per tensor) and 99.86% for PyTorch's per-tensor int8.
#: A tiny model's logits lie close together, so int8 noise flips a few; the bound leaves room for
#: other versions and seeds.
INT8_WORD_AGREEMENT = 0.97


@pytest.fixture(scope="module")
def exported(tiny_ckpt, tmp_path_factory):
    """The tiny checkpoint exported by ``nerbook export --json``: the folder and what it printed."""
    out = tmp_path_factory.mktemp("export") / "onnx"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["export", "--model", str(tiny_ckpt), "--out", str(out), "--json"]) == 0
    return out, json.loads(printed.getvalue())


@pytest.fixture(scope="module")
def exported_int8(exported, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "int8"
    return out, quantize_onnx_int8(exported[0], out)


@pytest.fixture(scope="module")
def eager(tiny_ckpt, synth):
    """The PyTorch checkpoint's tags and probabilities on the synthetic test set."""
    from nerbook.predict import Tagger

    tagger = Tagger.from_checkpoint(tiny_ckpt, device="cpu")
    return tagger, tagger.predict_dataset(synth["test"])


def _json(capsys, argv: list[str]) -> dict:
    capsys.readouterr()
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def word_agreement(a: list[list[str]], b: list[list[str]]) -> float:
    pairs = [(x, y) for s, t in zip(a, b) for x, y in zip(s, t, strict=True)]
    return sum(x == y for x, y in pairs) / len(pairs)


def test_export_matches_pytorch_on_the_checked_shapes(exported, tiny_ckpt):
    from nerbook.model import read_checkpoint_meta

    out, printed = exported
    assert printed["max_abs_logit_diff"] < 1e-4 and printed["precision"] == "fp32"
    assert printed["checked_shapes"] == [list(s) for s in CHECK_SHAPES]
    assert printed["exporter"] == "dynamo", printed["exporter"]  # else the TorchScript fallback says why
    assert 0 < printed["size_mb"] < 1.5 * printed["model_size_mb"]
    saved, source = read_checkpoint_meta(out), read_checkpoint_meta(tiny_ckpt)
    assert saved["format"] == "onnx" and saved["max_abs_logit_diff"] == printed["max_abs_logit_diff"]
    for key in ("labels", "max_length", "stride"):
        assert saved[key] == source[key]
    assert (out / "model.onnx").is_file() and (out / "tokenizer.json").is_file()


def test_export_traces_plain_attention_and_one_gelu_per_layer(exported):
    """Plain attention exports as MatMul-Softmax-MatMul (no NaN guards of the fused call), and
    opset 20 keeps GELU one operator: the graph ONNX Runtime runs fastest (see export_onnx)."""
    import collections

    import onnx
    from transformers import AutoConfig

    out, printed = exported
    assert printed["attention"] == "eager" and printed["opset"] == 20
    layers = AutoConfig.from_pretrained(out).num_hidden_layers
    ops = collections.Counter(n.op_type for n in onnx.load(str(out / "model.onnx")).graph.node)
    assert ops["Softmax"] == layers and ops["Gelu"] == layers, ops
    assert "IsNaN" not in ops and "Erf" not in ops


def test_onnx_runtime_leaves_the_slow_fusion_off(exported, tmp_path, monkeypatch):
    """The fusion nerbook turns off exists under that name and fires on an export (a misspelt name
    would be ignored silently), and nerbook's session is opened without it."""
    import onnx
    import onnxruntime as ort

    from nerbook.export import SLOW_FUSIONS

    model = str(exported[0] / "model.onnx")

    def ops_after_optimizing(disabled: list[str]) -> set[str]:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        opts.optimized_model_filepath = str(tmp_path / f"optimized-{len(disabled)}.onnx")
        ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"], disabled_optimizers=disabled)
        return {n.op_type for n in onnx.load(opts.optimized_model_filepath).graph.node}

    assert "SkipLayerNormalization" in ops_after_optimizing([])
    assert "SkipLayerNormalization" not in ops_after_optimizing(list(SLOW_FUSIONS))
    seen: dict = {}
    opened = ort.InferenceSession
    monkeypatch.setattr(ort, "InferenceSession", lambda *a, **k: seen.update(k) or opened(*a, **k))
    OnnxTokenClassifier(exported[0], threads=1)
    assert set(SLOW_FUSIONS) <= set(seen["disabled_optimizers"])


def test_dynamic_axes_run_at_new_shapes(exported, tiny_ckpt):
    from nerbook.model import load_model

    out, meta = exported
    session = OnnxTokenClassifier(out, threads=1)
    assert session.input_names == meta["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]
    model = load_model(str(tiny_ckpt))[0].eval()
    for n, dim in enumerate(session.session.get_inputs()[0].shape):
        assert not isinstance(dim, int), f"axis {n} of input_ids is fixed: {dim}"
    for shape in ((5, 23), (2, 64), (7, 1)):
        inputs = sample_inputs(shape, model.config.vocab_size, meta["inputs"])
        got = session(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
        with torch.inference_mode():
            want = model(**inputs).logits
        assert got.shape == want.shape == (*shape, model.config.num_labels)
        real = inputs["attention_mask"].bool()
        assert (got - want).abs()[real].max() < 1e-4


def test_tagger_on_the_export_gives_pytorchs_tags_and_probabilities(exported, eager, synth):
    from nerbook.predict import Tagger

    tagger = Tagger.from_checkpoint(exported[0])
    assert isinstance(tagger.model, OnnxTokenClassifier) and tagger.device == "cpu"
    assert tagger.schema == eager[0].schema and tagger.window == eager[0].window
    tags, probs = tagger.predict_dataset(synth["test"])
    assert tags == eager[1][0]
    worst = max(abs(p - q) for ps, qs in zip(probs, eager[1][1]) for p, q in zip(ps, qs))
    assert worst < 1e-4


def test_int8_export_is_smaller_and_mostly_agrees(exported, exported_int8, eager, synth):
    from nerbook.predict import Tagger

    out, meta = exported_int8
    assert meta["precision"] == "int8" and meta["max_abs_logit_diff_vs_fp32"] > 0
    assert weights_mb(out) < 0.6 * weights_mb(exported[0])
    tags, _ = Tagger.from_checkpoint(out).predict_dataset(synth["test"])
    assert word_agreement(tags, eager[1][0]) >= INT8_WORD_AGREEMENT


def test_torch_int8_runs_in_the_tagger(eager, synth):
    from nerbook.predict import Tagger

    fp32 = eager[0]
    quantized = quantize_torch_int8(fp32.model)
    assert not any(type(m) is torch.nn.Linear for m in quantized.modules())
    assert any(type(m) is torch.nn.Linear for m in fp32.model.modules())  # the original is untouched
    tagger = Tagger(quantized, fp32.tokenizer, max_length=fp32.window.max_length,
                    stride=fp32.window.stride, device="cpu")
    tags, _ = tagger.predict_dataset(synth["test"])
    assert word_agreement(tags, eager[1][0]) >= INT8_WORD_AGREEMENT


def test_an_export_is_not_a_pytorch_checkpoint(exported):
    from nerbook.model import ModelLoadError, load_model

    with pytest.raises(ModelLoadError, match="ONNX export"):
        load_model(str(exported[0]))
    with pytest.raises(ModelLoadError, match="CPU"):
        OnnxTokenClassifier(exported[0]).to("cuda")


def test_predict_cli_runs_an_export(exported, tiny_ckpt, conll_dir, tmp_path, capsys):
    outs = {}
    for name, model in (("onnx", exported[0]), ("torch", tiny_ckpt)):
        outs[name] = tmp_path / f"{name}.conll"
        assert main(["predict", "--model", str(model), "--input", str(conll_dir / "test.txt"),
                     "--output", str(outs[name]), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[0])
    assert summary["sentences"] == 150
    assert outs["onnx"].read_text() == outs["torch"].read_text()


def test_export_cli_int8_and_refusals(tiny_ckpt, exported, tmp_path, capsys, monkeypatch):
    import nerbook.export

    def reuse_the_export(model, out, opset=20, overwrite=False):  # the fixture's: one export is enough
        shutil.copytree(exported[0], out)
        return {}

    monkeypatch.setattr(nerbook.export, "export_onnx", reuse_the_export)
    out = tmp_path / "int8"
    r = _json(capsys, ["export", "--model", str(tiny_ckpt), "--out", str(out), "--int8", "--json"])
    assert r["precision"] == "int8" and r["max_abs_logit_diff"] == exported[1]["max_abs_logit_diff"]
    assert 0 < r["max_abs_logit_diff_vs_fp32"] < 1 and r["size_mb"] < r["model_size_mb"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["int8"]  # no temporary folder left
    for argv, match in (
        (["--model", str(tiny_ckpt), "--out", str(out)], "exists and is not empty"),
        (["--model", str(tmp_path / "nope"), "--out", str(tmp_path / "x")], "no such folder"),
        (["--model", str(exported[0]), "--out", str(tmp_path / "x")], "already an ONNX export"),
        (["--model", str(tiny_ckpt), "--out", str(tiny_ckpt), "--overwrite"], "is the model being exported"),
    ):
        assert main(["export", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("nerbook: error: ") and match in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_bench_predict_deployment_contenders(tiny_ckpt, exported, conll_dir, capsys):
    data = str(conll_dir / "test.txt")
    r = _json(capsys, ["bench", "predict", "--model", str(tiny_ckpt), "--data", data, "--limit", "40",
                       "--against", "onnx,onnx-int8,torch-int8", "--threads", "1", "--no-isolate", "--json"])
    c = r["contenders"]
    assert list(c) == ["nerbook", "onnx", "onnx-int8", "torch-int8"]
    assert c["onnx"]["agreement"] == 1.0 and c["onnx"]["f1_change"] == 0.0
    for name in ("onnx-int8", "torch-int8"):
        assert c[name]["size_mb"] < 0.75 * c["nerbook"]["size_mb"] and c[name]["agreement"] >= 0.8
    assert all(c[name]["device"] == "cpu" and c[name]["sentences_per_s"] > 0 for name in c)
    exports = r["setup"]["exports"]
    assert exports["onnx"]["max_abs_logit_diff"] < 1e-4 and exports["onnx-int8"]["per_channel"]
    assert main(["bench", "predict", "--model", str(exported[0]), "--data", data, "--against", "none"]) == 2
    assert "an ONNX export" in capsys.readouterr().err
