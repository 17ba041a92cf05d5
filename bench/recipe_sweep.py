"""The fine-tuning recipe chapter's two measurements over several seeds (chapter "The fine-tuning
recipe").

The chapter trains seed 0 of each setting live; this script repeats every setting for every
seed, with the chapter's settings and data:

- **learning-rate sweep**: full fine-tuning of the offline MiniLM at 5e-5, 5e-4 and 5e-3, on the
  first 80 of 200 synthetic training sentences, 2 epochs in batches of 8 (windows of 64 pieces,
  stride 16), no dev pass while training, then the entity F1 on 100 dev sentences whose names
  training never saw;
- **head only**: the same sentences, the encoder frozen, lr 3e-2, batches of 16, up to 10 epochs
  with patience 1 on the dev F1.

    python bench/recipe_sweep.py --seeds 0 1 2 3 4 --record records/recipe-sweep-cpu-minilm-synthetic.json

One thread, as the chapter (which pins it for steadier timings). The record (kind
``"experiment"``) holds every run; the data is generated, so its provenance is the sha256 of the
generated splits, written as CoNLL files.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

import torch

from nerbook.data import CONLL2003
from nerbook.model import load_model
from nerbook.records import write_generated_record
from nerbook.synthetic import synthetic_conll
from nerbook.train import TrainConfig, evaluate, train

RATES = (5e-5, 5e-4, 5e-3)
#: The chapter's sweep settings (its ``base``) and its head-only changes to them.
BASE = TrainConfig(epochs=2, batch_size=8, patience=None, progress=False, max_length=64, stride=16)
HEAD = {"lr": 3e-2, "epochs": 10, "patience": 1, "freeze_encoder": True, "batch_size": 16}
N_SWEEP = 80
NOTE = ("Seconds are wall-clock on one thread, measured while other jobs may have shared the machine: "
        "read them as noisy. The F1 values do not depend on the load.")


def sweep_run(data, lr: float, seed: int) -> dict:
    """One full fine-tuning run of the sweep, as the chapter's sweep cell does it."""
    model, tok = load_model("offline", CONLL2003, seed=seed)
    res = train(model, tok, data["train"].select(range(N_SWEEP)), None, dataclasses.replace(BASE, lr=lr, seed=seed))
    f1 = evaluate(res.model, tok, data["valid"], BASE)["overall"]["f1"]
    epochs = res.history["epochs"]
    return {"setting": "full", "lr": lr, "seed": seed, "dev_f1": f1, "train_loss": [e["train_loss"] for e in epochs],
            "steps": epochs[-1]["step"], "seconds_per_epoch": [e["seconds"] for e in epochs]}


def head_run(data, seed: int) -> dict:
    """One head-only run with early stopping, as the chapter's head-only cell does it."""
    model, tok = load_model("offline", CONLL2003, seed=seed)
    res = train(model, tok, data["train"].select(range(N_SWEEP)), data["valid"],
                dataclasses.replace(BASE, seed=seed, **HEAD))
    epochs = res.history["epochs"]
    return {"setting": "head", "lr": HEAD["lr"], "seed": seed, "best_dev_f1": res.best_f1,
            "best_epoch": res.best_epoch, "stopped_early": res.stopped_early,
            "dev_f1_by_epoch": [e["dev_f1"] for e in epochs], "seconds_per_epoch": [e["seconds"] for e in epochs],
            "trainable_parameters": res.trainable_parameters}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--record", help="write the runs and their provenance to this JSON file")
    args = p.parse_args()
    torch.set_num_threads(1)  # as the chapter
    data = synthetic_conll(n_train=200, n_valid=100, n_test=100, seed=0)  # the chapter's data
    t0 = time.perf_counter()
    rows = []
    for seed in args.seeds:
        for lr in RATES:
            rows.append(sweep_run(data, lr, seed))
            print(f"seed {seed} lr {lr:.0e}: dev F1 {rows[-1]['dev_f1']:.4f}", flush=True)
        rows.append(head_run(data, seed))
        r = rows[-1]
        print(f"seed {seed} head only: best dev F1 {r['best_dev_f1']:.4f} (epoch {r['best_epoch']} of "
              f"{len(r['dev_f1_by_epoch'])})", flush=True)
    result = {"setup": {"model": "offline", "n_train": N_SWEEP, "n_valid": 100, "data_seed": 0, "rates": list(RATES),
                        "sweep": {k: getattr(BASE, k) for k in ("epochs", "batch_size", "max_length", "stride")},
                        "head": HEAD, "seeds": args.seeds, "threads": torch.get_num_threads()},
              "runs": rows, "seconds": time.perf_counter() - t0, "note": NOTE}
    if args.record:
        print("wrote", write_generated_record(args.record, result, {"synthetic": data},
                                              command=["python", "bench/recipe_sweep.py", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
