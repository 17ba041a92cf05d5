"""nerbook.predict: one tag per word, however long; spans with offsets into the original text."""

from __future__ import annotations

import pytest
import torch

from nerbook.predict import Tagger, split_words


@pytest.fixture(scope="module")
def tagger(tiny_ckpt):
    return Tagger.from_checkpoint(str(tiny_ckpt), device="cpu")


def test_every_word_of_a_500_word_sentence_is_tagged(tagger):
    words = ["Maria", "Rossi", "visited", "Berlin", "and"] * 100
    tags = tagger.tag([words, ["Short", "one"], []])
    assert [len(t) for t in tags] == [500, 2, 0]
    assert set(tags[0]) <= set(tagger.schema.names)


def test_window_merge_matches_a_single_window(tiny_ckpt, synth):
    """With a window large enough for every sentence, windows change nothing."""
    big = Tagger.from_checkpoint(str(tiny_ckpt), device="cpu", max_length=512, stride=32)
    small = Tagger.from_checkpoint(str(tiny_ckpt), device="cpu", max_length=24, stride=8)
    sents = synth["valid"]["tokens"][:40]
    a, b = big.tag(sents), small.tag(sents)
    assert [len(x) for x in a] == [len(x) for x in b] == [len(s) for s in sents]
    same = sum(x == y for s, t in zip(a, b) for x, y in zip(s, t)) / sum(len(s) for s in a)
    assert same > 0.8  # windows of 24 subwords lose some context, not words


def test_tags_are_argmax_of_first_subword(tagger, synth):
    words = synth["valid"]["tokens"][3]
    enc = tagger.tokenizer(words, is_split_into_words=True, return_tensors="pt")
    with torch.no_grad():
        ids = tagger.model(**enc).logits[0].argmax(-1).tolist()
    first = {}
    for pos, w in enumerate(enc.word_ids()):
        if w is not None and w not in first:
            first[w] = ids[pos]
    assert tagger.tag([words])[0] == [tagger.schema.names[first[w]] for w in range(len(words))]


def test_split_words_offsets_cover_scripts():
    text = "Angela Merkel met 習近平 in 東京 😀 and שלום עליכם, O'Neil-Smith!"
    words = split_words(text)
    assert all(text[s:e] == w for w, s, e in words)
    assert ("東京", text.index("東京"), text.index("東京") + 2) in words
    assert ("😀", text.index("😀"), text.index("😀") + 1) in words
    assert "O'Neil-Smith" in [w for w, _, _ in words]
    assert "".join(w for w, _, _ in words) == "".join(text.split())


def test_predict_text_offsets_index_the_original(tagger):
    texts = ["Angela Merkel visited 東京 😀 with שלום Google in New York.", "", "   ", "IBM"]
    out = tagger.predict_text(texts)
    assert len(out) == 4 and out[1] == [] and out[2] == []
    for text, ents in zip(texts, out):
        for e in ents:
            assert text[e.start:e.end] == e.text
            assert 0.0 < e.score <= 1.0
    single = tagger.predict_text(texts[0])
    assert [e.as_dict() for e in single] == [e.as_dict() for e in out[0]]
