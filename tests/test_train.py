"""nerbook.train: the loop learns, stops on NaN, saves safetensors, resumes, stops early."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
import torch

from nerbook.data import CONLL2003, schema_of
from nerbook.model import load_model
from nerbook.train import (
    TrainConfig,
    TrainingDiverged,
    evaluate,
    linear_warmup_decay,
    param_groups,
    resolve_precision,
    train,
)

QUIET = dict(progress=False, max_length=64, stride=16)


def tiny(synth, seed=0, **kw):
    return load_model("tiny", schema_of(synth["train"]), texts=synth["train"]["tokens"], seed=seed, **kw)


def test_learnability_on_held_out_names():
    """A tiny random BERT learns synthetic NER well enough to tag names it never saw.

    Short sentences only: this measures generalisation to unseen names. (Sentences over the
    window are tested in test_align/test_predict; a tiny model trained on 1% long sentences
    tags their far positions poorly, measured: test F1 0.77 with them, 0.89 without.) Six epochs
    at lr 3e-3 scored 0.939 here, in 30% less time than eight at 2e-3 (0.930).
    """
    from nerbook.synthetic import synthetic_conll

    t0 = time.perf_counter()
    ds = synthetic_conll(3000, 0, 300, seed=0, long_fraction=0.0)
    model, tok = load_model("tiny", CONLL2003, texts=ds["train"]["tokens"],
                            tiny_kwargs=dict(hidden=128, layers=2, heads=4, intermediate=256))
    res = train(model, tok, ds["train"], None,  # no dev pass each epoch: the test split decides
                TrainConfig(epochs=6, batch_size=32, lr=3e-3, patience=None, progress=False))
    test_f1 = evaluate(res.model, tok, ds["test"])["overall"]["f1"]
    print(f"held-out test entity F1 {test_f1:.3f} in {time.perf_counter() - t0:.0f} s")
    assert test_f1 >= 0.9


def test_param_groups_no_decay_on_bias_and_layernorm(synth):
    model, _ = tiny(synth)
    decay, no_decay = param_groups(model, 0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(("bias" in names[id(p)] or "LayerNorm" in names[id(p)]) for p in no_decay["params"])
    assert all(("bias" not in names[id(p)] and "LayerNorm" not in names[id(p)]) for p in decay["params"])
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0


def test_linear_warmup_then_decay():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = linear_warmup_decay(opt, warmup=4, total=12)
    lrs = []
    for _ in range(12):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lrs[4:] == pytest.approx([1 - i / 8 for i in range(8)])


def test_precision_choice():
    assert resolve_precision("no", "cpu") == "no"
    assert resolve_precision("bf16", "cpu") == "bf16"
    assert resolve_precision("fp16", "cuda") == "fp16"
    assert resolve_precision("auto", "mps") == "no"
    with pytest.raises(ValueError):
        resolve_precision("fp8", "cpu")


def test_auto_precision_on_cpu_follows_the_cpu_flags():
    """bf16 exactly where the CPU computes it natively: the flags avx512_bf16 or amx_bf16."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        pytest.skip("no /proc/cpuinfo to read the CPU flags from")
    flags = {f for line in cpuinfo.read_text().splitlines() if line.startswith("flags")
             for f in line.split(":", 1)[1].split()}
    expected = "bf16" if flags & {"avx512_bf16", "amx_bf16"} else "no"
    assert resolve_precision("auto", "cpu") == expected, f"CPU flags say {expected}"


def test_nan_loss_stops_with_a_message(synth):
    model, tok = tiny(synth)
    with torch.no_grad():
        model.classifier.weight[0, 0] = float("nan")
    with pytest.raises(TrainingDiverged, match="loss is nan"):
        train(model, tok, synth["train"].select(range(64)), None,
              TrainConfig(epochs=1, batch_size=16, log_every=2, **QUIET))


def test_checkpoint_is_safetensors_with_labels(tmp_path, synth):
    model, tok = tiny(synth)
    res = train(model, tok, synth["train"].select(range(96)), synth["valid"].select(range(32)),
                TrainConfig(epochs=1, batch_size=16, **QUIET), out_dir=tmp_path)
    files = {p.name for p in (tmp_path / "best").iterdir()}
    assert "model.safetensors" in files and "nerbook.json" in files
    assert not any(f.endswith((".bin", ".pt", ".pth")) for f in files)
    reloaded, _ = load_model(str(tmp_path / "best"))
    assert reloaded.config.id2label == dict(enumerate(CONLL2003.names))
    meta = json.loads((tmp_path / "best" / "nerbook.json").read_text())
    assert meta["epoch"] == res.best_epoch == 1 and meta["dev_f1"] == res.best_f1
    assert (meta["max_length"], meta["stride"]) == (QUIET["max_length"], QUIET["stride"])


@pytest.mark.parametrize("to_disk", [False, True])
def test_best_epoch_is_kept_and_returned(tmp_path, synth, to_disk):
    """best_f1/best_epoch are the max/argmax of the epochs' dev F1, and the returned model (kept
    in memory, or reloaded from OUT/best) is that epoch's: it scores best_f1 again.

    The learning rate rises (warm-up over the whole run) to 0.05, too high for the last epochs:
    dev F1 peaks at epoch 2 then falls (measured 0.050, 0.183, 0.147, 0.000), so the best
    epoch is neither the first nor the last."""
    model, tok = tiny(synth, seed=1)
    valid = synth["valid"].select(range(48))
    cfg = TrainConfig(epochs=4, batch_size=16, lr=0.05, warmup_ratio=1.0, patience=None,
                      mixed_precision="no", seed=1, **QUIET)
    res = train(model, tok, synth["train"].select(range(192)), valid, cfg,
                out_dir=tmp_path if to_disk else None)
    f1 = [r["dev_f1"] for r in res.history["epochs"]]
    assert len(f1) == 4
    assert 1 < f1.index(max(f1)) + 1 < 4, f"dev F1 {f1}: this run no longer peaks mid-way; pick another seed/lr"
    assert res.best_f1 == max(f1) and res.best_epoch == f1.index(max(f1)) + 1
    assert f1[-1] < res.best_f1
    assert evaluate(res.model, tok, valid, cfg)["overall"]["f1"] == res.best_f1
    if to_disk:
        meta = json.loads((tmp_path / "best" / "nerbook.json").read_text())
        assert (meta["epoch"], meta["dev_f1"]) == (res.best_epoch, res.best_f1)
        reloaded, _ = load_model(str(tmp_path / "best"))
        assert evaluate(reloaded, tok, valid, cfg)["overall"]["f1"] == res.best_f1


def test_resume_reproduces_an_uninterrupted_run(tmp_path, synth, cut_after_first_save):
    """Stop after epoch 1 of a 2-epoch run, resume from OUT/last: bitwise the weights of no stop."""
    data = synth["train"].select(range(64))
    cfg = TrainConfig(epochs=2, batch_size=16, mixed_precision="no", patience=None, **QUIET)
    full = train(*tiny(synth), data, None, cfg, out_dir=tmp_path / "full").model

    cut_after_first_save(lambda: train(*tiny(synth), data, None, cfg, out_dir=tmp_path / "cut"))
    resumed = train(*tiny(synth), data, None, cfg, out_dir=tmp_path / "cut",
                    resume_from=tmp_path / "cut" / "last").model
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name  # same process, same numbers: bitwise


def test_early_stopping_fires(synth):
    model, tok = tiny(synth)
    res = train(model, tok, synth["train"].select(range(32)), synth["valid"].select(range(32)),
                TrainConfig(epochs=5, batch_size=16, lr=1e-12, patience=1, **QUIET))
    assert res.stopped_early and len(res.history["epochs"]) == 2 and res.best_epoch == 1


def test_bf16_autocast_and_accumulation_run_on_cpu(synth):
    from nerbook.align import WindowConfig, encode_windows

    model, tok = tiny(synth)
    data = synth["train"].select(range(64))
    res = train(model, tok, data, None,
                TrainConfig(epochs=1, batch_size=8, grad_accum=2, mixed_precision="bf16", log_every=1, **QUIET))
    steps = res.history["steps"]
    n_windows = len(encode_windows(data, tok, WindowConfig(QUIET["max_length"], QUIET["stride"])))
    assert len(steps) == math.ceil(math.ceil(n_windows / 8) / 2)  # one optimizer step per 2 batches
    assert all(math.isfinite(s["loss"]) for s in steps)


def test_head_only_freezes_encoder(synth):
    model, tok = tiny(synth)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    train(model, tok, synth["train"].select(range(32)), None,
          TrainConfig(epochs=1, batch_size=16, freeze_encoder=True, **QUIET))
    for n, p in model.named_parameters():
        changed = not torch.equal(before[n], p.detach())
        assert changed == n.startswith("classifier"), n


@pytest.mark.parametrize("is_tiny, setting, trained", [
    (False, None, False),  # a pretrained model keeps its word embeddings
    (True, None, True),    # nerbook's tiny models start random: their embeddings must learn
    (False, False, True),  # asked for: trained
    (True, True, False),   # asked for: frozen
])
def test_word_embeddings_kept_unless_tiny(synth, is_tiny, setting, trained):
    model, tok = tiny(synth)
    assert model.config.nerbook_tiny
    if not is_tiny:
        del model.config.nerbook_tiny  # as a model loaded from a pretrained checkpoint
    emb = model.get_input_embeddings().weight
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    res = train(model, tok, synth["train"].select(range(32)), None,
                TrainConfig(epochs=1, batch_size=16, freeze_word_embeddings=setting, **QUIET))
    n_emb, n_all = emb.numel(), sum(p.numel() for p in model.parameters())
    assert res.trainable_parameters == (n_all if trained else n_all - n_emb)
    assert (not torch.equal(before["bert.embeddings.word_embeddings.weight"], emb.detach())) == trained
    assert not torch.equal(before["classifier.weight"], model.classifier.weight.detach())
    assert not torch.equal(before["bert.encoder.layer.0.attention.self.query.weight"],
                           model.bert.encoder.layer[0].attention.self.query.weight.detach())
    assert emb.requires_grad  # handed back as it came


def test_attention_kernel_and_its_dropout_for_the_run_only(synth, tmp_path):
    """``TrainConfig.attention`` switches the kernel and ``attention_dropout`` the dropout on the
    attention weights alone, for the run: packed batches get the eager kernel's additive mask, the
    hidden states keep their dropout, the checkpoint says what trained, and the model comes back
    as it came. Without dropout and in fp32, the kernel changes the speed, not the model: the
    losses of a run with each kernel agree."""
    from nerbook.switches import set_attention, set_dropout

    model, tok = tiny(synth)
    assert model.config._attn_implementation == "sdpa"
    seen = []
    hooks = [model.bert.encoder.layer[0].attention.self.register_forward_pre_hook(
                 lambda m, args: seen.append(("attention", m.training, m.dropout.p, m.config._attn_implementation))),
             model.bert.encoder.layer[0].output.register_forward_pre_hook(
                 lambda m, args: seen.append(("hidden", m.training, m.dropout.p, None))),
             model.register_forward_pre_hook(
                 lambda m, args, kw: seen.append(("mask", m.training, kw["attention_mask"].dtype,
                                                  kw["attention_mask"].dim())), with_kwargs=True)]
    train(model, tok, synth["train"].select(range(32)), None,
          TrainConfig(epochs=1, batch_size=16, attention="eager", attention_dropout=0.0, **QUIET),
          out_dir=tmp_path / "run")
    for h in hooks:
        h.remove()
    during = [s for s in seen if s[1]]
    assert ("attention", True, 0.0, "eager") in during and ("hidden", True, 0.1, None) in during
    assert ("mask", True, torch.float32, 4) in during  # the packed rows' mask, as the eager kernel adds it
    assert {s for s in during if s[0] != "mask"} == {("attention", True, 0.0, "eager"), ("hidden", True, 0.1, None)}
    saved = json.loads((tmp_path / "run" / "best" / "config.json").read_text())
    assert saved["attention_probs_dropout_prob"] == 0.0 and saved["hidden_dropout_prob"] == 0.1
    assert model.config._attn_implementation == "sdpa" and model.config.attention_probs_dropout_prob == 0.1
    assert model.bert.encoder.layer[0].attention.self.dropout.p == 0.1
    losses = {}
    for kernel in ("sdpa", "eager"):
        m, _ = tiny(synth)
        res = train(m, tok, synth["train"].select(range(64)), None,
                    TrainConfig(epochs=1, batch_size=8, log_every=1, dropout=0.0, attention=kernel,
                                mixed_precision="no", **QUIET))
        losses[kernel] = torch.tensor([s["loss"] for s in res.history["steps"]])
    assert len(losses["sdpa"]) >= 8 and torch.allclose(losses["sdpa"], losses["eager"], atol=1e-4)
    with pytest.raises(ValueError, match="choose"):
        set_attention(model, "flash")
    with pytest.raises(ValueError, match="no switch"):
        set_attention(torch.nn.Linear(2, 2), "eager")
    with pytest.raises(ValueError, match="no BERT-style attention dropout"):
        set_dropout(torch.nn.Sequential(torch.nn.Dropout(0.1)), 0.0, attention_only=True)


def test_dropout_setting_during_training_only(synth, tmp_path):
    """``TrainConfig.dropout`` sets every dropout layer for the run; the saved checkpoint says so,
    and the model comes back with its own rates."""
    from nerbook.switches import set_dropout

    model, tok = tiny(synth)
    rates = {n: m.p for n, m in model.named_modules() if isinstance(m, torch.nn.Dropout)}
    assert rates and set(rates.values()) == {0.1}
    seen = []
    hook = model.bert.encoder.layer[0].attention.self.register_forward_pre_hook(
        lambda m, args: seen.append((m.training, m.dropout.p)))
    train(model, tok, synth["train"].select(range(32)), None,
          TrainConfig(epochs=1, batch_size=16, dropout=0.0, **QUIET), out_dir=tmp_path / "run")
    hook.remove()
    assert seen and all(p == 0.0 for training, p in seen if training)
    saved = json.loads((tmp_path / "run" / "best" / "config.json").read_text())
    assert saved["hidden_dropout_prob"] == 0.0 and saved["attention_probs_dropout_prob"] == 0.0
    assert {n: m.p for n, m in model.named_modules() if isinstance(m, torch.nn.Dropout)} == rates
    assert model.config.hidden_dropout_prob == 0.1
    # without dropout a model in training mode is a function of its input: the same output twice
    batch = tok([["Paris", "is", "big"]], is_split_into_words=True, return_tensors="pt")
    model.train()
    assert not torch.equal(model(**batch).logits, model(**batch).logits)
    old = set_dropout(model, 0.0)
    assert torch.equal(model(**batch).logits, model(**batch).logits)
    set_dropout(model, old)
    assert {n: m.p for n, m in model.named_modules() if isinstance(m, torch.nn.Dropout)} == rates
    with pytest.raises(ValueError, match="not in"):
        set_dropout(model, 1.0)


def test_label_smoothing_loss_by_hand(synth):
    """tagging_loss: at 0 the model's own loss; at eps, per labelled token (1 - eps) * (-log p_tag) +
    eps * mean over tags of (-log p), averaged over labelled tokens only (-100 counts for nothing)."""
    from nerbook.tasks import tagging_loss

    model, tok = tiny(synth)
    model.eval()
    enc = tok([["Ada", "Lovelace", "wrote", "notes"], ["In", "London"]], is_split_into_words=True,
              padding=True, return_tensors="pt")
    labels = torch.full_like(enc["input_ids"], -100)
    labels[0, 1:5] = torch.tensor([1, 2, 0, 0])
    labels[1, 1:3] = torch.tensor([0, 5])
    batch = {**enc, "labels": labels}
    with torch.no_grad():
        own = model(**batch).loss
        assert torch.allclose(tagging_loss(model, batch, 0.0), own, atol=1e-6)
        logp = torch.log_softmax(model(**enc).logits.float(), dim=-1)
        eps, terms = 0.1, []
        for b, t in zip(*torch.nonzero(labels != -100, as_tuple=True)):
            row = logp[b, t]
            terms.append((1 - eps) * -row[labels[b, t]] + eps * -row.mean())
        expected = torch.stack(terms).mean()
        got = tagging_loss(model, batch, eps)
    assert len(terms) == 6 and torch.allclose(got, expected, atol=1e-6) and got > own


def test_label_smoothing_trains_and_refuses_what_it_cannot_do(synth):
    from nerbook.classify import SequenceClassification
    from nerbook.tasks import check_label_smoothing

    model, tok = tiny(synth)
    cfg = TrainConfig(epochs=1, batch_size=16, lr=3e-3, label_smoothing=0.1, patience=None, **QUIET)
    res = train(model, tok, synth["train"].select(range(32)), None, cfg)
    assert math.isfinite(res.history["epochs"][0]["train_loss"])
    with pytest.raises(ValueError, match=r"must be in \[0, 1\), got 1.0"):
        check_label_smoothing(TrainConfig(label_smoothing=1.0), None)
    with pytest.raises(ValueError, match="token tagging \\(NER\\) only, not SequenceClassification"):
        check_label_smoothing(TrainConfig(label_smoothing=0.1), SequenceClassification())
    with pytest.raises(ValueError, match="adversarial training is not supported"):
        train(model, tok, synth["train"].select(range(8)), None, TrainConfig(label_smoothing=0.1, adversarial="fgm"))
