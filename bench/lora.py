"""LoRA against full fine-tuning over several seeds, on the LoRA chapter's data and budget
(chapter "LoRA").

The chapter trains one seed of each method live; this script repeats both for every seed, with
the chapter's settings: the offline MiniLM, 400 synthetic training sentences, one epoch in
batches of 4, full fine-tuning at lr 3e-4, LoRA (rank 8 on the query and value projections,
alpha 16) at lr 5e-3, and the best dev entity F1 on 300 dev sentences whose names training never
saw:

    python bench/lora.py --seeds 0 1 2 3 4 --record records/lora-cpu-minilm-synthetic.json

The record (kind ``"experiment"``) holds every run, each method's mean +- sd, and whether the gap
exceeds the seed-to-seed spread (:mod:`nerbook.spread`: the ranges of the runs do not overlap).
The data is generated, not downloaded: its provenance is the sha256 of the generated splits,
written as CoNLL files.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from nerbook.data import schema_of
from nerbook.lora import add_lora
from nerbook.model import load_model
from nerbook.records import write_generated_record
from nerbook.spread import compare, exceeds_spread, format_mean_sd, runs
from nerbook.synthetic import synthetic_conll
from nerbook.train import TrainConfig, train

#: The chapter's two methods: (LoRA rank or None for full fine-tuning, learning rate).
METHODS = {"full": (None, 3e-4), "lora": (8, 5e-3)}
NOTE = ("Seconds are wall-clock, measured while other jobs shared the machine's cores: read them as "
        "noisy. The F1 values do not depend on the load.")


def run(method: str, data, seed: int, epochs: int, batch_size: int) -> dict:
    """One seed of one method, as the chapter's ``run`` does it."""
    rank, lr = METHODS[method]
    model, tokenizer = load_model("offline", schema_of(data["train"]), seed=seed)
    if rank:
        add_lora(model, r=rank, alpha=2.0 * rank)
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, max_length=64, stride=16, mixed_precision="auto",
                      patience=None, progress=False, seed=seed)
    res = train(model, tokenizer, data["train"], data["valid"], cfg)
    return {"method": method, "seed": seed, "lr": lr, "rank": rank, "best_dev_f1": res.best_f1,
            "dev_f1_by_epoch": [e["dev_f1"] for e in res.history["epochs"]],
            "trainable_parameters": res.trainable_parameters, "seconds": res.train_seconds}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--record", help="write the runs and their provenance to this JSON file")
    args = p.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))  # as the chapter
    data = synthetic_conll(n_train=400, n_valid=300, n_test=300, seed=0)  # the chapter's data
    t0 = time.perf_counter()
    rows = []
    for seed in args.seeds:
        for method in METHODS:
            rows.append(run(method, data, seed, args.epochs, args.batch_size))
            r = rows[-1]
            print(f"seed {seed} {method:4s}: best dev F1 {r['best_dev_f1']:.4f} ({r['seconds']:.0f} s)", flush=True)
    arms = {m: runs(m, [r["best_dev_f1"] for r in rows if r["method"] == m]) for m in METHODS}
    summary = {m: {"mean": a.mean, "sd": a.sd, "mean_sd": format_mean_sd(a.values)} for m, a in arms.items()}
    verdict = {"gap": arms["lora"].mean - arms["full"].mean,
               "exceeds_spread": exceeds_spread(arms["lora"], arms["full"]),
               "sentence": compare(arms["lora"], arms["full"])}
    print(verdict["sentence"])
    result = {"setup": {"model": "offline", "n_train": 400, "n_valid": 300, "epochs": args.epochs,
                        "batch_size": args.batch_size, "max_length": 64, "stride": 16, "lora_rank": 8,
                        "lora_alpha": 16.0, "lr": {m: lr for m, (_, lr) in METHODS.items()}, "seeds": args.seeds,
                        "data_seed": 0, "threads": torch.get_num_threads()},
              "runs": rows, "summary": summary, "lora_vs_full": verdict,
              "seconds": time.perf_counter() - t0, "note": NOTE}
    if args.record:
        print("wrote", write_generated_record(args.record, result, {"synthetic": data},
                                              command=["python", "bench/lora.py", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
