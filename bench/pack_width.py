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
import statistics
import sys

from nerbook.batching import LengthGroupedBatchSampler, PackingCollator, real_tokens, token_collator
from nerbook.bench.turns import (
    add_turn_arguments,
    take_turns,
    time_passes,
    training_windows,
    turn_setup,
)
from nerbook.records import write_record


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_turn_arguments(p)
    p.add_argument("--row-lengths", type=int, nargs="+", default=[16, 32, 64, 128])
    args = p.parse_args()
    model, tokenizer, windows, drawn, bf16 = training_windows(args)
    grouped = LengthGroupedBatchSampler([len(w["input_ids"]) for w in windows], args.batch_size, seed=0).batches()
    pad = token_collator(tokenizer)

    def padded(rows):
        return pad([{**r, "attention_mask": [1] * len(r["input_ids"])} for r in rows])

    settings = {f"packed, rows of {n}": [PackingCollator(tokenizer, n)(b) for b in drawn] for n in args.row_lengths}
    settings["random batches, padded"] = [padded(b) for b in drawn]
    settings["length-grouped, padded"] = [padded([windows[i] for i in b]) for b in grouped[:args.steps]]
    seconds = take_turns(list(settings), lambda name, first: time_passes(model, settings[name][:first], bf16),
                         args.rounds)
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
        setup = turn_setup(args, bf16, note="forward and backward passes only, same weights throughout; settings "
                                            "take turns; tokens per second from the median round")
        path = write_record(args.record, {"setup": setup, "rows": rows}, data=[args.data], kind="experiment",
                            command=["python", "bench/pack_width.py", *sys.argv[1:]])
        print("wrote", path)


if __name__ == "__main__":
    main()
