"""Where does a training step's time go? (chapter "Making it fast")

MFU compares the model's useful FLOPs per second with the rate of large (1024 x 1024) matrix
products. This script splits the gap in two, for nerbook's training step (MiniLM, packed batches,
bf16 autocast where native, fused AdamW, word embeddings frozen) at each ``--batch-sizes``, with
the model's own dropout or each rate of ``--dropout`` (``model``: the model's own):

1. how fast the matrix products run at the model's own shapes: every ``nn.Linear`` of the model
   as a ``(tokens x in) @ (in x out)`` product, with ``tokens`` the mean computed tokens of a
   batch, timed in bf16 (or fp32 where bf16 is not native) next to the 1024 x 1024 product;
2. which share of the step's operator time is matrix products, and where the rest goes: the
   dropout masks' random numbers, dtype casts, the optimiser, everything else (``torch.profiler``,
   self CPU time of each operator, summed by kind).

    python bench/step_profile.py PATH/TO/conll2003 --batch-sizes 16 64 \\
        --record records/step-profile-cpu-minilm-conll2003.json
    python bench/step_profile.py PATH/TO/conll2003 --batch-sizes 16 64 --dropout model 0 \\
        --record records/step-profile-dropout-cpu-minilm-conll2003.json
    python bench/step_profile.py PATH/TO/conll2003 --batch-sizes 16 64 --attention eager \\
        --attention-dropout 0 --record records/step-profile-eager-cpu-minilm-conll2003.json

``--attention`` and ``--attention-dropout`` set the attention kernel and the dropout on the
attention weights alone (``nerbook.switches``), as ``nerbook train --model offline`` does on a CPU.

The shares are of operator time under the profiler, which adds its own overhead; tokens per
second are timed without it. The record's kind is ``"experiment"``.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time

import torch

from nerbook.align import WindowConfig, encode_windows
from nerbook.batching import PackingCollator
from nerbook.bench.contenders import load_bench_model
from nerbook.bench.measure import TokenCounter, linear_gemm_rate, matmul_tflops, model_flops
from nerbook.cli.train import share
from nerbook.data import load_splits
from nerbook.records import write_record
from nerbook.runtime import resolve_precision
from nerbook.train import TrainConfig, make_loader, make_optimizer, run_settings

#: Operator kinds, by the first pattern that an ATen operator's name matches.
KINDS = {"matrix products": ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::_scaled_dot"),
         "dropout masks": ("aten::bernoulli", "aten::native_dropout", "aten::rand"),
         "dtype casts": ("aten::copy_", "aten::_to_copy"),
         "optimiser": ("aten::_fused_adamw", "aten::_foreach")}


def kind_of(name: str) -> str:
    """The kind of an operator (:data:`KINDS`), or ``other``."""
    for kind, prefixes in KINDS.items():
        if name.startswith(prefixes):
            return kind
    return "other"


def step_profile(model, tokenizer, train_ds, cfg: TrainConfig, warmup: int, steps: int) -> dict:
    """Time ``steps`` training steps (after ``warmup``), then profile as many again, with the
    model set for the run as ``nerbook.train`` sets it (:func:`~nerbook.train.run_settings`: word
    embeddings frozen, ``cfg``'s dropout, attention dropout and attention kernel)."""
    run_settings(model, cfg)
    model.train()
    batch_size = cfg.batch_size
    loader, _ = make_loader(encode_windows(train_ds, tokenizer, WindowConfig()), tokenizer, cfg,
                            PackingCollator.for_model(model, tokenizer))
    batches = list(loader)
    if len(batches) < warmup + 2 * steps:
        raise SystemExit(f"--limit gives {len(batches)} batches of {batch_size}; "
                         f"need {warmup + 2 * steps}: raise --limit or lower --steps")
    optimizer = make_optimizer(model, cfg, "cpu")
    bf16 = resolve_precision("auto", "cpu") == "bf16"

    def step(batch) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for batch in batches[:warmup]:
        step(batch)
    timed = batches[warmup:warmup + steps]
    counter = TokenCounter(model, tokenizer.pad_token_id)
    start = time.perf_counter()
    for batch in timed:
        step(batch)
    seconds = time.perf_counter() - start
    counter.remove()
    totals = counter.totals()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for batch in batches[warmup + steps:warmup + 2 * steps]:
            step(batch)
    by_kind: dict[str, float] = {}
    for event in prof.key_averages():
        by_kind[kind_of(event.key)] = by_kind.get(kind_of(event.key), 0.0) + event.self_cpu_time_total
    total = sum(by_kind.values())
    return {"batch_size": batch_size, "steps": steps, "seconds": seconds,
            "real_tokens": totals["real_tokens"], "computed_tokens": totals["computed_tokens"],
            "tokens_per_second": totals["real_tokens"] / seconds,
            "computed_tokens_per_batch": totals["computed_tokens"] / len(timed),
            "model_tflops": model_flops(model, totals["real_tokens"], totals["sum_len_sq"]) / seconds / 1e12,
            "precision": "bf16" if bf16 else "fp32",
            "operator_share": {k: v / total for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])}}


def dropout_rate(text: str) -> float | str:
    """An argparse ``type``: ``model`` or a rate in [0, 1) (``nerbook train --dropout``'s)."""
    return text if text == "model" else share(text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", help="a CoNLL training file, or a folder with train.txt")
    p.add_argument("--model", default="offline", help="offline (MiniLM), bert-base-random, or a path")
    p.add_argument("--limit", type=int, default=3000, help="training sentences to draw batches from")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 64])
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    p.add_argument("--steps", type=int, default=20, help="timed steps, then as many profiled")
    p.add_argument("--dropout", nargs="+", default=["model"], type=dropout_rate,
                   help="dropout rates to profile, each a number in [0, 1) or 'model' (the model's own)")
    p.add_argument("--attention", choices=("model", "eager", "sdpa"), default="model",
                   help="the attention kernel (model: the model's own)")
    p.add_argument("--attention-dropout", default="model", type=dropout_rate,
                   help="dropout on the attention weights alone, a number in [0, 1) or 'model'")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (the machines this book runs on have 2)")
    p.add_argument("--record", help="write the measurements and their provenance to this JSON file")
    args = p.parse_args()
    torch.set_num_threads(min(args.threads, torch.get_num_threads()))
    train_ds, _, schema = load_splits(args.data, None, args.limit)
    rows = []
    for batch_size, dropout in itertools.product(args.batch_sizes, args.dropout):
        torch.manual_seed(0)
        model, tokenizer = load_bench_model(args.model, schema, train_ds["tokens"], seed=0)
        own = lambda value: None if value == "model" else value  # noqa: E731  (None: the model's own)
        cfg = TrainConfig(batch_size=batch_size, lr=1e-4, seed=0, freeze_word_embeddings=True, dropout=own(dropout),
                          attention=own(args.attention), attention_dropout=own(args.attention_dropout))
        row = {"dropout": dropout, **step_profile(model, tokenizer, train_ds, cfg, args.warmup, args.steps)}
        tokens = round(row["computed_tokens_per_batch"])
        row["matmul_tflops"] = {"1024": {d: matmul_tflops("cpu", d) for d in ("fp32", "bf16")},
                                "model_shapes": {d: linear_gemm_rate(model, tokens, d, backward=False)
                                                 for d in ("fp32", "bf16")}}
        ref = row["matmul_tflops"]
        row["mfu"] = {f"{where}_{d}": row["model_tflops"] / ref[where][d] for where in ref for d in ref[where]}
        rows.append(row)
        shares = ", ".join(f"{k} {100 * v:.0f}%" for k, v in row["operator_share"].items())
        print(f"batch {batch_size}, dropout {dropout}: {row['tokens_per_second']:.0f} real tokens/s, model "
              f"{1e3 * row['model_tflops']:.0f} GFLOP/s; bf16 products at the model's shapes "
              f"({tokens} x 384...) {1e3 * ref['model_shapes']['bf16']:.0f} GFLOP/s, at 1024 "
              f"{1e3 * ref['1024']['bf16']:.0f}; operator time: {shares}", flush=True)
    if args.record:
        setup = {"model": args.model, "limit": args.limit, "threads": torch.get_num_threads(),
                 "warmup": args.warmup, "steps": args.steps,
                 "dropout": args.dropout, "attention": args.attention, "attention_dropout": args.attention_dropout,
                 "note": "one process, one setting after the other; shares are of profiled operator time"}
        path = write_record(args.record, {"setup": setup, "rows": rows}, data=[args.data], kind="experiment",
                            command=["python", "bench/step_profile.py", *sys.argv[1:]])
        print("wrote", path)


if __name__ == "__main__":
    main()
