"""Which attention kernel trains fastest on a CPU? (chapter "Making it fast"; issue 18's lever)

transformers' BERT computes attention with torch's ``scaled_dot_product_attention`` ("sdpa") by
default, or with the matrix products and softmax written out ("eager"). On a CPU, sdpa's fused
kernel does not take dropout, so in training (attention dropout 0.1) it falls back to its plain
path. This script times MiniLM's forward and backward pass (bf16 autocast where native, word
embeddings frozen as in training, no optimiser step, so every setting sees the same weights) on
the same random batches of CoNLL-2003 windows, packed into rows of 64 as nerbook trains (a boolean
block-diagonal mask for sdpa, the same mask as additive floats for eager), for each kernel with
the model's attention dropout and without it (``--attention-dropout``; the hidden states keep
theirs). The settings take turns, ``--rounds`` times, in a new (seeded) order every round; each is
reported by the median of its rounds, in real tokens per second, and as a ratio to sdpa with the
model's dropout (transformers' default, and nerbook's before this measurement).

    python bench/attention_kernel.py PATH/TO/conll2003 --rounds 8 \\
        --record records/attention-kernel-cpu-minilm-conll2003.json

The record's kind is ``"experiment"``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys

import torch

from nerbook.align import WindowConfig, encode_windows
from nerbook.batching import PackingCollator, real_tokens
from nerbook.bench.contenders import load_bench_model
from nerbook.bench.measure import time_passes
from nerbook.data import load_splits
from nerbook.records import write_record
from nerbook.runtime import resolve_precision
from nerbook.switches import set_attention, set_dropout
from nerbook.train import freeze_word_embeddings


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", help="a CoNLL training file, or a folder with train.txt")
    p.add_argument("--limit", type=int, default=3000, help="training sentences to draw windows from")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--attention-dropout", type=float, default=0.0, help="the rate timed beside the model's own")
    p.add_argument("--steps", type=int, default=30, help="batches per setting and round")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--record", help="write the measurements and their provenance to this JSON file")
    args = p.parse_args()
    torch.set_num_threads(min(args.threads, torch.get_num_threads()))
    train_ds, _, schema = load_splits(args.data, None, args.limit)
    torch.manual_seed(0)
    model, tokenizer = load_bench_model("offline", schema, train_ds["tokens"], seed=0)
    freeze_word_embeddings(model)
    model.train()
    windows = encode_windows(train_ds, tokenizer, WindowConfig()).select_columns(["input_ids", "labels"]).to_list()
    rng = random.Random(0)
    drawn = [rng.sample(windows, args.batch_size) for _ in range(args.steps)]
    batches = {kernel: [PackingCollator(tokenizer, 64, float_mask=kernel == "eager")(b) for b in drawn]
               for kernel in ("sdpa", "eager")}
    own = model.config.attention_probs_dropout_prob
    settings = {f"{kernel}, attention dropout {rate:g}": (kernel, rate)
                for kernel in ("sdpa", "eager") for rate in (own, args.attention_dropout)}
    bf16 = resolve_precision("auto", "cpu") == "bf16"

    def run(name: str, first: int | None = None) -> float:
        kernel, rate = settings[name]
        set_attention(model, kernel)
        set_dropout(model, rate, attention_only=True)
        return time_passes(model, batches[kernel][:first], bf16)

    for name in settings:  # warm-up: first calls allocate and pick kernels
        run(name, 3)
    seconds = {name: [] for name in settings}
    order = list(settings)
    for r in range(args.rounds):  # a new order every round: the setting that follows a change pays for it
        random.Random(r).shuffle(order)
        for name in order:
            seconds[name].append(run(name))
    real = sum(int(real_tokens(b, tokenizer.pad_token_id)) for b in batches["sdpa"])
    reference = statistics.median(seconds[f"sdpa, attention dropout {own:g}"])
    rows = []
    for name, (kernel, rate) in settings.items():
        median = statistics.median(seconds[name])
        rows.append({"setting": name, "kernel": kernel, "attention_dropout": rate, "real_tokens": real,
                     "seconds": seconds[name], "tokens_per_second": real / median,
                     "speed_vs_sdpa_with_dropout": reference / median})
        print(f"{name:<32} {real / median:6.0f} real tokens/s ({reference / median:.2f}x sdpa with dropout {own:g})",
              flush=True)
    if args.record:
        setup = {"model": "offline", "limit": args.limit, "batch_size": args.batch_size, "steps": args.steps,
                 "rounds": args.rounds, "threads": torch.get_num_threads(), "precision": "bf16" if bf16 else "fp32",
                 "row_length": 64, "hidden_dropout": model.config.hidden_dropout_prob,
                 "note": "forward and backward passes only, same weights and packed batches throughout; settings "
                         "take turns in a new order every round; tokens per second from the median round"}
        path = write_record(args.record, {"setup": setup, "rows": rows}, data=[args.data], kind="experiment",
                            command=["python", "bench/attention_kernel.py", *sys.argv[1:]])
        print("wrote", path)


if __name__ == "__main__":
    main()
