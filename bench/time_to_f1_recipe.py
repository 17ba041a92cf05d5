"""Which part of nerbook's recipe decides how soon it reaches a dev F1? (chapter "Making it fast")

``nerbook bench train --until-f1`` times nerbook and the tuned ``Trainer`` to the same dev entity
F1. Their recipes differ in more than speed: nerbook warms the learning rate up over the first
10% of the steps and keeps the word embeddings frozen; the ``Trainer`` starts at the full rate
and trains every weight. This script trains nerbook with one of those changed at a time, and
measures the real training tokens each variant needs to reach the target. Tokens, unlike
seconds, do not depend on what else the machine is doing, so the variants run side by side, one
thread each:

    python bench/time_to_f1_recipe.py PATH/TO/conll2003 --target 0.88 --seeds 0 1 --jobs 2 \\
        --record records/time-to-f1-recipe-cpu-minilm-conll2003.json

The dev set is scored every ``--eval-every`` real tokens, as by the benchmark. The record's kind is
``"experiment"``; its seconds are noisy (shared cores), its tokens are not.
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from multiprocessing import get_context

from nerbook.bench.contenders import TrainSpec, run_train_contender
from nerbook.records import write_record

#: The recipe ``nerbook train --model offline`` adopted on a CPU (``nerbook.cli.train.OFFLINE_RECIPE``
#: then; runs use ``--epochs 4``), as TrainConfig settings. Written out, not imported: a variant's
#: name must keep meaning what its records measured.
OFFLINE_DEFAULT = {"batch_size": 64, "lr": 4e-4, "warmup_ratio": 0.0, "attention": "eager", "attention_dropout": 0.0}
#: The variants: nerbook's TrainConfig with one setting changed (``default``: none).
VARIANTS = {"default": {}, "no-warmup": {"warmup_ratio": 0.0},
            "trained-embeddings": {"freeze_word_embeddings": False},
            # larger batches, no warm-up, the peak lr scaled with the square root of the batch
            "batch-32": {"batch_size": 32, "lr": 2.8e-4, "warmup_ratio": 0.0},
            "batch-64": {"batch_size": 64, "lr": 4e-4, "warmup_ratio": 0.0},
            "batch-64-lr2e-4": {"batch_size": 64, "lr": 2e-4, "warmup_ratio": 0.0},
            # no dropout during fine-tuning (its random masks cost time on a CPU), no warm-up
            "no-dropout": {"warmup_ratio": 0.0, "dropout": 0.0},
            # length-grouped, dynamically padded batches instead of packed rows (as the Trainer), no warm-up
            "no-pack": {"warmup_ratio": 0.0, "packing": False},
            # the eager attention kernel (bench/attention_kernel.py: faster on a CPU), no warm-up
            "eager": {"warmup_ratio": 0.0, "attention": "eager"},
            # and without dropout on the attention weights (the hidden states keep theirs)
            "eager-no-attention-dropout": {"warmup_ratio": 0.0, "attention": "eager", "attention_dropout": 0.0},
            # the same with batches of 64 at the same peak lr (bench train --batch-size 64's recipe)
            "batch-64-eager-no-attention-dropout": {"batch_size": 64, "lr": 2e-4, "warmup_ratio": 0.0,
                                                    "attention": "eager", "attention_dropout": 0.0},
            # and at the peak lr scaled with the square root of the batch (4e-4): nerbook train's recipe since
            "batch-64-eager-lr4e-4": OFFLINE_DEFAULT,
            # that recipe with label smoothing 0.1
            "batch-64-eager-lr4e-4-smooth0.1": {**OFFLINE_DEFAULT, "label_smoothing": 0.1},
            # with layer-wise learning-rate decay 0.9 (the head at 4e-4, each layer below at 0.9 times the one above)
            "batch-64-eager-lr4e-4-llrd0.9": {**OFFLINE_DEFAULT, "layer_decay": 0.9},
            # the weights averaged over the last quarter of the steps
            "batch-64-eager-lr4e-4-avg0.75": {**OFFLINE_DEFAULT, "average_from": 0.75},
            # each sentence read inside its document (windows filled with the sentences around it; dev too)
            "batch-64-eager-lr4e-4-doc": {**OFFLINE_DEFAULT, "doc_context": True}}


def one(args: tuple[str, TrainSpec]) -> dict:
    name, spec = args
    run = run_train_contender("nerbook", spec)
    return {"variant": name, "seed": spec.seed, "config": spec.nerbook_config,
            **{k: run[k] for k in ("seconds_to_f1", "tokens_to_f1", "best_f1", "reason", "seconds", "curve",
                                   "real_tokens")}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", help="folder with train.txt and valid.txt")
    p.add_argument("--target", type=float, default=0.88)
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated: " + ", ".join(VARIANTS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--eval-every", type=int, default=28_000)
    p.add_argument("--budget", type=float, default=1200.0, help="training seconds per run")
    p.add_argument("--limit", type=int, help="first N training sentences (a quick check)")
    p.add_argument("--valid-limit", type=int, help="first N dev sentences (a quick check)")
    p.add_argument("--jobs", type=int, default=2, help="runs side by side, one thread each")
    p.add_argument("--record", help="write the runs and their provenance to this JSON file")
    args = p.parse_args()
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        p.error(f"--variants: unknown {unknown}; choose from {', '.join(VARIANTS)}")
    specs = [(name, TrainSpec(train=args.data, model="offline", limit=args.limit, valid_limit=args.valid_limit,
                              epochs=args.epochs, lr=args.lr, seed=seed, threads=1, until_f1=args.target,
                              eval_every=args.eval_every, budget=args.budget, nerbook_config=VARIANTS[name]))
             for seed in args.seeds for name in names]
    with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
        rows = []
        for row in pool.map(one, specs):
            rows.append(row)
            print(f"{row['variant']:<20} seed {row['seed']}: {row['reason']}, tokens to F1 {args.target}: "
                  f"{row['tokens_to_f1']}, best F1 {row['best_f1']:.4f} ({row['seconds_to_f1']} s, shared cores)",
                  flush=True)
    if args.record:
        setup = {**{k: v for k, v in asdict(specs[0][1]).items() if k not in ("seed", "nerbook_config", "repeat")},
                 "variants": {n: VARIANTS[n] for n in names}, "seeds": args.seeds, "jobs": args.jobs,
                 "note": "tokens to the target do not depend on the load; seconds are wall-clock on shared cores"}
        path = write_record(args.record, {"setup": setup, "runs": rows}, data=[args.data], kind="experiment",
                            command=["python", "bench/time_to_f1_recipe.py", *sys.argv[1:]])
        print("wrote", path)


if __name__ == "__main__":
    main()
