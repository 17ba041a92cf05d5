"""nerbook.predict: one tag per word, however long; spans with offsets into the original text."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from nerbook.align import window_spans
from nerbook.metrics import spans
from nerbook.predict import Tagger, split_words


@pytest.fixture(scope="module")
def tagger(tiny_ckpt):
    return Tagger.from_checkpoint(str(tiny_ckpt), device="cpu")


def test_every_word_of_a_500_word_sentence_is_tagged(tagger):
    words = ["Maria", "Rossi", "visited", "Berlin", "and"] * 100
    tags = tagger.tag([words, ["Short", "one"], []])
    assert [len(t) for t in tags] == [500, 2, 0]
    assert set(tags[0]) <= set(tagger.schema.names)


def test_window_size_changes_nothing_when_every_sentence_fits(tiny_ckpt, synth):
    """With a window large enough for every sentence, its size (and the batching) change nothing."""
    sents = synth["valid"]["tokens"][:40]
    big = Tagger.from_checkpoint(str(tiny_ckpt), device="cpu", max_length=512, stride=32)
    longest = max(len(big.tokenizer(s, is_split_into_words=True)["input_ids"]) for s in sents)
    assert 64 < longest < 512  # the checkpoint's own window (64) would cut some of them
    fit = Tagger.from_checkpoint(str(tiny_ckpt), device="cpu", max_length=longest, stride=16, batch_size=7)
    (a, pa), (b, pb) = big.tag_with_scores(sents), fit.tag_with_scores(sents)
    assert a == b
    assert [len(x) for x in a] == [len(s) for s in sents]
    assert [p for s in pa for p in s] == pytest.approx([p for s in pb for p in s], abs=1e-5)


def test_small_windows_take_each_word_from_its_most_central_window(tiny_ckpt, synth):
    """Windows of 24 subwords cut most sentences. They do change predictions (a word sees less
    context: measured 94% of the tags of 40 dev sentences agree with one whole-sentence window),
    but exactly as specified: each word's tag is the model's argmax at its first subword in the
    window where it sits farthest (in subwords) from the window's first and last word; the
    earlier window on a tie. Computed here one window at a time, without the tagger."""
    max_length, stride = 24, 8
    small = Tagger.from_checkpoint(str(tiny_ckpt), device="cpu", max_length=max_length, stride=stride)
    tok, model = small.tokenizer, small.model
    sents = synth["valid"]["tokens"][:40]
    expected, n_windows = [], 0
    for words in sents:
        word_ids = tok(words, is_split_into_words=True, add_special_tokens=False).word_ids()
        lengths = [word_ids.count(w) for w in range(len(words))]
        assert max(lengths) <= max_length - 2  # no word is cut
        best = [None] * len(words)  # (margin, tag) per word
        for s, e in window_spans(lengths, max_length - 2, stride):  # budget: max_length - [CLS], [SEP]
            n_windows += 1
            enc = tok(words[s:e], is_split_into_words=True, return_tensors="pt")
            assert enc["input_ids"].shape[1] <= max_length
            with torch.no_grad():
                ids = model(**enc).logits[0].argmax(-1).tolist()
            wids = enc.word_ids()
            first = [wids.index(k) for k in range(e - s)]  # position of each word's first subword
            for k in range(e - s):
                margin = min(first[k] - first[0], first[-1] - first[k])
                if best[s + k] is None or margin > best[s + k][0]:
                    best[s + k] = (margin, small.schema.names[ids[first[k]]])
        expected.append([tag for _, tag in best])
    assert n_windows > 2 * len(sents)  # the windows really cut the sentences
    assert small.tag(sents) == expected


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


def test_predict_text_offsets_index_the_original(tagger, synth):
    """Entities of raw text are the tagger's word-level entities, at offsets computed here."""
    sents = [s for s in synth["valid"]["tokens"][:40] if [w for w, _, _ in split_words(" ".join(s))] == s]
    assert len(sents) >= 20
    texts = [" ".join(s) for s in sents]
    out = tagger.predict_text(texts)
    tags = tagger.tag(sents)
    n_entities = 0
    for words, ents, sent_tags in zip(sents, out, tags):
        starts = [sum(len(w) + 1 for w in words[:i]) for i in range(len(words))]  # one space between words
        expected = [(typ, starts[s], starts[e] + len(words[e])) for typ, s, e in spans(sent_tags)]
        assert [(e.type, e.start, e.end) for e in ents] == expected
        assert [e.text for e in ents] == [" ".join(words[s:e + 1]) for _, s, e in spans(sent_tags)]
        assert all(0.0 < e.score <= 1.0 for e in ents)
        n_entities += len(ents)
    assert n_entities >= len(sents)  # a trained model finds entities (these sentences hold 2-3 each)
    assert tagger.predict_text(["", "   ", texts[0]]) == [[], [], out[0]]
    single = tagger.predict_text(texts[0])
    assert [e.as_dict() for e in single] == [e.as_dict() for e in out[0]]


LEXICON = {"Angela": "B-PER", "Merkel": "I-PER", "O": "B-PER", "東": "B-LOC", "New": "B-LOC",
           "York": "I-LOC", "Siemens": "B-ORG"}


class LexiconModel(torch.nn.Module):
    """A model that tags each subword by a fixed table (logit 8 for its tag, 0 for the others):
    its entities are known in advance, whatever the context."""

    def __init__(self, tokenizer, names):
        super().__init__()
        from transformers import PretrainedConfig

        self.config = PretrainedConfig(id2label=dict(enumerate(names)),
                                       label2id={n: i for i, n in enumerate(names)})
        table = torch.zeros(len(tokenizer), len(names))
        table[:, names.index("O")] = 8.0
        for word, tag in LEXICON.items():
            i = tokenizer.convert_tokens_to_ids(word)
            table[i] = 0.0
            table[i, names.index(tag)] = 8.0
        self.table = torch.nn.Parameter(table, requires_grad=False)

    def forward(self, input_ids, attention_mask=None, **kwargs):
        return SimpleNamespace(logits=self.table[input_ids])


@pytest.fixture(scope="module")
def lexicon_tagger():
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    from nerbook.data import CONLL2003

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *LEXICON, "京", "'", "-", "Neil", "Smith"]
    tok = Tokenizer(models.WordPiece({w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                        cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    return Tagger(LexiconModel(tokenizer, list(CONLL2003.names)), tokenizer, device="cpu")


def test_predict_text_finds_known_entities_at_known_offsets(lexicon_tagger):
    text = "  Angela   Merkel met O'Neil-Smith in 東京, then Merkel flew to New York!\n"
    second = "Nothing here 😀 שלום.\tSiemens"  # offsets in code points: the emoji is one
    out = lexicon_tagger.predict_text([text, "", second])
    p = 1 / (1 + 8 * torch.exp(torch.tensor(-8.0)).item())  # softmax of logit 8 against eight 0s
    expected = [
        ("PER", 2, 17, "Angela   Merkel"),        # two words, three spaces between them
        ("PER", 22, 34, "O'Neil-Smith"),          # one word of five subwords: ends after its last
        ("LOC", 38, 40, "東京"),                   # offsets count characters, not bytes
        ("PER", 47, 53, "Merkel"),                # I-PER after O starts an entity (conlleval)
        ("LOC", 62, 70, "New York"),
    ]
    for _, start, end, words in expected:  # the offsets above, checked against the text itself
        assert text.index(words, start) == start and end == start + len(words)
    assert [(e.type, e.start, e.end, e.text) for e in out[0]] == expected
    assert [e.score for e in out[0]] == pytest.approx([p] * len(expected))
    assert out[1] == []
    assert [(e.type, e.start, e.end, e.text) for e in out[2]] == [("ORG", 21, 28, "Siemens")]
    assert second.index("Siemens") == 21


def test_bf16_tags_like_fp32(tiny_ckpt, synth):
    """precision="bf16" really computes in bf16 (every probability moves a little: measured up to
    0.002) and tags like fp32 (measured 1943 of 1944 dev words on this checkpoint)."""
    sents = synth["valid"]["tokens"]
    fp32 = Tagger.from_checkpoint(str(tiny_ckpt), device="cpu")
    bf16 = Tagger.from_checkpoint(str(tiny_ckpt), device="cpu", precision="bf16")
    (t32, p32), (t16, p16) = fp32.tag_with_scores(sents), bf16.tag_with_scores(sents)
    assert [len(t) for t in t16] == [len(p) for p in p16] == [len(s) for s in sents]
    assert {t for s in t16 for t in s} <= set(bf16.schema.names)
    assert sum(t != "O" for s in t16 for t in s) > len(sents)  # not a degenerate all-O tagging
    words = sum(len(s) for s in sents)
    agree = sum(a == b for x, y in zip(t32, t16) for a, b in zip(x, y))
    assert agree >= 0.99 * words
    diffs = [abs(a - b) for x, y in zip(p32, p16) for a, b in zip(x, y)]
    assert max(diffs) > 0  # not fp32 in disguise
    assert max(diffs) < 0.05
