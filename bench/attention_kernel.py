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
import statistics
import sys

from nerbook.batching import PackingCollator, real_tokens
from nerbook.bench.turns import (
    add_turn_arguments,
    take_turns,
    time_passes,
    training_windows,
    turn_setup,
)
from nerbook.records import write_record
from nerbook.switches import set_attention, set_dropout


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_turn_arguments(p)
    p.add_argument("--attention-dropout", type=float, default=0.0, help="the rate timed beside the model's own")
    args = p.parse_args()
    model, tokenizer, _, drawn, bf16 = training_windows(args)
    batches = {kernel: [PackingCollator(tokenizer, 64, float_mask=kernel == "eager")(b) for b in drawn]
               for kernel in ("sdpa", "eager")}
    own = model.config.attention_probs_dropout_prob
    settings = {f"{kernel}, attention dropout {rate:g}": (kernel, rate)
                for kernel in ("sdpa", "eager") for rate in (own, args.attention_dropout)}

    def run(name: str, first: int | None) -> float:
        kernel, rate = settings[name]
        set_attention(model, kernel)
        set_dropout(model, rate, attention_only=True)
        return time_passes(model, batches[kernel][:first], bf16)

    seconds = take_turns(list(settings), run, args.rounds)
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
        setup = turn_setup(args, bf16, row_length=64, hidden_dropout=model.config.hidden_dropout_prob,
                           note="forward and backward passes only, same weights and packed batches throughout; "
                                "settings take turns in a new order every round; tokens per second from the median round")
        path = write_record(args.record, {"setup": setup, "rows": rows}, data=[args.data], kind="experiment",
                            command=["python", "bench/attention_kernel.py", *sys.argv[1:]])
        print("wrote", path)


if __name__ == "__main__":
    main()
