"""How wide should a packed row be? (chapter "Making it fast"; issue 18's open lever)

nerbook packs a random batch of windows into rows (:class:`nerbook.batching.PackingCollator`),
each row about ``max(row_length, longest window)`` positions wide with a block-diagonal attention
mask. Packing is exact at any width, so the width changes only the speed: a wide row computes
attention over more positions (its cost grows with the square of the width), a narrow one needs
more rows. This script times MiniLM's forward and backward pass (bf16 autocast where native, the
word embeddings frozen as in training; no optimiser step, so that every setting sees the same
weights) on the same random batches of CoNLL-2003 windows packed at each ``--row-lengths``, beside
two padded references: the same random batches padded to their longest window, and length-grouped
batches of the same windows padded to their longest (what the tuned ``Trainer`` and
``nerbook train --no-packing`` use). The settings take turns, ``--rounds`` times, in a new
(seeded) order every round, and each is reported by the median of its rounds, in real tokens per
second. Two widths that give identical batches (any width up to the longest window) are a control:
their difference is the measurement's noise.

    python bench/pack_width.py PATH/TO/conll2003 --row-lengths 16 32 64 128 \\
        --record records/pack-width-cpu-minilm-conll2003.json

The record's kind is ``"experiment"``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys

import torch

from nerbook.align import WindowConfig, encode_windows
from nerbook.batching import LengthGroupedBatchSampler, PackingCollator, real_tokens, token_collator
from nerbook.bench.contenders import load_bench_model
from nerbook.bench.measure import time_passes
from nerbook.data import load_splits
from nerbook.records import write_record
from nerbook.runtime import resolve_precision
from nerbook.train import freeze_word_embeddings


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", help="a CoNLL training file, or a folder with train.txt")
    p.add_argument("--limit", type=int, default=3000, help="training sentences to draw windows from")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--row-lengths", type=int, nargs="+", default=[16, 32, 64, 128])
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
    grouped = LengthGroupedBatchSampler([len(w["input_ids"]) for w in windows], args.batch_size, seed=0).batches()
    pad = token_collator(tokenizer)

    def padded(rows):
        return pad([{**r, "attention_mask": [1] * len(r["input_ids"])} for r in rows])

    settings = {f"packed, rows of {n}": [PackingCollator(tokenizer, n)(b) for b in drawn] for n in args.row_lengths}
    settings["random batches, padded"] = [padded(b) for b in drawn]
    settings["length-grouped, padded"] = [padded([windows[i] for i in b]) for b in grouped[:args.steps]]
    bf16 = resolve_precision("auto", "cpu") == "bf16"
    for batches in settings.values():  # warm-up: first calls allocate and pick kernels
        time_passes(model, batches[:3], bf16)
    seconds = {name: [] for name in settings}
    order = list(settings)
    for r in range(args.rounds):  # a new order every round: the setting that follows a change of shapes pays for it
        random.Random(r).shuffle(order)
        for name in order:
            seconds[name].append(time_passes(model, settings[name], bf16))
    rows = []
    for name, batches in settings.items():
        real = sum(int(real_tokens(b, tokenizer.pad_token_id)) for b in batches)
        computed = sum(b["input_ids"].numel() for b in batches)
        median = statistics.median(seconds[name])
        rows.append({"setting": name, "real_tokens": real, "computed_positions": computed,
                     "rows_per_batch": statistics.mean(b["input_ids"].shape[0] for b in batches),
                     "seconds": seconds[name], "tokens_per_second": real / median})
    reference = next(r["tokens_per_second"] for r in rows if r["setting"] == "packed, rows of 64")
    for r in rows:
        r["speed_vs_rows_of_64"] = r["tokens_per_second"] / reference
        print(f"{r['setting']:<24} {r['rows_per_batch']:5.1f} rows, {r['computed_positions']:6d} positions for "
              f"{r['real_tokens']} tokens; {r['tokens_per_second']:6.0f} real tokens/s "
              f"({r['speed_vs_rows_of_64']:.2f}x rows of 64)", flush=True)
    if args.record:
        setup = {"model": "offline", "limit": args.limit, "batch_size": args.batch_size, "steps": args.steps,
                 "rounds": args.rounds, "threads": torch.get_num_threads(), "precision": "bf16" if bf16 else "fp32",
                 "note": "forward and backward passes only, same weights throughout; settings take turns; "
                         "tokens per second from the median round"}
        path = write_record(args.record, {"setup": setup, "rows": rows}, data=[args.data], kind="experiment",
                            command=["python", "bench/pack_width.py", *sys.argv[1:]])
        print("wrote", path)


if __name__ == "__main__":
    main()
