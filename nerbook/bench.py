"""Benchmarks: nerbook against the naive loop, the HF Trainer and the HF pipeline (chapter
"Making it fast").

``nerbook bench train`` trains the same model (a fresh copy each time, loading not timed) on
the same sentences with each contender in turn, interleaved when repeated, and reports the wall
time, the real (non-pad) tokens per second, the tokens actually computed (padding included),
the peak memory and the dev entity F1, every contender evaluated the same way (nerbook's
:func:`nerbook.train.evaluate`, on words, in fp32). ``nerbook bench predict`` compares the
batched :class:`nerbook.predict.Tagger` with ``transformers.pipeline("token-classification")``.

Contenders (training):

- ``seed``: the naive loop of the seed code: every sentence padded to 128
  (:func:`nerbook.align.naive_encode`), fp32, ``torch.optim.AdamW(lr=2e-5)`` with its defaults,
  no schedule, random order, ``loss.item()`` every step.
- ``trainer``: ``transformers.Trainer`` with default ``TrainingArguments`` (batch size, epochs
  and learning rate matched) and ``DataCollatorForTokenClassification`` on nerbook's windows.
- ``trainer-tuned``: the same with every speed flag that helps on the hardware (length-grouped
  sampling, bf16, fused AdamW, data loader settings).
- ``nerbook``: :func:`nerbook.train.train` with its defaults.

Each run happens in a fresh process (forked from a server that has imported the libraries
once), so that its peak memory is its own: on a CPU the growth of the resident set during
training (the peak RSS, reset to the current RSS just before training), on a GPU
``torch.cuda.max_memory_allocated`` minus what was allocated before training.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, replace
from pathlib import Path

TRAIN_CONTENDERS = ("seed", "trainer", "trainer-tuned")
PREDICT_CONTENDERS = ("pipeline", "pipeline-batched")
SEED_LR = 2e-5  # the seed code's learning rate
SEED_MAX_LENGTH = 128

#: Dense bf16 peak of some cards in TFLOP/s (spec sheets, without sparsity), for MFU.
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "GH200": 989.0, "A100": 312.0, "L40S": 362.0,
                    "L4": 121.0, "A10": 125.0, "4090": 165.0}

MEMORY_NOTE = {
    "cpu": "peak RSS growth during training (VmHWM reset to VmRSS before training, read after), "
           "fresh process per run",
    "cuda": "torch.cuda.max_memory_allocated during training minus memory allocated before, "
            "fresh process per run",
}

# model id of a randomly initialised bert-base-shaped model (BertConfig() defaults) with the
# offline MiniLM tokenizer: the GPU benchmark's model, which needs no download
BERT_BASE_RANDOM = "bert-base-random"


@dataclass
class TrainSpec:
    """What every training contender gets: the same data, model, batch size and epochs."""

    train: str
    valid: str | None = None
    model: str = "offline"
    limit: int | None = None
    valid_limit: int | None = None
    batch_size: int = 16
    epochs: int = 1
    lr: float = 5e-5
    seed: int = 0
    max_length: int = 128
    threads: int | None = None
    device: str = "auto"
    evaluate: bool = True
    repeat: int = 0  # which repeat this run is: run r uses seed + r (and the Trainer's 42 + r)


@dataclass
class PredictSpec:
    model: str
    data: str
    limit: int | None = None
    batch_size: int = 64
    threads: int | None = None
    device: str = "auto"
    precision: str | None = None  # the Tagger's: None = its default (fp32)


# --------------------------------------------------------------------------------------
# measuring
# --------------------------------------------------------------------------------------


def _proc_status(key: str) -> int | None:
    try:
        m = re.search(rf"^{key}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    except OSError:
        return None
    return int(m.group(1)) if m else None


class MemoryMeter:
    """Peak memory growth of the code inside ``with``: CUDA allocator peak on a GPU, else the
    resident set's high-water mark (reset on entry through ``/proc/self/clear_refs``)."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.peak_mb: float | None = None
        self.kind = "cuda" if device == "cuda" else "cpu"

    def __enter__(self) -> MemoryMeter:
        import torch

        if self.kind == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
            return self
        self._reset = False
        try:
            Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS (Linux >= 4.0)
            self._reset = True
        except OSError:
            pass
        self._base = _proc_status("VmRSS") if self._reset else None
        if self._base is None:  # no /proc: the high-water mark so far, not resettable
            import resource

            self._base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return self

    def __exit__(self, *exc) -> None:
        import torch

        if self.kind == "cuda":
            torch.cuda.synchronize()
            self.peak_mb = (torch.cuda.max_memory_allocated() - self._base) / 2**20
            return
        peak = _proc_status("VmHWM") if self._reset else None
        if peak is None:
            import resource

            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            if sys.platform == "darwin":
                peak //= 1024
        self.peak_mb = max(0, peak - self._base) / 1024


class TokenCounter:
    """Counts, for every training forward pass of ``model``, the real (non-pad) tokens, the
    tokens computed (batch x padded length) and the attention FLOPs of the real tokens.

    A forward pre-hook sees every batch whatever loop drives the model; the sums stay on the
    device (no host sync) until :meth:`totals`.
    """

    def __init__(self, model, pad_id: int | None = 0) -> None:
        self.model = model
        self.pad_id = pad_id if pad_id is not None else 0
        self.computed = 0
        self.real = None
        self.sq = None  # sum over sequences of (real length)^2, for attention FLOPs
        self.batches = 0
        self._handle = model.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        import torch

        if not module.training:
            return None
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is None:
            return None
        mask = kwargs.get("attention_mask")
        self.computed += ids.numel()
        self.batches += 1
        if mask is not None and mask.dim() == 4:  # packed rows: block-diagonal mask, one block a window
            pad = (ids == self.pad_id).sum()
            allowed = mask if mask.dtype == torch.bool else mask == 0
            real, sq = ids.numel() - pad, allowed.sum() - pad  # each pad position sees itself only
        else:
            lengths = mask.sum(1) if mask is not None else ids.new_full((ids.shape[0],), ids.shape[1])
            real, sq = lengths.sum(), (lengths * lengths).sum()
        self.real = real if self.real is None else self.real + real
        self.sq = sq if self.sq is None else self.sq + sq
        return None

    def remove(self) -> None:
        self._handle.remove()

    def totals(self) -> dict:
        return {"real_tokens": int(self.real.item()) if self.real is not None else 0,
                "computed_tokens": int(self.computed), "batches": self.batches,
                "sum_len_sq": int(self.sq.item()) if self.sq is not None else 0}


def model_flops(model, real_tokens: int, sum_len_sq: int) -> float:
    """Training FLOPs of the useful work: 6 x non-embedding parameters x real tokens, plus the
    attention scores and mixing (12 x layers x hidden x sum of squared lengths)."""
    cfg = model.config
    base = getattr(model, model.base_model_prefix, model)
    emb = getattr(base, "embeddings", None)
    n_emb = sum(p.numel() for p in emb.parameters()) if emb is not None else 0
    n = sum(p.numel() for p in model.parameters()) - n_emb
    layers = getattr(cfg, "num_hidden_layers", 0)
    hidden = getattr(cfg, "hidden_size", 0)
    return 6.0 * n * real_tokens + 12.0 * layers * hidden * sum_len_sq


def peak_tflops(device: str) -> float | None:
    """The card's dense bf16 TFLOP/s from :data:`PEAK_BF16_TFLOPS`, or None (CPU, unknown card)."""
    if device != "cuda":
        return None
    import torch

    name = torch.cuda.get_device_name(0)
    for key, value in sorted(PEAK_BF16_TFLOPS.items(), key=lambda kv: -len(kv[0])):
        if key in name:
            return value
    return None


# --------------------------------------------------------------------------------------
# the training contenders
# --------------------------------------------------------------------------------------


def _device(requested: str) -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no GPU visible")
    return requested


def load_bench_model(name: str, schema, texts, seed: int):
    """``(model, tokenizer)``: :func:`nerbook.model.load_model`, plus ``bert-base-random``."""
    from nerbook.model import load_model

    if name != BERT_BASE_RANDOM:
        return load_model(name, schema, texts=texts, seed=seed)
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer, BertConfig

    from nerbook.model import offline_model_path

    # the offline model's WordPiece vocabulary; NERBOOK_BENCH_TOKENIZER names a saved copy on a
    # machine without the offline package (bench/gpu.sh)
    folder = os.environ.get("NERBOOK_BENCH_TOKENIZER") or str(offline_model_path())
    tokenizer = AutoTokenizer.from_pretrained(folder, use_fast=True)
    cfg = BertConfig(vocab_size=len(tokenizer), num_labels=len(schema), id2label=schema.id2label,
                     label2id=dict(schema.label2id))
    torch.manual_seed(seed)
    # It stands in for bert-base-cased, so nerbook treats it as pretrained (its word embeddings kept).
    return AutoModelForTokenClassification.from_config(cfg), tokenizer


def seed_loop(model, tokenizer, train_ds, spec: TrainSpec, device: str) -> dict:
    """The seed code's loop, faithfully: pad to 128, fp32, plain AdamW, random order."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from nerbook.align import naive_encode
    from nerbook.data import schema_of

    o_id = schema_of(train_ds).label2id["O"]
    enc = [naive_encode(w, t, tokenizer, SEED_MAX_LENGTH, o_id)
           for w, t in zip(train_ds["tokens"], train_ds["ner_tags"])]
    data = TensorDataset(*(torch.tensor([e[k] for e in enc]) for k in ("input_ids", "attention_mask", "labels")))
    torch.manual_seed(spec.seed)
    loader = DataLoader(data, batch_size=spec.batch_size, shuffle=True)
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=SEED_LR)
    model.train()
    losses = []
    for _ in range(spec.epochs):
        for input_ids, attention_mask, labels in loader:
            input_ids, attention_mask, labels = input_ids.to(device), attention_mask.to(device), labels.to(device)
            outputs = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
            loss = outputs.loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    return {"train_loss": sum(losses[-20:]) / max(1, len(losses[-20:]))}


def trainer_args(spec: TrainSpec, out: str, device: str, tuned: bool):
    """Default ``TrainingArguments`` (batch size, epochs, lr matched); with ``tuned``, the speed flags."""
    from transformers import TrainingArguments

    from nerbook.train import resolve_precision

    default_seed = TrainingArguments.__dataclass_fields__["seed"].default  # 42
    kw = dict(output_dir=out, per_device_train_batch_size=spec.batch_size, num_train_epochs=spec.epochs,
              learning_rate=spec.lr, report_to="none", save_strategy="no", logging_strategy="no",
              disable_tqdm=True, seed=default_seed + spec.repeat)
    if device == "cpu":
        kw["use_cpu"] = True
    if tuned:
        precision = resolve_precision("auto", device)
        kw.update(train_sampling_strategy="group_by_length", optim="adamw_torch_fused",
                  bf16=precision == "bf16", fp16=precision == "fp16",
                  dataloader_pin_memory=device == "cuda",
                  # a data loader worker only competes with the model for a CPU's cores
                  dataloader_num_workers=2 if device == "cuda" else 0,
                  dataloader_persistent_workers=device == "cuda")
        if device == "cuda":
            import torch

            kw["tf32"] = torch.cuda.get_device_capability(0)[0] >= 8
    return TrainingArguments(**kw)


def trainer_loop(model, tokenizer, train_ds, spec: TrainSpec, device: str, tuned: bool) -> dict:
    """``transformers.Trainer`` on nerbook's windows (input_ids, attention_mask, labels)."""
    from transformers import DataCollatorForTokenClassification, PrinterCallback, Trainer

    from nerbook.align import WindowConfig, encode_windows

    windows = encode_windows(train_ds, tokenizer, WindowConfig(spec.max_length))
    windows = windows.select_columns(["input_ids", "attention_mask", "labels"])
    if tuned:  # precomputed lengths, so the length-grouped sampler need not read every row
        windows = windows.add_column("length", [len(x) for x in windows["input_ids"]])
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(model=model, args=trainer_args(spec, out, device, tuned), train_dataset=windows,
                          data_collator=DataCollatorForTokenClassification(tokenizer),
                          processing_class=tokenizer)
        trainer.remove_callback(PrinterCallback)  # logging off: no metrics dict on stdout
        res = trainer.train()
    return {"train_loss": float(res.training_loss)}


def nerbook_loop(model, tokenizer, train_ds, spec: TrainSpec, device: str) -> dict:
    """:func:`nerbook.train.train` with its defaults (no dev set: evaluation is not timed)."""
    from nerbook.train import TrainConfig, train

    cfg = TrainConfig(epochs=spec.epochs, batch_size=spec.batch_size, lr=spec.lr, seed=spec.seed,
                      max_length=spec.max_length, progress=False)
    res = train(model, tokenizer, train_ds, None, cfg)
    return {"train_loss": res.history["epochs"][-1]["train_loss"], "model": res.model}


def _plain_model(model):
    """The model without accelerate's autocast wrapper around ``forward`` (evaluation is fp32)."""
    from accelerate.utils import extract_model_from_parallel

    return extract_model_from_parallel(model, keep_fp32_wrapper=False)


def _set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def run_train_contender(name: str, spec: TrainSpec) -> dict:
    """Train one contender once: time, tokens, memory, then the dev F1 (not timed)."""
    import torch

    from nerbook.cli import _load_splits
    from nerbook.notebook import seed_everything
    from nerbook.train import TrainConfig, evaluate

    _set_threads(spec.threads)
    device = _device(spec.device)
    train_ds, valid_ds, schema = _load_splits(spec.train, spec.valid, spec.limit)
    if valid_ds is not None and spec.valid_limit:
        valid_ds = valid_ds.select(range(min(spec.valid_limit, len(valid_ds))))
    seed_everything(spec.seed, deterministic=False)
    model, tokenizer = load_bench_model(spec.model, schema, train_ds["tokens"], spec.seed)
    if device == "cuda":
        model.to(device)
    counter = TokenCounter(model, tokenizer.pad_token_id)
    with MemoryMeter(device) as mem:
        t0 = time.perf_counter()
        if name == "seed":
            out = seed_loop(model, tokenizer, train_ds, spec, device)
        elif name in ("trainer", "trainer-tuned"):
            out = trainer_loop(model, tokenizer, train_ds, spec, device, tuned=name == "trainer-tuned")
        elif name == "nerbook":
            out = nerbook_loop(model, tokenizer, train_ds, spec, device)
        else:
            raise ValueError(f"unknown contender {name!r}; choose from nerbook, {', '.join(TRAIN_CONTENDERS)}")
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
    counter.remove()
    model = _plain_model(out.pop("model", model))
    run = {"seconds": seconds, **counter.totals(), "peak_mem_mb": mem.peak_mb, **out,
           "n_train": len(train_ds), "n_valid": len(valid_ds) if valid_ds is not None else 0,
           "parameters": sum(p.numel() for p in model.parameters()),
           "model_flops": model_flops(model, counter.totals()["real_tokens"], counter.totals()["sum_len_sq"])}
    if valid_ds is not None and spec.evaluate:
        model.to(device)
        scores = evaluate(model, tokenizer, valid_ds, TrainConfig(max_length=spec.max_length),
                          device=device, precision="fp32")
        run["dev_f1"] = scores["overall"]["f1"]
    return run


# --------------------------------------------------------------------------------------
# running contenders in fresh processes
# --------------------------------------------------------------------------------------


# imported once by the fork server, so that a run starts in a fraction of a second
_PRELOAD = ["nerbook.bench", "nerbook.train", "nerbook.predict", "nerbook.cli", "nerbook.model",
            "nerbook.synthetic", "transformers", "transformers.modeling_utils",
            "transformers.models.auto.modeling_auto", "transformers.models.auto.tokenization_auto",
            "transformers.models.bert.modeling_bert", "transformers.data.data_collator",
            "accelerate", "accelerate.accelerator", "datasets", "seqeval.metrics", "sklearn.metrics",
            "safetensors.torch"]


def _child(conn, fn: str, args: tuple) -> None:
    os.dup2(2, 1)  # the Trainer prints its logs: keep stdout for the JSON report
    try:
        result = ("ok", globals()[fn](*args))
    except BaseException:  # report everything, including KeyboardInterrupt, to the parent
        result = ("error", traceback.format_exc())
    conn.send(result)
    conn.close()


class Runner:
    """Runs functions of this module in fresh processes forked from a server that imported the
    heavy libraries once (``isolate=True``), or in this process (``isolate=False``, faster,
    but then memory peaks are not each run's own)."""

    def __init__(self, isolate: bool = True, preload: tuple[str, ...] = ()) -> None:
        self.isolate = isolate
        self._ctx = None
        if isolate:
            import multiprocessing as mp

            method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
            self._ctx = mp.get_context(method)
            if method == "forkserver":
                self._ctx.set_forkserver_preload([*_PRELOAD, *preload])

    def __call__(self, fn: str, *args):
        if not self.isolate:
            with contextlib.redirect_stdout(sys.stderr):
                return globals()[fn](*args)
        recv, send = self._ctx.Pipe(duplex=False)
        proc = self._ctx.Process(target=_child, args=(send, fn, args))
        proc.start()
        send.close()
        try:
            status, value = recv.recv()
        except EOFError:
            proc.join()
            raise RuntimeError(f"benchmark process for {fn}{args[:1]} died (exit code {proc.exitcode})") from None
        proc.join()
        if status != "ok":
            raise RuntimeError(f"benchmark run {fn}{args[:1]} failed:\n{value}")
        return value


def _summarise(runs: dict[str, list[dict]], reference: str = "nerbook", peak: float | None = None) -> dict:
    """Per contender: best-of-R seconds, tokens/s, computed tokens, peak memory, mean dev F1, ratio."""
    out: dict[str, dict] = {}
    for name, rs in runs.items():
        best = min(rs, key=lambda r: r["seconds"])
        f1s = [r["dev_f1"] for r in rs if r.get("dev_f1") is not None]
        mems = [r["peak_mem_mb"] for r in rs if r.get("peak_mem_mb") is not None]
        entry = {"seconds": best["seconds"], "tokens_per_s": best["real_tokens"] / best["seconds"],
                 "computed_tokens": best["computed_tokens"], "real_tokens": best["real_tokens"],
                 "padding_share": 1 - best["real_tokens"] / max(1, best["computed_tokens"]),
                 "peak_mem_mb": max(mems) if mems else None,
                 "dev_f1": sum(f1s) / len(f1s) if f1s else None,
                 "train_loss": best.get("train_loss"),
                 "model_tflop": best["model_flops"] / 1e12,
                 "runs": [{k: r.get(k) for k in ("seconds", "peak_mem_mb", "dev_f1", "train_loss")} for r in rs]}
        if peak:
            entry["mfu"] = best["model_flops"] / best["seconds"] / (peak * 1e12)
        out[name] = entry
    ref = out[reference]["seconds"]
    for entry in out.values():
        entry["ratio"] = entry["seconds"] / ref
    return out


def _parse_against(text: str, allowed: tuple[str, ...]) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip() and n.strip() != "none"]
    bad = [n for n in names if n not in allowed]
    if bad:
        raise ValueError(f"--against: unknown contender(s) {bad}; choose from {', '.join(allowed)}")
    return [n for i, n in enumerate(names) if n not in names[:i]]


def _frozen_tiny(spec: TrainSpec, folder: str) -> TrainSpec:
    """For ``tiny``, make the model and its tokenizer once and save them, so that every run
    starts from the same weights and the same vocabulary (a WordPiece tokenizer trained
    anew in each process may differ)."""
    if spec.model != "tiny":
        return spec
    from nerbook.cli import _load_splits
    from nerbook.model import load_model, save_checkpoint

    train_ds, _, schema = _load_splits(spec.train, spec.valid, spec.limit)
    model, tokenizer = load_model("tiny", schema, texts=list(train_ds["tokens"]), seed=spec.seed)
    save_checkpoint(model, tokenizer, Path(folder) / "tiny")
    return replace(spec, model=str(Path(folder) / "tiny"))


def bench_train(spec: TrainSpec, against: list[str], repeat: int = 1, isolate: bool = True,
                log=None) -> dict:
    """Run nerbook and the contenders ``repeat`` times, interleaved; see the module docstring."""
    import torch

    order = ["nerbook", *[c for c in against if c != "nerbook"]]
    runner = Runner(isolate, ("transformers.trainer",) if any(c.startswith("trainer") for c in order) else ())
    runs: dict[str, list[dict]] = {c: [] for c in order}
    with tempfile.TemporaryDirectory() as tmp:
        frozen = _frozen_tiny(spec, tmp)
        for r in range(repeat):
            run_spec = replace(frozen, seed=spec.seed + r, repeat=r)  # F1 averaged over seeds
            for c in order:
                run = runner("run_train_contender", c, run_spec)
                runs[c].append(run)
                if log:
                    log(f"[{r + 1}/{repeat}] {c:<14} {run['seconds']:8.2f} s  dev F1 {run.get('dev_f1')}")
    device = "cuda" if spec.device == "auto" and torch.cuda.is_available() else (
        "cpu" if spec.device == "auto" else spec.device)
    from nerbook.train import resolve_precision

    setup = {"task": "train", **asdict(spec), "repeat": repeat, "isolated": isolate,
             "contender_order": order, "device": device,
             "threads": spec.threads or torch.get_num_threads(),
             "nerbook_precision": resolve_precision("auto", device),
             "seconds": "best of the interleaved repeats; model loading and evaluation excluded, "
                        "data encoding included",
             "dev_f1": "entity F1 on the dev set (nerbook.train.evaluate, fp32), mean over the repeats; "
                       "repeat r uses seed + r for every contender (the Trainer: 42 + r)",
             "memory": MEMORY_NOTE[device] if isolate else "not measured per run (isolation off)",
             "peak_bf16_tflops": peak_tflops(device)}
    first = runs["nerbook"][0]
    setup.update(n_train=first["n_train"], n_valid=first["n_valid"], parameters=first["parameters"])
    contenders = _summarise(runs, peak=setup["peak_bf16_tflops"])
    if not isolate:
        for entry in contenders.values():
            entry["peak_mem_mb"] = None
    return {"contenders": contenders, "setup": setup}


# --------------------------------------------------------------------------------------
# prediction: Tagger vs pipeline
# --------------------------------------------------------------------------------------


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


def _read_sentences(path: str, limit: int | None):
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


def _same_words(single: list[list[bool]]):
    """Whether a span (sentence, type, first, last) and its neighbours are all single-piece words."""
    return lambda e: all(single[e[0]][max(0, e[2] - 1):e[3] + 2])


def _trained_with(model: str) -> dict:
    """The settings a nerbook checkpoint was trained with that change what a tagger reads off it."""
    import json
    from pathlib import Path

    meta = Path(model) / "nerbook.json"
    cfg = json.loads(meta.read_text()).get("train_config", {}) if meta.is_file() else {}
    return {"label_all_subwords": cfg.get("label_all_subwords", False), "doc_context": cfg.get("doc_context", False)}


def _entity_set(tags: list[list[str]]) -> set:
    from nerbook.metrics import spans

    return {(i, *s) for i, t in enumerate(tags) for s in spans(t)}


def run_predict_contender(name: str, spec: PredictSpec) -> dict:
    """Tag the sentences with one contender: seconds and the word tags."""
    import torch

    from nerbook.predict import Tagger

    _set_threads(spec.threads)
    device = _device(spec.device)
    sents = _read_sentences(spec.data, spec.limit)
    words = [s.tokens for s in sents]
    kw = {"precision": spec.precision} if spec.precision and name == "nerbook" else {}
    tagger = Tagger.from_checkpoint(spec.model, batch_size=spec.batch_size, device=device, **kw)
    if name == "nerbook":
        tagger.tag(words[:8])  # warm-up, as for the pipeline
        with MemoryMeter(device) as mem:
            t0 = time.perf_counter()
            tags = tagger.tag(words, [s.doc_id for s in sents])
            seconds = time.perf_counter() - t0
    elif name in PREDICT_CONTENDERS:
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
    return {"seconds": seconds, "tags": tags, "peak_mem_mb": mem.peak_mb}


def bench_predict(spec: PredictSpec, against: list[str], repeat: int = 1, isolate: bool = True,
                  log=None) -> dict:
    """Tagger vs the pipeline on the same sentences: sentences/s, ratio, agreement (and F1 if tagged)."""
    import torch

    from nerbook.metrics import entity_scores

    order = ["nerbook", *[c for c in against if c != "nerbook"]]
    runner = Runner(isolate, ("transformers.pipelines",))
    runs: dict[str, list[dict]] = {c: [] for c in order}
    for r in range(repeat):
        for c in order:
            run = runner("run_predict_contender", c, spec)
            runs[c].append(run)
            if log:
                log(f"[{r + 1}/{repeat}] {c:<16} {run['seconds']:8.2f} s")
    sents = _read_sentences(spec.data, spec.limit)
    gold = [s.tags for s in sents] if all(s.tags is not None for s in sents) else None
    reference = _entity_set(runs["nerbook"][0]["tags"])
    from transformers import AutoTokenizer

    comparable = _same_words(single_piece_words(AutoTokenizer.from_pretrained(spec.model, use_fast=True),
                                                [s.tokens for s in sents]))
    reference_same = {e for e in reference if comparable(e)}
    out: dict[str, dict] = {}
    n_words = sum(len(s.tokens) for s in sents)
    for c, rs in runs.items():
        best = min(r["seconds"] for r in rs)
        found = _entity_set(rs[0]["tags"])
        union = found | reference
        found_same = {e for e in found if comparable(e)}
        union_same = found_same | reference_same
        mems = [r["peak_mem_mb"] for r in rs if r["peak_mem_mb"] is not None]
        entry = {"seconds": best, "sentences_per_s": len(sents) / best, "words_per_s": n_words / best,
                 "entities": len(found), "agreement": len(found & reference) / len(union) if union else 1.0,
                 "agreement_same_words": len(found_same & reference_same) / len(union_same) if union_same else 1.0,
                 "spans_same_words": len(union_same),
                 "peak_mem_mb": max(mems) if (mems and isolate) else None,
                 "runs": [r["seconds"] for r in rs]}
        if gold is not None:
            entry["f1"] = entity_scores(gold, rs[0]["tags"])["overall"]["f1"]
        out[c] = entry
    for entry in out.values():
        entry["ratio"] = entry["seconds"] / out["nerbook"]["seconds"]
    device = "cuda" if spec.device == "auto" and torch.cuda.is_available() else (
        "cpu" if spec.device == "auto" else spec.device)
    setup = {"task": "predict", **asdict(spec), "repeat": repeat, "isolated": isolate,
             "model_trained_with": _trained_with(spec.model),
             "n_sentences": len(sents), "n_words": n_words, "device": device,
             "threads": spec.threads or torch.get_num_threads(),
             "agreement": "identical entity spans (sentence, type, first word, last word) shared with "
                          "nerbook / all spans of either (Jaccard); a pipeline entity covers the words "
                          "holding its first to its last character (see pipeline_word_tags)",
             "agreement_same_words": "the same, over the spans whose words and neighbouring words the "
                                     "tokenizer's pre-tokenizer keeps whole (see single_piece_words): "
                                     "where the pipeline's words are the CoNLL words",
             "seconds": "best of the interleaved repeats; model loading excluded"}
    return {"contenders": out, "setup": setup}


# --------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    v = int(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return v


def add_bench_parser(subparsers) -> None:
    """``nerbook bench train|predict`` (called by :func:`nerbook.cli.build_parser`)."""
    b = subparsers.add_parser("bench", help="benchmark nerbook against the naive loop, the Trainer and the pipeline",
                              description="Benchmark nerbook against the seed loop, the HF Trainer and the HF pipeline.")
    sub = b.add_subparsers(dest="bench_command", required=True)

    t = sub.add_parser("train", help="training: nerbook vs seed, trainer, trainer-tuned")
    t.add_argument("--train", required=True, help="CoNLL file, or folder with train.txt (and valid.txt)")
    t.add_argument("--valid", help="CoNLL dev file (dev F1 of every contender)")
    t.add_argument("--model", default="offline", help=f"hub id, folder, 'offline', 'tiny' or '{BERT_BASE_RANDOM}'")
    t.add_argument("--limit", type=_positive_int, help="first N training sentences")
    t.add_argument("--valid-limit", type=_positive_int, help="first N dev sentences")
    t.add_argument("--batch-size", type=_positive_int, default=16)
    t.add_argument("--epochs", type=_positive_int, default=1)
    t.add_argument("--lr", type=float, default=5e-5, help="learning rate of nerbook and the Trainer (the seed keeps 2e-5)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--against", default=",".join(TRAIN_CONTENDERS), help="comma-separated: " + ", ".join(TRAIN_CONTENDERS))
    t.add_argument("--repeat", type=_positive_int, default=1, help="interleaved repeats (best time is kept)")
    t.add_argument("--threads", type=_positive_int, help="torch threads in every run (default: torch's)")
    t.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    t.add_argument("--no-isolate", dest="isolate", action="store_false",
                   help="run in this process (faster start; peak memory not measured)")
    t.add_argument("--no-eval", dest="evaluate", action="store_false", help="skip the dev F1")
    t.add_argument("--json", action="store_true")
    t.add_argument("--record", help="write the JSON with provenance here")
    t.set_defaults(func=cmd_bench_train, show=_print_train)

    p = sub.add_parser("predict", help="prediction: nerbook's Tagger vs transformers.pipeline")
    p.add_argument("--model", required=True, help="checkpoint folder saved by nerbook train")
    p.add_argument("--data", required=True, help="CoNLL file (with tags: F1 too)")
    p.add_argument("--limit", type=_positive_int)
    p.add_argument("--batch-size", type=_positive_int, default=64)
    p.add_argument("--against", default="pipeline", help="comma-separated: " + ", ".join(PREDICT_CONTENDERS))
    p.add_argument("--repeat", type=_positive_int, default=1)
    p.add_argument("--threads", type=_positive_int)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], help="nerbook's (default: the Tagger's, fp32)")
    p.add_argument("--no-isolate", dest="isolate", action="store_false")
    p.add_argument("--json", action="store_true")
    p.add_argument("--record", help="write the JSON with provenance here")
    p.set_defaults(func=cmd_bench_predict, show=_print_predict)


def _log(args):
    return None if args.json else (lambda msg: print(msg, file=sys.stderr, flush=True))


def cmd_bench_train(args: argparse.Namespace) -> dict:
    _set_threads(args.threads)
    spec = TrainSpec(train=args.train, valid=args.valid, model=args.model, limit=args.limit,
                     valid_limit=args.valid_limit, batch_size=args.batch_size, epochs=args.epochs,
                     lr=args.lr, seed=args.seed, threads=args.threads, device=args.device,
                     evaluate=args.evaluate)
    result = bench_train(spec, _parse_against(args.against, TRAIN_CONTENDERS), args.repeat, args.isolate,
                         log=_log(args))
    if args.record:
        from nerbook.records import write_record

        write_record(args.record, result, [p for p in (args.train, args.valid) if p], kind="bench")
    return result


def cmd_bench_predict(args: argparse.Namespace) -> dict:
    _set_threads(args.threads)
    spec = PredictSpec(model=args.model, data=args.data, limit=args.limit, batch_size=args.batch_size,
                       threads=args.threads, device=args.device, precision=args.precision)
    result = bench_predict(spec, _parse_against(args.against, PREDICT_CONTENDERS), args.repeat,
                           args.isolate, log=_log(args))
    if args.record:
        from nerbook.records import write_record

        write_record(args.record, result, [args.data], kind="bench")
    return result


def _fmt(v, spec: str) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def _print_train(r: dict) -> None:
    print(f"{'contender':<15}{'seconds':>9}{'ratio':>8}{'tokens/s':>10}{'computed':>10}{'pad %':>7}"
          f"{'mem MB':>8}{'dev F1':>8}")
    for name, c in r["contenders"].items():
        print(f"{name:<15}{c['seconds']:>9.2f}{c['ratio']:>8.2f}{c['tokens_per_s']:>10.0f}"
              f"{c['computed_tokens']:>10}{100 * c['padding_share']:>7.1f}{_fmt(c['peak_mem_mb'], '.0f'):>8}"
              f"{_fmt(c['dev_f1'], '.4f'):>8}")


def _print_predict(r: dict) -> None:
    print(f"{'contender':<18}{'seconds':>9}{'ratio':>8}{'sent/s':>9}{'agreement':>11}{'same words':>12}{'F1':>8}")
    for name, c in r["contenders"].items():
        print(f"{name:<18}{c['seconds']:>9.2f}{c['ratio']:>8.2f}{c['sentences_per_s']:>9.1f}"
              f"{c['agreement']:>11.4f}{c['agreement_same_words']:>12.4f}{_fmt(c.get('f1'), '.4f'):>8}")


__all__ = ["TRAIN_CONTENDERS", "PREDICT_CONTENDERS", "TrainSpec", "PredictSpec", "MemoryMeter",
           "TokenCounter", "Runner", "bench_train", "bench_predict", "pipeline_word_tags", "model_flops",
           "add_bench_parser"]
