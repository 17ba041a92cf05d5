"""nerbook.align and nerbook.batching: first-subword labels, windows, merging, batches."""

from __future__ import annotations

import pytest
import torch

from nerbook.align import (
    IGNORE_INDEX,
    WindowConfig,
    align_word_labels,
    continuation_labels,
    encode_windows,
    merge_windows,
    naive_encode,
    require_fast_tokenizer,
    window_spans,
    word_pieces,
)
from nerbook.batching import LengthGroupedBatchSampler, padded_tokens, token_collator
from nerbook.data import CONLL2003, LabelSchema, Sentence, sentences_to_dataset


def test_align_word_labels_first_subword_only():
    # [CLS] New York ##er [SEP]  -> words 0, 1 (two pieces)
    assert align_word_labels([None, 0, 1, 1, None], [5, 6]) == [IGNORE_INDEX, 5, 6, IGNORE_INDEX, IGNORE_INDEX]


def test_encode_windows_labels_match_word_ids(tiny_tokenizer, synth):
    ds = synth["train"].select(range(50))
    win = encode_windows(ds, tiny_tokenizer, WindowConfig(128, 32))
    for row in win:
        sent = row["sentence"]
        enc = tiny_tokenizer(ds[sent]["tokens"], is_split_into_words=True)
        assert row["input_ids"] == enc["input_ids"]
        assert row["labels"] == align_word_labels(enc.word_ids(), ds[sent]["ner_tags"])
        assert row["labels"][0] == IGNORE_INDEX and row["labels"][-1] == IGNORE_INDEX


def test_continuation_labels_map_every_type_to_its_inside_tag():
    names = CONLL2003.names
    cont = {names[k]: names[v] for k, v in continuation_labels(names).items()}
    assert cont == {"O": "O", "B-PER": "I-PER", "I-PER": "I-PER", "B-ORG": "I-ORG", "I-ORG": "I-ORG",
                    "B-LOC": "I-LOC", "I-LOC": "I-LOC", "B-MISC": "I-MISC", "I-MISC": "I-MISC"}
    bioes = LabelSchema.from_types(["PER"], scheme="bioes").names
    assert {bioes[k]: bioes[v] for k, v in continuation_labels(bioes).items()} == {
        "O": "O", "B-PER": "I-PER", "I-PER": "I-PER", "E-PER": "I-PER", "S-PER": "I-PER"}


def test_label_all_subwords_labels_later_pieces_and_keeps_the_first(tiny_tokenizer, synth):
    ds = synth["train"].select(range(50))
    later = continuation_labels(CONLL2003.names)
    first = encode_windows(ds, tiny_tokenizer, WindowConfig(64, 16))
    every = encode_windows(ds, tiny_tokenizer, WindowConfig(64, 16), later)
    assert first["input_ids"] == every["input_ids"] and first["word_index"] == every["word_index"]
    n_later = 0
    for a, b in zip(first, every):
        tags = ds[a["sentence"]]["ner_tags"]
        word = None
        for p, (la, lb, w) in enumerate(zip(a["labels"], b["labels"], a["word_index"])):
            if w >= 0:  # a first subword: the same label either way
                word = w
                assert la == lb == tags[w]
            elif la == IGNORE_INDEX and lb != IGNORE_INDEX:  # a later subword of `word`
                assert lb == later[tags[word]]
                n_later += 1
            else:  # special tokens stay ignored
                assert la == lb == IGNORE_INDEX and p in (0, len(a["labels"]) - 1)
    assert n_later > 50  # the synthetic words do get split


def test_naive_encoding_shifts_labels_and_labels_padding(tiny_tokenizer, synth):
    ex = synth["train"][1]
    naive = naive_encode(ex["tokens"], ex["ner_tags"], tiny_tokenizer, 128)
    assert len(naive["labels"]) == 128
    good = encode_windows(synth["train"].select([1]), tiny_tokenizer)[0]["labels"]
    assert naive["labels"][0] == ex["ner_tags"][0]  # the [CLS] position got the first word's label
    assert naive["labels"][len(good):] == [0] * (128 - len(good))  # padding labelled O
    assert naive["labels"][: len(good)] != good


def test_window_spans_cover_and_overlap():
    lengths = [1, 2, 3, 1, 1, 2, 4, 1, 1, 1] * 10
    spans = window_spans(lengths, budget=12, stride=4)
    covered = set()
    for s, e in spans:
        assert sum(lengths[s:e]) <= 12
        covered.update(range(s, e))
    assert covered == set(range(len(lengths)))
    assert all(spans[i + 1][0] < spans[i][1] for i in range(len(spans) - 1))  # overlapping
    assert window_spans([50, 1], budget=10, stride=2) == [(0, 1), (1, 2)]  # over-long word alone


def test_long_sentence_every_word_once(tiny_tokenizer):
    words = [f"Word{i}" for i in range(500)]
    ds = sentences_to_dataset([Sentence(words, ["O"] * 500, 0, 0)], CONLL2003)
    win = encode_windows(ds, tiny_tokenizer, WindowConfig(64, 16))
    assert len(win) > 5
    assert all(len(ids) <= 64 for ids in win["input_ids"])
    merged = merge_windows(win["sentence"], win["word_index"], [500],
                           [[(k, p) for p in range(len(ids))] for k, ids in enumerate(win["input_ids"])])
    assert len(merged[0]) == 500
    # each word's value comes from a window in which the word really is
    for w, (k, p) in enumerate(merged[0]):
        assert win[k]["word_index"][p] == w


def test_merge_takes_each_word_from_the_window_where_it_has_most_context():
    """Two windows of a 6-word sentence overlap on words 2 and 3 and disagree there. Positions
    hold word indices (-1: [CLS], [SEP], a later subword); a word's context is counted in
    positions from the window's first and last word."""
    win_a = [-1, 0, 1, -1, 2, 3, -1]  # word 1 has two subwords; word 2: 3 left, 1 right; word 3: 4, 0
    win_b = [-1, 2, 3, 4, 5, -1]      # word 2: 0 left, 3 right; word 3: 1 left, 2 right
    values = [[f"a{w}" if w >= 0 else None for w in win_a], [f"b{w}" if w >= 0 else None for w in win_b]]
    expected = ["a0", "a1", "a2", "b3", "b4", "b5"]  # word 2 from a (margin 1 vs 0), word 3 from b
    assert merge_windows([0, 0], [win_a, win_b], [6], values) == [expected]
    assert merge_windows([0, 0], [win_b, win_a], [6], values[::-1]) == [expected]  # not by order
    # a second sentence between the two: values go to the sentence each window belongs to
    other = [-1, 0, 1, -1]
    assert merge_windows([0, 1, 0], [win_a, other, win_b], [6, 2], [values[0], ["x", "c0", "c1", "x"], values[1]]) == [
        expected, ["c0", "c1"]]


def test_doc_context_comes_from_the_same_document_only(tiny_tokenizer, synth):
    """Each window is [CLS] left + sentence + right [SEP], where left ends the sentences before it
    in its document and right starts those after it: nothing from a neighbouring document."""
    words = [s for s in synth["train"]["tokens"][:40] if len(s) <= 12][:7]
    doc_ids = [5, 5, 5, 2, 2, 2, 9]
    ds = sentences_to_dataset([Sentence(w, None, d, 0) for w, d in zip(words, doc_ids)], CONLL2003)
    max_length = 64
    win = encode_windows(ds, tiny_tokenizer, WindowConfig(max_length, 16, doc_context=True))
    assert win["sentence"] == list(range(7))  # one window per sentence: they all fit
    own = [tiny_tokenizer(w, is_split_into_words=True, add_special_tokens=False)["input_ids"] for w in words]
    docs = {d: [i for i in range(7) if doc_ids[i] == d] for d in doc_ids}  # sentences of each document
    with_context = 0
    for i, row in enumerate(win):
        ids = row["input_ids"]
        assert ids[0] == tiny_tokenizer.cls_token_id and ids[-1] == tiny_tokenizer.sep_token_id
        assert len(ids) <= max_length
        before = [t for j in docs[doc_ids[i]] if j < i for t in own[j]]
        after = [t for j in docs[doc_ids[i]] if j > i for t in own[j]]
        body, n = ids[1:-1], len(own[i])
        # where the sentence sits in the window: what precedes it must end `before`, what
        # follows it must start `after`
        fits = [k for k in range(len(body) - n + 1) if body[k:k + n] == own[i]
                and body[:k] == before[len(before) - k:] and body[k + n:] == after[:len(body) - k - n]]
        assert fits, f"sentence {i} (doc {doc_ids[i]}): context that is not from its document"
        k = fits[0]
        assert (k > 0) == bool(before) and (k + n < len(body)) == bool(after), i  # context where there is some
        with_context += k > 0 or k + n < len(body)
        first = [p for p, w in enumerate(row["word_index"]) if w >= 0]
        assert [row["word_index"][p] for p in first] == list(range(len(words[i])))  # labels: the sentence only
        assert first[0] == 1 + k
    assert with_context == 6  # all but the sentence of document 9, alone in it


def test_merge_raises_when_a_word_is_missing():
    with pytest.raises(RuntimeError, match="got no prediction"):
        merge_windows([0], [[-1, 0, -1]], [2], [[None, 1, None]])


def test_doc_context_labels_only_target(tiny_tokenizer, synth):
    ds = synth["train"].select(range(30))
    plain = encode_windows(ds, tiny_tokenizer, WindowConfig(128, 32))
    ctx = encode_windows(ds, tiny_tokenizer, WindowConfig(128, 32, doc_context=True))
    assert len(plain) == len(ctx)
    longer = 0
    for a, b in zip(plain, ctx):
        assert [x for x in a["labels"] if x != IGNORE_INDEX] == [x for x in b["labels"] if x != IGNORE_INDEX]
        assert len(b["input_ids"]) <= 128
        longer += len(b["input_ids"]) > len(a["input_ids"])
    assert longer > 20


def test_word_dropped_by_tokenizer_gets_unk(tiny_tokenizer):
    pieces = word_pieces(tiny_tokenizer, [["a", "\u200b", "b"]])
    assert pieces[0][1] == [tiny_tokenizer.unk_token_id]


def test_slow_tokenizer_is_refused():
    class Slow:
        is_fast = False

    with pytest.raises(TypeError, match="fast tokenizer"):
        require_fast_tokenizer(Slow())


def test_length_grouped_sampler():
    lengths = [(i * 37) % 100 + 1 for i in range(1000)]
    s = LengthGroupedBatchSampler(lengths, 16, seed=3)
    batches = list(s)
    assert sorted(i for b in batches for i in b) == list(range(1000))
    assert batches == list(LengthGroupedBatchSampler(lengths, 16, seed=3))
    s.set_epoch(1)
    assert list(s) != batches
    random_order = LengthGroupedBatchSampler(lengths, 16, seed=3, mega=1)
    assert padded_tokens(lengths, batches) < 0.7 * padded_tokens(lengths, list(random_order))
    assert len(s) == len(batches) == 63


def test_collator_pads_labels_with_ignore(tiny_tokenizer, synth):
    win = encode_windows(synth["train"].select(range(8)), tiny_tokenizer)
    batch = token_collator(tiny_tokenizer)(win.select_columns(["input_ids", "attention_mask", "labels"]).to_list())
    lengths = [len(x) for x in win["input_ids"]]
    assert batch["input_ids"].shape == (8, max(lengths))
    short = lengths.index(min(lengths))
    assert torch.all(batch["labels"][short, min(lengths):] == IGNORE_INDEX)
    assert torch.all(batch["attention_mask"][short, min(lengths):] == 0)
