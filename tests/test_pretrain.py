"""Masked and causal language modelling by hand (nerbook.pretrain), checked against transformers."""

from __future__ import annotations

import pytest
import torch

from nerbook.align import IGNORE_INDEX
from nerbook.pretrain import (
    CausalCollator,
    MLMCollator,
    PretrainConfig,
    causal_lm_labels,
    causal_lm_loss,
    encode_corpus,
    fill_mask,
    generate,
    mask_tokens,
    pad_batch,
    pretrain,
    shift_for_causal_lm,
    tiny_gpt,
    tiny_mlm,
    token_classifier_from,
)

SPECIALS = (0, 1, 2, 3, 4)  # [PAD] [UNK] [CLS] [SEP] [MASK], as train_wordpiece numbers them
MASK_ID, VOCAB = 4, 1000
TINY = dict(hidden=32, layers=1, heads=2, intermediate=64, max_position=64)


def _batch(n: int = 400, width: int = 120, seed: int = 0) -> torch.Tensor:
    """[CLS] w1 .. wk [SEP] [PAD] ...: ordinary ids in [5, VOCAB), varying lengths."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (n, width), generator=g)
    lengths = torch.randint(10, width, (n,), generator=g)
    for i, k in enumerate(lengths.tolist()):
        ids[i, 0], ids[i, k - 1], ids[i, k:] = 2, 3, 0
    return ids


def _rates(original: torch.Tensor, inputs: torch.Tensor, labels: torch.Tensor, mask_id: int) -> dict:
    ordinary = ~torch.isin(original, torch.tensor(SPECIALS))
    chosen = labels != IGNORE_INDEX
    n = chosen.sum().item()
    return {
        "chosen": n / ordinary.sum().item(),
        "mask": (inputs[chosen] == mask_id).sum().item() / n,
        "random": ((inputs[chosen] != mask_id) & (inputs[chosen] != original[chosen])).sum().item() / n,
        "kept": (inputs[chosen] == original[chosen]).sum().item() / n,
    }


def test_masking_rule_statistics_and_labels() -> None:
    ids = _batch()
    inputs, labels = mask_tokens(ids, mask_token_id=MASK_ID, vocab_size=VOCAB, special_ids=SPECIALS,
                                 generator=torch.Generator().manual_seed(0))
    r = _rates(ids, inputs, labels, MASK_ID)
    assert r["chosen"] == pytest.approx(0.15, abs=0.005)
    assert r["mask"] == pytest.approx(0.8, abs=0.015)
    assert r["random"] == pytest.approx(0.1 * (1 - 1 / VOCAB), abs=0.01)
    assert r["kept"] == pytest.approx(0.1, abs=0.01)
    chosen = labels != IGNORE_INDEX
    assert torch.equal(labels[chosen], ids[chosen])          # the label is the original token
    assert torch.equal(inputs[~chosen], ids[~chosen])        # unchosen positions are untouched
    assert (labels[~chosen] == IGNORE_INDEX).all()
    assert torch.equal(ids, _batch())                        # the input tensor is not modified


def test_mask_tokens_draws_in_the_documented_order() -> None:
    """The chapter writes the rule by hand (choice, uniform, random ids) and expects equal results."""
    ids = _batch(60)

    def by_hand(x, g):
        chosen = (torch.rand(x.shape, generator=g) < 0.15) & ~torch.isin(x, torch.tensor(SPECIALS))
        labels = torch.where(chosen, x, -100)
        u = torch.rand(x.shape, generator=g)
        random_ids = torch.randint(VOCAB, x.shape, generator=g)
        inputs = x.clone()
        inputs[chosen & (u < 0.8)] = MASK_ID
        to_random = chosen & (u >= 0.8) & (u < 0.9)
        inputs[to_random] = random_ids[to_random]
        return inputs, labels

    ours = mask_tokens(ids, mask_token_id=MASK_ID, vocab_size=VOCAB, special_ids=SPECIALS,
                       generator=torch.Generator().manual_seed(5))
    mine = by_hand(ids, torch.Generator().manual_seed(5))
    assert torch.equal(ours[0], mine[0]) and torch.equal(ours[1], mine[1])


def test_special_tokens_are_never_masked() -> None:
    ids = _batch(50)
    special = torch.isin(ids, torch.tensor(SPECIALS))
    inputs, labels = mask_tokens(ids, mask_token_id=MASK_ID, vocab_size=VOCAB, special_ids=SPECIALS,
                                 mlm_probability=1.0, generator=torch.Generator().manual_seed(1))
    assert (labels[special] == IGNORE_INDEX).all() and torch.equal(inputs[special], ids[special])
    assert (labels[~special] != IGNORE_INDEX).all()          # with p = 1 every other token is chosen


def test_same_statistics_as_transformers_collator(tiny_tokenizer, synth) -> None:
    from transformers import DataCollatorForLanguageModeling

    corpus = encode_corpus(tiny_tokenizer, synth["train"]["tokens"])
    ids, _ = pad_batch(corpus, tiny_tokenizer.pad_token_id)
    ours = MLMCollator(tiny_tokenizer, seed=0)(corpus)
    hf = DataCollatorForLanguageModeling(tiny_tokenizer, mlm_probability=0.15, seed=0)(corpus)
    assert hf["input_ids"].shape == ours["input_ids"].shape == ids.shape  # same padding
    mask_id = tiny_tokenizer.mask_token_id
    assert set(SPECIALS) == set(tiny_tokenizer.all_special_ids)
    a = _rates(ids, ours["input_ids"], ours["labels"], mask_id)
    b = _rates(ids, hf["input_ids"], hf["labels"], mask_id)
    for key, tol in (("chosen", 0.01), ("mask", 0.03), ("random", 0.03), ("kept", 0.03)):
        assert a[key] == pytest.approx(b[key], abs=tol), key
    for batch in (ours, hf):
        special = torch.isin(ids, torch.tensor(tiny_tokenizer.all_special_ids))
        assert (batch["labels"][special] == IGNORE_INDEX).all()


def test_causal_labels_and_shift() -> None:
    ids, attention = pad_batch([[2, 7, 8, 9, 3], [2, 5, 3]], pad_id=0)
    labels = causal_lm_labels(ids, attention)
    assert labels.tolist() == [[2, 7, 8, 9, 3], [2, 5, 3, -100, -100]]
    logits = torch.zeros(2, 5, 11)
    z, y = shift_for_causal_lm(logits, labels)
    assert z.shape == (2, 4, 11) and y.tolist() == [[7, 8, 9, 3], [5, 3, -100, -100]]
    # logits that put all mass on the *next* token have (almost) zero loss; unshifted ones do not
    perfect = torch.full((2, 5, 11), -30.0)
    for b in range(2):
        for t in range(4):
            if labels[b, t + 1] != IGNORE_INDEX:
                perfect[b, t, labels[b, t + 1]] = 30.0
    assert causal_lm_loss(perfect, labels).item() < 1e-6
    assert causal_lm_loss(perfect[:, list(range(1, 5)) + [0]], labels).item() > 10


def test_causal_loss_equals_gpt2_loss(tiny_tokenizer, synth) -> None:
    corpus = encode_corpus(tiny_tokenizer, synth["train"]["tokens"][:8])
    model = tiny_gpt(tiny_tokenizer, **TINY).eval()
    batch = CausalCollator(tiny_tokenizer)(corpus)
    assert (batch["labels"][batch["attention_mask"] == 0] == IGNORE_INDEX).all()
    out = model(**batch)
    assert torch.allclose(out.loss, causal_lm_loss(out.logits, batch["labels"]), atol=1e-5)


def test_a_few_mlm_steps_lower_the_loss(tiny_tokenizer, synth) -> None:
    corpus = encode_corpus(tiny_tokenizer, synth["train"]["tokens"])
    model = tiny_mlm(tiny_tokenizer, **TINY)
    fixed = MLMCollator(tiny_tokenizer, seed=123)(corpus[:64])
    with torch.no_grad():
        before = model.eval()(**fixed).loss.item()
    result = pretrain(model, corpus, MLMCollator(tiny_tokenizer),
                      PretrainConfig(steps=40, batch_size=16, lr=5e-3, log_every=10))
    with torch.no_grad():
        after = model(**fixed).loss.item()
    assert after < before - 0.5
    assert result.steps == [10, 20, 30, 40] and result.losses[-1] < result.losses[0]


def test_seeded_runs_are_identical(tiny_tokenizer, synth) -> None:
    corpus = encode_corpus(tiny_tokenizer, synth["train"]["tokens"][:200])
    b1, b2 = MLMCollator(tiny_tokenizer, seed=7)(corpus[:32]), MLMCollator(tiny_tokenizer, seed=7)(corpus[:32])
    assert all(torch.equal(b1[k], b2[k]) for k in b1)
    b3 = MLMCollator(tiny_tokenizer, seed=8)(corpus[:32])
    assert not torch.equal(b1["labels"], b3["labels"])
    runs = []
    for _ in range(2):
        model = tiny_mlm(tiny_tokenizer, seed=3, **TINY)
        runs.append(pretrain(model, corpus, MLMCollator(tiny_tokenizer, seed=3),
                             PretrainConfig(steps=6, batch_size=8, log_every=2, seed=3)).losses)
    assert runs[0] == runs[1]


def test_generate_and_fill_mask(tiny_tokenizer) -> None:
    gpt = tiny_gpt(tiny_tokenizer, **TINY)
    text = generate(gpt, tiny_tokenizer, "Police in", max_new_tokens=5)
    assert text.startswith("Police in")
    assert generate(gpt, tiny_tokenizer, "Police in", max_new_tokens=5, temperature=1.0, top_k=5, seed=1) == \
        generate(gpt, tiny_tokenizer, "Police in", max_new_tokens=5, temperature=1.0, top_k=5, seed=1)
    fills = fill_mask(tiny_mlm(tiny_tokenizer, **TINY), tiny_tokenizer, "Police in [MASK] said [MASK] .", k=3)
    assert len(fills) == 2 and all(len(f) == 3 for f in fills)
    assert all(p1 >= p2 for f in fills for (_, p1), (_, p2) in zip(f, f[1:]))


def test_token_classifier_keeps_the_encoder(tiny_tokenizer, tmp_path) -> None:
    from nerbook.data import CONLL2003

    mlm = tiny_mlm(tiny_tokenizer, **TINY)
    clf, tok = token_classifier_from(mlm, tiny_tokenizer, CONLL2003, tmp_path / "enc")
    assert clf.config.num_labels == len(CONLL2003) and len(tok) == len(tiny_tokenizer)
    enc_mlm, enc_clf = mlm.bert.state_dict(), clf.bert.state_dict()
    assert set(enc_clf) <= set(enc_mlm)
    assert all(torch.equal(enc_clf[k], enc_mlm[k]) for k in enc_clf)
    assert clf.classifier.weight.shape == (len(CONLL2003), TINY["hidden"])
