"""Answers in text (nerbook.instruct): the instruction data, the answer-only loss, the parser and
the scores, and that the shared training loop teaches a tiny causal LM to answer."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
import torch.nn.functional as F

from nerbook.data import CONLL2003, Sentence, sentences_to_dataset
from nerbook.instruct import (
    CausalGeneration,
    answer,
    answer_scores,
    entities_of,
    instruction_pair,
    load_causal_lm,
    parse_answer,
)
from nerbook.model import train_wordpiece
from nerbook.pretrain import tiny_gpt
from nerbook.train import TrainConfig, train

SENTENCES = [
    Sentence("Ann Lee flew to Rome".split(), ["B-PER", "I-PER", "O", "O", "B-LOC"], 0, 0),
    Sentence("Acme hired Bo".split(), ["B-ORG", "O", "B-PER"], 0, 0),
    Sentence("It rained all day".split(), ["O", "O", "O", "O"], 0, 0),
    Sentence("Rome beat Oslo".split(), ["B-LOC", "O", "B-LOC"], 0, 0),
]


def test_instruction_pair_lists_entities_in_reading_order():
    prompt, reply = instruction_pair(SENTENCES[0].tokens, SENTENCES[0].tags)
    assert prompt == ["entities", "in", ":", "Ann", "Lee", "flew", "to", "Rome", "answer", ":"]
    assert reply == ["PER", "Ann", "Lee", ";", "LOC", "Rome"]
    assert instruction_pair(SENTENCES[2].tokens, SENTENCES[2].tags)[1] == ["none"]


def test_parse_answer_reads_back_what_instruction_pair_writes():
    expected = [{("PER", "Ann Lee"), ("LOC", "Rome")}, {("ORG", "Acme"), ("PER", "Bo")}, set(),
                {("LOC", "Rome"), ("LOC", "Oslo")}]
    for s, want in zip(SENTENCES, expected):
        assert parse_answer(instruction_pair(s.tokens, s.tags)[1]) == Counter(want) == entities_of(s.tokens, s.tags)
    assert parse_answer(["LOC", "Rome", ";", "LOC", "Rome"]) == Counter({("LOC", "Rome"): 2})


def test_parse_answer_ignores_what_names_no_entity():
    assert parse_answer(["PER"]) == Counter()                       # a type with no words
    assert parse_answer(["Rome", ";", "XYZ", "Oslo"]) == Counter()   # no known type first
    assert parse_answer(["PER", "Bo", ";", ";", "blah"]) == Counter({("PER", "Bo"): 1})


def test_answer_scores_by_hand():
    gold = [Counter({("PER", "Ann Lee"): 1, ("LOC", "Rome"): 1}), Counter(), Counter({("LOC", "Rome"): 2})]
    pred = [Counter({("PER", "Ann"): 1, ("LOC", "Rome"): 1}), Counter({("ORG", "X"): 1}),
            Counter({("LOC", "Rome"): 1})]
    s = answer_scores(gold, pred)
    # found: LOC Rome in 1, one LOC Rome in 3 -> 2 of 4 predicted, 2 of 4 gold
    assert s["precision"] == pytest.approx(2 / 4) and s["recall"] == pytest.approx(2 / 4)
    assert s["f1"] == pytest.approx(0.5) and s["exact"] == 0.0
    assert answer_scores(gold, gold)["f1"] == 1.0 and answer_scores(gold, gold)["exact"] == 1.0
    with pytest.raises(ValueError):
        answer_scores(gold, pred[:2])


@pytest.fixture(scope="module")
def tok():
    texts = [sum(instruction_pair(s.tokens, s.tags), []) for s in SENTENCES]
    return train_wordpiece(texts, vocab_size=120)


def test_features_put_the_loss_on_the_answer_only(tok):
    ds = sentences_to_dataset(SENTENCES, CONLL2003)
    rows = CausalGeneration().features(ds, tok, TrainConfig(max_length=64))
    row = rows[0]
    prompt, reply = instruction_pair(SENTENCES[0].tokens, SENTENCES[0].tags)
    n_prompt = len(tok(prompt, is_split_into_words=True, add_special_tokens=False)["input_ids"])
    assert row["input_ids"][0] == tok.cls_token_id and row["input_ids"][-1] == tok.sep_token_id
    assert row["labels"][:1 + n_prompt] == [-100] * (1 + n_prompt)
    assert row["labels"][1 + n_prompt:] == row["input_ids"][1 + n_prompt:]
    assert tok.decode(row["input_ids"][1 + n_prompt:-1]).replace(" ##", "").split() == reply
    # GPT-2's own loss with these labels = the mean NLL of the answer tokens (and [SEP]) given all before
    model = tiny_gpt(tok, hidden=32, layers=1, heads=2, intermediate=64).eval()
    ids = torch.tensor([row["input_ids"]])
    with torch.no_grad():
        theirs = model(input_ids=ids, labels=torch.tensor([row["labels"]])).loss
        logp = F.log_softmax(model(input_ids=ids).logits[0], -1)
    targets = range(1 + n_prompt, len(row["input_ids"]))
    ours = -torch.stack([logp[t - 1, row["input_ids"][t]] for t in targets]).mean()
    assert torch.allclose(theirs, ours, atol=1e-6)


def test_the_shared_loop_teaches_a_tiny_lm_to_answer(tok):
    """Four sentences, learnt by heart through nerbook.train.train: the plumbing works (labels
    reach the loss, the word embeddings train, greedy decoding stops at [SEP])."""
    ds = sentences_to_dataset(SENTENCES, CONLL2003)
    model = tiny_gpt(tok, seed=0, hidden=64, layers=2, heads=2, intermediate=128, dropout=0.0)
    task = CausalGeneration()
    res = train(model, tok, ds, ds, TrainConfig(epochs=60, batch_size=4, lr=1e-2, warmup_ratio=0.0, patience=None,
                                                progress=False, max_length=64, mixed_precision="no"), task=task)
    assert res.history["epochs"][-1]["train_loss"] < 0.1
    assert res.best_f1 == 1.0
    prompt, reply = instruction_pair(SENTENCES[1].tokens, SENTENCES[1].tags)
    assert answer(res.model, tok, prompt) == reply


def test_greedy_answers_are_the_tokens_transformers_generate_picks(tok):
    """nerbook's decoding loop (no key-value cache, the whole sequence each step) picks the same
    tokens as transformers' ``generate`` (cached), and stops where it does, at [SEP]."""
    model = tiny_gpt(tok, seed=3, hidden=64, layers=2, heads=2, intermediate=128, dropout=0.0).eval()
    model.lm_head.weight.data[tok.sep_token_id] *= 5  # (tied to the input row) [SEP] now wins at some steps
    lengths = set()
    for s in SENTENCES:
        prompt = instruction_pair(s.tokens, s.tags)[0]
        ids = torch.tensor([[tok.cls_token_id, *tok(prompt, is_split_into_words=True, add_special_tokens=False)["input_ids"]]])
        with torch.no_grad():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False,
                                 eos_token_id=tok.sep_token_id, pad_token_id=tok.pad_token_id)[0, ids.shape[1]:].tolist()
        out = out[:out.index(tok.sep_token_id)] if tok.sep_token_id in out else out
        lengths.add(len(out))
        assert answer(model, tok, prompt, max_new_tokens=12) == tok.decode(out).split()
    assert min(lengths) < 12  # at least one answer ended at [SEP], before the limit


def test_a_saved_causal_lm_loads_back_with_its_tokenizer(tok, tmp_path):
    model = tiny_gpt(tok, seed=1, hidden=32, layers=1, heads=2, intermediate=64, dropout=0.0).eval()
    model.save_pretrained(tmp_path / "lm", safe_serialization=True)
    tok.save_pretrained(tmp_path)
    loaded, loaded_tok = load_causal_lm(tmp_path / "lm", tmp_path)
    ids = torch.tensor([tok(["Acme", "hired", "Bo"], is_split_into_words=True)["input_ids"]])
    assert loaded_tok(["Acme", "hired", "Bo"], is_split_into_words=True)["input_ids"] == ids[0].tolist()
    assert not loaded.training and loaded.config.nerbook_tiny
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=ids).logits, model(input_ids=ids).logits)
