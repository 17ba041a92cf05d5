"""``nerbook bench predict``: nerbook's :class:`~nerbook.predict.Tagger` against
``transformers.pipeline("token-classification")`` (chapters "Making it fast", "Results").

Both tag the same sentences; the report gives the time, the agreement of their entity spans
(on CoNLL words: a pipeline entity covers the words holding its first to its last character)
and, for a labelled file, each one's entity F1. The deployment contenders (ONNX Runtime, int8)
are in :mod:`nerbook.bench.deploy`.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from nerbook.bench.deploy import (
    DEPLOY_CONTENDERS,
    DEPLOY_NOTE,
    deploy_columns,
    deploy_tagger,
    prepare_exports,
)
from nerbook.bench.measure import MemoryMeter
from nerbook.bench.runner import Runner, set_threads
from nerbook.runtime import resolve_device

PIPELINE_CONTENDERS = ("pipeline", "pipeline-batched")
PREDICT_CONTENDERS = (*PIPELINE_CONTENDERS, *DEPLOY_CONTENDERS)


@dataclass
class PredictSpec:
    """What every prediction contender gets: the same checkpoint, sentences and batch size."""

    model: str
    data: str
    limit: int | None = None
    batch_size: int = 64
    threads: int | None = None
    device: str = "auto"
    precision: str | None = None  # the Tagger's: None = its default (fp32)


def pipeline_word_tags(words: list[str], entities: list[dict]) -> list[str]:
    """Word tags from a pipeline's entity spans over ``" ".join(words)``.

    Each entity covers the words from the one holding its first character to the one holding
    its last. The pipeline's own words are the tokenizer's (``P.`` is ``p`` and ``.``), so one
    CoNLL word may be cut in two entities: overlapping entities of one type are one entity on
    words; of another type, the earlier one keeps the shared word (the "first" rule).
    """
    import bisect

    starts, pos = [], 0
    for w in words:
        starts.append(pos)
        pos += len(w) + 1

    def word_of(char: int) -> int:
        return bisect.bisect_right(starts, char) - 1

    spans_: list[list] = []
    for e in sorted(entities, key=lambda e: (e["start"], e["end"])):
        first, last = max(0, word_of(e["start"])), word_of(max(e["start"], e["end"] - 1))
        if e["start"] >= starts[first] + len(words[first]):  # starts on the space after a word
            first += 1
        if first > last:
            continue
        if spans_ and first <= spans_[-1][2]:
            if spans_[-1][0] == e["entity_group"]:
                spans_[-1][2] = max(spans_[-1][2], last)
                continue
            first = spans_[-1][2] + 1
            if first > last:
                continue
        spans_.append([e["entity_group"], first, last])
    tags = ["O"] * len(words)
    for typ, first, last in spans_:
        tags[first] = "B-" + typ
        for i in range(first + 1, last + 1):
            tags[i] = "I-" + typ
    return tags


def read_sentences(path: str, limit: int | None):
    from nerbook.data import ConllFormatError, read_conll_sentences

    try:
        sents = read_conll_sentences(path)
    except ConllFormatError:
        sents = read_conll_sentences(path, with_tags=False)
    return sents[:limit] if limit else sents


def single_piece_words(tokenizer, sentences: list[list[str]]) -> list[list[bool]]:
    """For each word, whether the tokenizer's pre-tokenizer keeps it whole. The pipeline tags the
    pre-tokenizer's words (``U.S.`` is ``u . s .``), so only where each word is one piece do its
    words and the CoNLL words coincide."""
    pre = tokenizer.backend_tokenizer.pre_tokenizer
    if pre is None:
        return [[True] * len(words) for words in sentences]
    return [[len(pre.pre_tokenize_str(w)) == 1 for w in words] for words in sentences]


def same_words(single: list[list[bool]]):
    """Whether a span (sentence, type, first, last) and its neighbours are all single-piece words."""
    return lambda e: all(single[e[0]][max(0, e[2] - 1):e[3] + 2])


def trained_with(model: str) -> dict:
    """The settings a nerbook checkpoint was trained with that change what a tagger reads off it."""
    from nerbook.model import read_checkpoint_meta

    cfg = read_checkpoint_meta(model).get("train_config", {})
    return {"label_all_subwords": cfg.get("label_all_subwords", False), "doc_context": cfg.get("doc_context", False)}


def entity_set(tags: list[list[str]]) -> set:
    from nerbook.metrics import spans

    return {(i, *s) for i, t in enumerate(tags) for s in spans(t)}


def run_predict_contender(name: str, spec: PredictSpec, export: str | None = None) -> dict:
    """Tag the sentences with one contender: seconds, the word tags, peak memory, the weights' MB.
    ``export``: the ONNX folder of an ``onnx``/``onnx-int8`` contender (:func:`prepare_exports`)."""
    import torch

    from nerbook.export import weights_mb
    from nerbook.predict import Tagger

    set_threads(spec.threads)
    device = resolve_device(spec.device)
    sents = read_sentences(spec.data, spec.limit)
    words = [s.tokens for s in sents]
    if name in DEPLOY_CONTENDERS:
        device = "cpu"
        tagger, size = deploy_tagger(name, spec.model, export, spec.batch_size)
    else:
        kw = {"precision": spec.precision} if spec.precision and name == "nerbook" else {}
        tagger = Tagger.from_checkpoint(spec.model, batch_size=spec.batch_size, device=device, **kw)
        size = weights_mb(spec.model)
    if name == "nerbook" or name in DEPLOY_CONTENDERS:
        tagger.tag(words[:8])  # warm-up, as for the pipeline
        with MemoryMeter(device) as mem:
            t0 = time.perf_counter()
            tags = tagger.tag(words, [s.doc_id for s in sents])
            seconds = time.perf_counter() - t0
    elif name in PIPELINE_CONTENDERS:
        from transformers import pipeline

        kw = {"batch_size": spec.batch_size} if name == "pipeline-batched" else {}
        pipe = pipeline("token-classification", model=tagger.model, tokenizer=tagger.tokenizer,
                        aggregation_strategy="first", device=torch.device(device), **kw)
        texts = [" ".join(w) for w in words]
        pipe(texts[:8])
        with MemoryMeter(device) as mem:
            t0 = time.perf_counter()
            ents = pipe(texts)
            seconds = time.perf_counter() - t0
        tags = [pipeline_word_tags(w, e) for w, e in zip(words, ents)]
    else:
        raise ValueError(f"unknown contender {name!r}; choose from nerbook, {', '.join(PREDICT_CONTENDERS)}")
    return {"seconds": seconds, "tags": tags, "peak_mem_mb": mem.peak_mb, "size_mb": size, "device": device}


def agreement(found: set, reference: set) -> float:
    """Jaccard agreement of two sets of spans: shared / all; 1.0 when both are empty."""
    union = found | reference
    return len(found & reference) / len(union) if union else 1.0


def summarise_predict(runs: dict[str, list[dict]], sents, comparable, reference: str = "nerbook") -> dict:
    """Per contender: best-of-R seconds, throughput, ratio to ``reference``, span agreement with
    it (all spans, and those ``comparable`` accepts), peak memory, and entity F1 when ``sents``
    carry gold tags. Tags and agreement come from each contender's first run."""
    from nerbook.metrics import entity_scores

    gold = [s.tags for s in sents] if all(s.tags is not None for s in sents) else None
    ref = entity_set(runs[reference][0]["tags"])
    ref_same = {e for e in ref if comparable(e)}
    n_words = sum(len(s.tokens) for s in sents)
    out: dict[str, dict] = {}
    for c, rs in runs.items():
        best = min(r["seconds"] for r in rs)
        found = entity_set(rs[0]["tags"])
        found_same = {e for e in found if comparable(e)}
        mems = [r["peak_mem_mb"] for r in rs if r["peak_mem_mb"] is not None]
        out[c] = {"seconds": best, "sentences_per_s": len(sents) / best, "words_per_s": n_words / best,
                  "entities": len(found), "agreement": agreement(found, ref),
                  "agreement_same_words": agreement(found_same, ref_same),
                  "spans_same_words": len(found_same | ref_same),
                  "peak_mem_mb": max(mems) if mems else None, "runs": [r["seconds"] for r in rs]}
        if gold is not None:
            out[c]["f1"] = entity_scores(gold, rs[0]["tags"])["overall"]["f1"]
    for entry in out.values():
        entry["ratio"] = entry["seconds"] / out[reference]["seconds"]
    return out


def bench_predict(spec: PredictSpec, against: list[str], repeat: int = 1, isolate: bool = True,
                  log=None) -> dict:
    """Tagger vs the pipeline (or the deployment contenders) on the same sentences: sentences/s,
    ratio, agreement (and F1 if tagged); ONNX exports are made first, in a temporary folder."""
    import torch

    order = ["nerbook", *[c for c in against if c != "nerbook"]]
    runner = Runner(isolate, ("transformers.pipelines", "nerbook.export"))
    runs: dict[str, list[dict]] = {c: [] for c in order}
    with tempfile.TemporaryDirectory(prefix="nerbook-bench-") as tmp:
        exports = prepare_exports(spec.model, order, Path(tmp))
        for r in range(repeat):
            for c in order:
                run = runner(run_predict_contender, c, spec, exports.get(c, {}).get("path"))
                runs[c].append(run)
                if log:
                    log(f"[{r + 1}/{repeat}] {c:<16} {run['seconds']:8.2f} s")
    sents = read_sentences(spec.data, spec.limit)
    from transformers import AutoTokenizer

    comparable = same_words(single_piece_words(AutoTokenizer.from_pretrained(spec.model, use_fast=True),
                                               [s.tokens for s in sents]))
    out = summarise_predict(runs, sents, comparable)
    deploy_columns(out, runs)
    n_words = sum(len(s.tokens) for s in sents)
    if not isolate:
        for entry in out.values():
            entry["peak_mem_mb"] = None
    device = resolve_device(spec.device)
    setup = {"task": "predict", **asdict(spec), "repeat": repeat, "isolated": isolate,
             "model_trained_with": trained_with(spec.model),
             "n_sentences": len(sents), "n_words": n_words, "device": device,
             "threads": spec.threads or torch.get_num_threads(),
             "agreement": "identical entity spans (sentence, type, first word, last word) shared with "
                          "nerbook / all spans of either (Jaccard); a pipeline entity covers the words "
                          "holding its first to its last character (see pipeline_word_tags)",
             "agreement_same_words": "the same, over the spans whose words and neighbouring words the "
                                     "tokenizer's pre-tokenizer keeps whole (see single_piece_words): "
                                     "where the pipeline's words are the CoNLL words",
             "seconds": "best of the interleaved repeats; model loading excluded"}
    if exports or any(c in DEPLOY_CONTENDERS for c in order):
        setup["exports"] = {c: {k: v for k, v in e.items() if k != "path"} for c, e in exports.items()}
        setup["deploy"] = DEPLOY_NOTE
    return {"contenders": out, "setup": setup}
