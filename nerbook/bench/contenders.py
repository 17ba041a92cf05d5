"""The training contenders of ``nerbook bench train`` (chapter "Making it fast").

- ``seed``: the naive loop of the seed code: every sentence padded to 128
  (:func:`nerbook.align.naive_encode`), fp32, ``torch.optim.AdamW(lr=2e-5)`` with its defaults,
  no schedule, random order, ``loss.item()`` every step.
- ``trainer``: ``transformers.Trainer`` with default ``TrainingArguments`` (batch size, epochs
  and learning rate matched) and ``DataCollatorForTokenClassification`` on nerbook's windows.
- ``trainer-tuned``: the same with every speed flag that helps on the hardware (length-grouped
  sampling, bf16, fused AdamW, data loader settings).
- ``nerbook``: :func:`nerbook.train.train` with its defaults.

:func:`run_train_contender` trains one of them once and measures it.
"""

from __future__ import annotations

import copy
import os
import tempfile
import time
from dataclasses import dataclass

from nerbook.bench.clock import DevClock, StopRun
from nerbook.bench.measure import MemoryMeter, TokenCounter, model_flops
from nerbook.bench.runner import set_threads
from nerbook.runtime import resolve_device, resolve_precision, seed_everything

TRAIN_CONTENDERS = ("seed", "trainer", "trainer-tuned")
SEED_LR = 2e-5  # the seed code's learning rate
SEED_MAX_LENGTH = 128

#: Model id of a randomly initialised bert-base-shaped model (``BertConfig()`` defaults) with the
#: offline MiniLM tokenizer: the GPU benchmark's model, which needs no download.
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
    repeat: int = 0  # which repeat this run is: run r uses seed + r (and the Trainer 42 + seed + r)
    until_f1: float | None = None  # time to this dev F1: score dev every eval_every real tokens, stop there
    eval_every: int = 28_000  # real training tokens between dev scores (about a tenth of a CoNLL epoch)
    budget: float | None = None  # training seconds after which a run stops (with until_f1)
    nerbook_config: dict | None = None  # other TrainConfig fields for nerbook's loop (recipe experiments)


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

    default_seed = TrainingArguments.__dataclass_fields__["seed"].default  # 42
    kw = dict(output_dir=out, per_device_train_batch_size=spec.batch_size, num_train_epochs=spec.epochs,
              learning_rate=spec.lr, report_to="none", save_strategy="no", logging_strategy="no",
              disable_tqdm=True, seed=default_seed + spec.seed)  # spec.seed = --seed + repeat
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


def trainer_loop(model, tokenizer, train_ds, spec: TrainSpec, device: str, tuned: bool = False) -> dict:
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
    """:func:`nerbook.train.train` with its defaults, or with ``spec.nerbook_config`` changed (no dev
    set: evaluation is not timed)."""
    from nerbook.train import TrainConfig, train

    settings = dict(epochs=spec.epochs, batch_size=spec.batch_size, lr=spec.lr, seed=spec.seed,
                    max_length=spec.max_length, progress=False)
    cfg = TrainConfig(**{**settings, **(spec.nerbook_config or {})})
    res = train(model, tokenizer, train_ds, None, cfg)
    return {"train_loss": res.history["epochs"][-1]["train_loss"], "model": res.model}


def trainer_tuned_loop(model, tokenizer, train_ds, spec: TrainSpec, device: str) -> dict:
    """:func:`trainer_loop` with the speed flags (``tuned``)."""
    return trainer_loop(model, tokenizer, train_ds, spec, device, tuned=True)


#: Every training contender's loop: ``loop(model, tokenizer, train_ds, spec, device) -> dict``.
CONTENDER_LOOPS = {"nerbook": nerbook_loop, "seed": seed_loop, "trainer": trainer_loop,
                   "trainer-tuned": trainer_tuned_loop}


def plain_model(model):
    """The model without accelerate's autocast wrapper around ``forward`` (evaluation is fp32)."""
    from accelerate.utils import extract_model_from_parallel

    return extract_model_from_parallel(model, keep_fp32_wrapper=False)


def run_train_contender(name: str, spec: TrainSpec) -> dict:
    """Train one contender once: time, tokens, memory, then the dev F1 (not timed)."""
    import torch

    from nerbook.data import load_splits
    from nerbook.model import count_parameters
    from nerbook.train import TrainConfig, evaluate

    loop = CONTENDER_LOOPS.get(name)
    if loop is None:
        raise ValueError(f"unknown contender {name!r}; choose from {', '.join(CONTENDER_LOOPS)}")
    set_threads(spec.threads)
    device = resolve_device(spec.device)
    train_ds, valid_ds, schema = load_splits(spec.train, spec.valid, spec.limit)
    if valid_ds is not None and spec.valid_limit:
        valid_ds = valid_ds.select(range(min(spec.valid_limit, len(valid_ds))))
    seed_everything(spec.seed, deterministic=False)
    model, tokenizer = load_bench_model(spec.model, schema, train_ds["tokens"], spec.seed)
    if device == "cuda":
        model.to(device)
    # the dev scorer's own fp32 copy, made before any hook or wrapper is put on the model
    eval_model = copy.deepcopy(model).eval() if spec.until_f1 is not None else None
    counter = TokenCounter(model, tokenizer.pad_token_id)
    clock = dev_clock(spec, model, eval_model, counter, tokenizer, valid_ds, device)
    with MemoryMeter(device) as mem:
        t0 = time.perf_counter()
        if clock:
            clock.start()
        try:
            out = loop(model, tokenizer, train_ds, spec, device)
            if clock:
                clock.finish()
        except StopRun:
            out = {}
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0 if clock is None else clock.seconds
    counter.remove()
    model = plain_model(out.pop("model", model))
    run = {"seconds": seconds, **counter.totals(), "peak_mem_mb": mem.peak_mb, **out,
           "n_train": len(train_ds), "n_valid": len(valid_ds) if valid_ds is not None else 0,
           "parameters": count_parameters(model),
           "model_flops": model_flops(model, counter.totals()["real_tokens"], counter.totals()["sum_len_sq"])}
    if clock:
        clock.remove()
        run.update(clock.result(), dev_f1=clock.curve[-1]["dev_f1"])
    elif valid_ds is not None and spec.evaluate:
        model.to(device)
        scores = evaluate(model, tokenizer, valid_ds, TrainConfig(max_length=spec.max_length),
                          device=device, precision="fp32")
        run["dev_f1"] = scores["overall"]["f1"]
    return run


def dev_clock(spec: TrainSpec, model, eval_model, counter, tokenizer, valid_ds, device: str) -> DevClock | None:
    """With ``spec.until_f1``, a :class:`DevClock` on ``model`` scoring ``eval_model`` (an fp32
    copy) on the dev set every ``spec.eval_every`` real tokens (with document context when
    ``spec.nerbook_config`` trains with it); else None."""
    if spec.until_f1 is None:
        return None
    if valid_ds is None:
        raise ValueError("time to a dev F1 needs a dev set")
    from nerbook.train import TrainConfig, evaluate

    cfg = TrainConfig(max_length=spec.max_length, doc_context=(spec.nerbook_config or {}).get("doc_context", False))

    def score(m) -> float:
        return evaluate(m, tokenizer, valid_ds, cfg, device=device, precision="fp32")["overall"]["f1"]

    return DevClock(model, eval_model, counter, score, spec.eval_every, spec.until_f1, spec.budget, device)
