"""PII redaction (chapter "Safety and ethics"): validators, patterns with exact offsets in any
script, merging, redaction records, the model-plus-patterns pipeline, the seeded corpus and
the Presidio-style scores."""

from __future__ import annotations

import re

import pytest

from nerbook.pii import (
    IBAN_LENGTHS,
    PiiSpan,
    find_patterns,
    iban_valid,
    luhn_valid,
    merge_spans,
    redact_text,
)
from nerbook.pii_eval import evaluate_spans, scores_table, synthetic_pii_corpus
from nerbook.predict import Entity
from nerbook.redact import PII_TYPES, find_pii, redact


def found(text: str) -> list[tuple[str, str]]:
    return [(s.type, s.text) for s in find_patterns(text)]


def one_digit_changes(number: str):
    for i, ch in enumerate(number):
        if ch.isdigit():
            yield number[:i] + str((int(ch) + 1) % 10) + number[i + 1:]


# --- validators -------------------------------------------------------------------------------

@pytest.mark.parametrize("number", ["4111 1111 1111 1111", "4111-1111-1111-1111", "5500000000000004",
                                    "378282246310005", "6011111111111117", "4222222222222"])
def test_luhn_accepts_test_numbers_and_rejects_every_one_digit_change(number):
    assert luhn_valid(number)
    assert not any(luhn_valid(changed) for changed in one_digit_changes(number))


@pytest.mark.parametrize("text", ["411111111111", "41111111111111111111", "4111 1111 1111 111a", ""])
def test_luhn_needs_13_to_19_digits(text):
    assert not luhn_valid(text)


@pytest.mark.parametrize("iban", ["GB82 WEST 1234 5698 7654 32", "DE89 3704 0044 0532 0130 00",
                                  "GB82WEST12345698765432", "fr14 2004 1010 0505 0001 3m02 606",
                                  "NO9386011117947", "CH9300762011623852957"])
def test_iban_accepts_valid_ones(iban):
    assert iban_valid(iban)


@pytest.mark.parametrize("iban", [
    "DE89 3704 0044 0532 0130 01",     # a changed digit
    "GB82 WEST 1234 5698 7654 3",      # too short for GB
    "DE89 3704 0044 0532 0130 000",    # too long for DE
    "XX89 3704 0044 0532 0130 00",     # no such country
    "GB82 WEST 1234 5698 7654 3!",
])
def test_iban_rejects_changed_digits_and_wrong_lengths(iban):
    assert not iban_valid(iban)


def test_every_one_digit_change_of_an_iban_fails():
    assert not any(iban_valid(c) for c in one_digit_changes("DE89370400440532013000"))
    assert {"DE", "FR", "GB", "NL", "CH", "NO"} <= set(IBAN_LENGTHS)


# --- patterns -----------------------------------------------------------------------------------

@pytest.mark.parametrize("text, typ, value", [
    ("Write to jane.doe+news@mail.example.co.uk.", "EMAIL", "jane.doe+news@mail.example.co.uk"),
    ("Call +44 20 7946 0958 today", "PHONE", "+44 20 7946 0958"),
    ("Call (555) 123-4567 x12 today", "PHONE", "(555) 123-4567 x12"),
    ("Ring +49 (0) 30 1234567, thanks", "PHONE", "+49 (0) 30 1234567"),
    ("Tel. 01 23 45 67 89", "PHONE", "01 23 45 67 89"),
    ("phone: 0757360479", "PHONE", "0757360479"),
    ("Card 4111 1111 1111 1111 exp 2025", "CREDIT_CARD", "4111 1111 1111 1111"),
    ("Amex 3782-822463-10005.", "CREDIT_CARD", "3782-822463-10005"),
    ("IBAN GB82 WEST 1234 5698 7654 32 EUR", "IBAN", "GB82 WEST 1234 5698 7654 32"),
    ("IBAN DE89370400440532013000.", "IBAN", "DE89370400440532013000"),
    ("from 192.168.1.10.", "IP_ADDRESS", "192.168.1.10"),
    ("from 10.0.0.1:8080", "IP_ADDRESS", "10.0.0.1"),
    ("from 2001:db8::8a2e:370:7334, ok", "IP_ADDRESS", "2001:db8::8a2e:370:7334"),
    ("mapped ::ffff:192.0.2.128.", "IP_ADDRESS", "::ffff:192.0.2.128"),
])
def test_each_pattern_type_with_exact_offsets(text, typ, value):
    spans = find_patterns(text)
    assert [(s.type, s.text) for s in spans] == [(typ, value)]
    s = spans[0]
    assert (s.start, s.end) == (text.index(value), text.index(value) + len(value))
    assert s.source == "pattern" and 0 < s.score <= 1


@pytest.mark.parametrize("text", [
    "On 2024-03-12 at 10:30 we paid $1,299.00 (1 250 000 EUR).",
    "Released 12.03.2024 9:30, version 2.10.4, in 2019-2023; order 58213, build 4711.",
    "The years 1999 and 2024, room 1234, PIN 0000, ratio 3:2, 10:30:00, 12/05/2023.",
    "A Luhn-failing run 4111 1111 1111 1112 and an IBAN with a bad check DE00370400440532013000.",
    "MAC 00:1A:2B:3C:4D:5E, time 12:34:56, C++ std::vector, 999.999.999.999, 256.1.1.1",
    "Version v1.2.3.4 and ID4111111111111111 and user@localhost",
])
def test_no_false_positives_on_dates_amounts_versions_and_near_misses(text):
    assert found(text) == []


def test_a_card_or_iban_digit_run_is_not_also_a_phone_number():
    text = "IBAN NL91 ABNA 0417 1643 00, card 4111 1111 1111 1111, tel 06 12 34 56 78"
    assert found(text) == [("IBAN", "NL91 ABNA 0417 1643 00"), ("CREDIT_CARD", "4111 1111 1111 1111"),
                           ("PHONE", "06 12 34 56 78")]


def test_a_card_followed_by_a_year_is_cut_to_the_valid_number():
    assert found("4111 1111 1111 1111 2025") == [("CREDIT_CARD", "4111 1111 1111 1111")]


# --- any script ---------------------------------------------------------------------------------

UNICODE_TEXTS = [
    "担当者: 田中 様 / 電話03-1234-5678です / メール tanaka@example.jp / IP 10.0.0.7",
    "👩🏽‍💻 ping dev@example.org or +1 555 123 4567 🇯🇵 from 2001:db8::1 🙂",
    "شكرا! بريدي ali@example.com وهاتفي +966 50 123 4567 — שלום, IBAN DE89 3704 0044 0532 0130 00",
]


@pytest.mark.parametrize("text", UNICODE_TEXTS)
def test_offsets_and_placeholders_are_right_in_cjk_emoji_and_rtl_text(text):
    spans = find_patterns(text)
    assert len(spans) == 3
    for s in spans:
        assert text[s.start:s.end] == s.text and text.index(s.text) == s.start
    out, records = redact_text(text, spans, include_text=True)
    assert [r["text"] for r in records] == [s.text for s in spans]
    for r in records:
        assert out[r["out_start"]:r["out_end"]] == r["placeholder"] == f"<{r['type']}>"
        assert text[r["start"]:r["end"]] == r["text"]
    assert all(s.text not in out for s in spans)
    # what lies between the spans is untouched, emoji sequences and RTL marks included
    kept_in = [text[a:b] for a, b in zip([0] + [s.end for s in spans], [s.start for s in spans] + [len(text)])]
    kept_out = [out[a:b] for a, b in zip([0] + [r["out_end"] for r in records],
                                         [r["out_start"] for r in records] + [len(out)])]
    assert kept_in == kept_out


def test_the_cjk_phone_and_emoji_offsets_exactly():
    text = UNICODE_TEXTS[1]
    assert text.index("dev@") == 10  # 👩🏽‍💻 is 4 code points (woman, skin tone, ZWJ, laptop)
    spans = find_patterns(text)
    assert (spans[0].type, spans[0].start, spans[0].end) == ("EMAIL", 10, 25)
    assert find_patterns(UNICODE_TEXTS[0])[0].text == "03-1234-5678"


# --- merging and redacting ------------------------------------------------------------------------

def test_merge_a_pattern_wins_and_the_model_keeps_what_lies_outside_it():
    a = PiiSpan("PERSON", 0, 10, "x" * 10, "model", 0.9)
    b = PiiSpan("EMAIL", 5, 25, "y" * 20, "pattern")
    c = PiiSpan("LOCATION", 30, 36, "z" * 6, "model", 0.99)
    d = PiiSpan("PHONE", 30, 36, "z" * 6, "pattern", 0.8)
    e = PiiSpan("PERSON", 40, 45, "w" * 5, "model", 0.5)
    f = PiiSpan("ORGANIZATION", 41, 44, "w" * 3, "repeat")
    a_left = PiiSpan("PERSON", 0, 5, "x" * 5, "model", 0.9)      # the part of a before the e-mail
    assert merge_spans([a, b, c, d, e, f]) == [a_left, b, d, e]
    assert merge_spans([f, e, d, c, b, a]) == [a_left, b, d, e]  # input order does not matter
    assert merge_spans([]) == []


def test_a_model_span_that_swallows_an_iban_leaves_the_iban_to_the_pattern():
    text = "Bank Nordea DE89 3704 0044 0532 0130 00 , thanks"
    iban = next(s for s in find_patterns(text) if s.type == "IBAN")
    model = PiiSpan("ORGANIZATION", 5, iban.end, text[5:iban.end], "model", 0.7)
    merged = merge_spans([model, iban])
    assert [(s.type, text[s.start:s.end]) for s in merged] == [("ORGANIZATION", "Nordea"), ("IBAN", iban.text)]
    only_pattern_inside = PiiSpan("PERSON", iban.start, iban.end, iban.text, "model", 0.9)
    assert merge_spans([only_pattern_inside, iban]) == [iban]


def test_redaction_records_hold_offsets_but_not_the_removed_text():
    text = "Mail a@b.io or call +44 20 7946 0958."
    out, records = redact_text(text, find_patterns(text))
    assert out == "Mail <EMAIL> or call <PHONE>."
    assert records == [
        {"type": "EMAIL", "start": 5, "end": 11, "placeholder": "<EMAIL>", "out_start": 5,
         "out_end": 12, "source": "pattern", "score": 1.0},
        {"type": "PHONE", "start": 20, "end": 36, "placeholder": "<PHONE>", "out_start": 21,
         "out_end": 28, "source": "pattern", "score": 0.8},
    ]
    assert "a@b.io" not in str(records)
    assert redact_text(text, [])[0] == text


class FakeTagger:
    """Tags every listed name wherever it first occurs in a text (and misses later ones)."""

    def __init__(self, names: dict[str, str], score: float = 0.9) -> None:
        self.names, self.score, self.calls = names, score, []

    def predict_text(self, texts):
        self.calls.append(list(texts))
        out = []
        for text in texts:
            ents = []
            for name, typ in self.names.items():
                if m := re.search(rf"\b{re.escape(name)}\b", text):
                    ents.append(Entity(typ, m.start(), m.end(), name, self.score))
            out.append(ents)
        return out


def test_find_pii_maps_model_types_drops_misc_and_filters():
    tagger = FakeTagger({"Maria Rossi": "PER", "ACME": "ORG", "Berlin": "LOC", "German": "MISC"})
    text = "Maria Rossi (maria.rossi@acme.de) of ACME, a German firm in Berlin."
    spans = find_pii([text, "", "  "], tagger)
    assert [(s.type, s.text, s.source) for s in spans[0]] == [
        ("PERSON", "Maria Rossi", "model"), ("EMAIL", "maria.rossi@acme.de", "pattern"),
        ("ORGANIZATION", "ACME", "model"), ("LOCATION", "Berlin", "model")]
    assert spans[1:] == [[], []] and tagger.calls == [[text]]  # blank texts never reach the model
    assert find_pii([text], FakeTagger({"Berlin": "LOC"}, 0.4), min_confidence=0.5) == [find_patterns(text)]
    assert [s.type for s in find_pii([text], tagger, types={"EMAIL", "LOCATION"})[0]] == ["EMAIL", "LOCATION"]
    with pytest.raises(ValueError, match="unknown PII type"):
        find_pii([text], types={"NAME"})
    assert set(PII_TYPES) >= {"PERSON", "ORGANIZATION", "LOCATION", "EMAIL", "IBAN"}


def test_no_detected_text_remains_after_redaction():
    tagger = FakeTagger({"Anna Lee": "PER", "Lee": "PER", "Oslo": "LOC"})
    texts = ["Anna Lee moved to Oslo; write anna@lee.no.", "Later Lee said Oslo, Oslo's port and "
             "Osloer are fine.", "Nothing here but Annual Leeway and Anna Lee's cat."]
    detected = [s for spans in find_pii(texts, tagger) for s in spans]
    out, records = redact(texts, tagger)
    for text in out:
        assert not any(re.search(rf"(?<!\w){re.escape(s.text)}(?!\w)", text) for s in detected)
    assert out[0] == "<PERSON> moved to <LOCATION>; write <EMAIL>."
    assert out[1] == "Later <PERSON> said <LOCATION>, <LOCATION>'s port and Osloer are fine."
    assert out[2] == "Nothing here but Annual Leeway and <PERSON>'s cat."
    assert [r["source"] for r in records[1]] == ["model", "model", "repeat"]
    out, _ = redact(texts, tagger, propagate=False)
    assert "Oslo's" in out[1]


def test_every_redacted_corpus_text_loses_all_detected_text():
    corpus = synthetic_pii_corpus(40, seed=3)
    texts = [d["text"] for d in corpus]
    detected = find_pii(texts)
    out, records = redact(texts)
    for text, spans, recs in zip(out, detected, records):
        assert all(s.text not in text for s in spans)
        assert all(text[r["out_start"]:r["out_end"]] == r["placeholder"] for r in recs)


# --- corpus and scores ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def corpus():
    return synthetic_pii_corpus(120, seed=0)


def test_the_corpus_is_seeded_and_its_gold_spans_are_exact(corpus):
    from nerbook.perturb import holdout_names
    from nerbook.synthetic import name_pools

    assert synthetic_pii_corpus(120, seed=0) == corpus
    assert synthetic_pii_corpus(20, seed=1) != corpus[:20]
    seen = {n.lower() for split in name_pools().values() for ns in split.values() for n in ns}
    holdout = {t: {" ".join(n) for n in ns} for t, ns in holdout_names().items()}
    types = set()
    for doc in corpus:
        text = doc["text"]
        for typ, start, end in doc["spans"]:
            value = text[start:end]
            types.add(typ)
            assert value == value.strip() and value
            assert value.lower() not in seen
            if typ == "IBAN":
                assert iban_valid(value)
            elif typ == "CREDIT_CARD":
                assert luhn_valid(value)
            elif typ in ("PERSON", "ORGANIZATION", "LOCATION") and " " in value:
                assert value in holdout[{"PERSON": "PER", "ORGANIZATION": "ORG", "LOCATION": "LOC"}[typ]]
    assert types == set(PII_TYPES)
    assert any(not ch.isascii() and ch.isalpha() for d in corpus for ch in d["text"])
    assert any("🇯🇵" in d["text"] for d in corpus)


def test_evaluate_spans_by_hand():
    gold = [[("PERSON", 0, 10), ("EMAIL", 20, 30)], [("PHONE", 0, 8), ("PERSON", 10, 14)]]
    pred = [[("PERSON", 0, 4), ("PERSON", 4, 6), ("EMAIL", 18, 28), ("LOCATION", 40, 45)],
            [("PERSON", 0, 8), ("PERSON", 12, 20)]]
    s = evaluate_spans(gold, pred)
    # PERSON: gold 0-10 covered 6/10 by the union of 0-4 and 4-6 -> found; gold 10-14 covered 2/4
    # -> found. Predictions: 0-4, 4-6 inside gold (correct); 0-8 of text 2 overlaps no PERSON
    # (wrong); 12-20 covered 2/8 (wrong). P = 2/4, R = 2/2.
    assert s["PERSON"]["precision"] == 0.5 and s["PERSON"]["recall"] == 1.0
    assert s["PERSON"]["f2"] == pytest.approx(5 * 0.5 * 1.0 / (4 * 0.5 + 1.0))  # 0.8333
    assert s["EMAIL"] == {"precision": 1.0, "recall": 1.0, "f2": 1.0, "support": 1, "predicted": 1}
    assert s["PHONE"] == {"precision": 0.0, "recall": 0.0, "f2": 0.0, "support": 1, "predicted": 0}
    assert s["LOCATION"]["precision"] == 0.0 and s["LOCATION"]["support"] == 0
    # ANY: gold 4 spans, all covered by some prediction (phone 0-8 by the PERSON 0-8) -> R = 1;
    # predictions 6, all but LOCATION 40-45 and PERSON 12-20 (2/8 of it gold) correct -> P = 4/6
    assert s["ANY"]["recall"] == 1.0 and s["ANY"]["precision"] == pytest.approx(4 / 6)
    assert s["ANY"]["f2"] == pytest.approx(5 * (4 / 6) / (4 * (4 / 6) + 1))
    assert list(s)[-1] == "ANY" and "f1" in evaluate_spans(gold, pred, beta=1.0)["ANY"]
    assert "PERSON" in scores_table(s)


def test_patterns_alone_on_the_corpus(corpus):
    pred = [find_patterns(d["text"]) for d in corpus]
    s = evaluate_spans([d["spans"] for d in corpus], pred)
    for typ in ("EMAIL", "IBAN", "CREDIT_CARD", "IP_ADDRESS", "PHONE"):
        assert s[typ]["precision"] >= 0.95 and s[typ]["recall"] >= 0.9, (typ, s[typ])
    assert s["PERSON"]["recall"] == 0.0  # names need the model
