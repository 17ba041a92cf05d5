"""Which learning rate should ``nerbook train`` use when none is given? (chapter "Fine-tuning and
evaluation")

Runs ``nerbook train --model offline`` exactly as a user types it, each run in its own process,
on the first ``--limit`` CoNLL-2003 training sentences for ``--epochs`` epochs, once per learning
rate and seed, and keeps each run's best dev entity F1 (the full dev file):

    python bench/lr_defaults.py PATH/TO/conll2003 --limit 1000 --epochs 3 \\
        --lrs 5e-5 1e-4 2e-4 5e-4 1e-3 --seeds 0 1 --record records/lr-defaults-cpu-minilm-conll2003.json

The record (kind ``"experiment"``) holds every run, the mean +- sd of each learning rate over
the seeds, the best one, and whether its lead over each other rate exceeds the seed-to-seed
spread (:mod:`nerbook.spread`: the ranges of the runs do not overlap).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from nerbook.records import write_record
from nerbook.spread import compare, exceeds_spread, format_mean_sd, runs


def train_once(data: str, lr: float, seed: int, limit: int, epochs: int, out: Path) -> dict:
    """One ``nerbook train --json`` run in a fresh process; what it printed, plus the wall time."""
    cmd = [sys.executable, "-m", "nerbook", "train", "--train", data, "--model", "offline", "--out", str(out),
           "--limit", str(limit), "--epochs", str(epochs), "--lr", str(lr), "--seed", str(seed), "--json"]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"lr {lr} seed {seed}: nerbook train failed:\n{done.stderr[-2000:]}")
    return {**json.loads(done.stdout), "wall_seconds": time.perf_counter() - start}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", help="folder with CoNLL-2003 train.txt and valid.txt")
    p.add_argument("--limit", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--lrs", type=float, nargs="+", default=[5e-5, 1e-4, 2e-4, 5e-4, 1e-3])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--record", help="write the runs and their provenance to this JSON file")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:  # seeds outermost: a partial sweep still covers every rate
            for lr in args.lrs:
                r = train_once(args.data, lr, seed, args.limit, args.epochs, Path(tmp) / f"{lr}-{seed}")
                rows.append({"lr": lr, "seed": seed, "dev_f1": r["dev_f1"], "best_epoch": r["best_epoch"],
                             "train_seconds": r["train_seconds"], "wall_seconds": r["wall_seconds"]})
                print(f"lr {lr:g} seed {seed}: dev F1 {r['dev_f1']:.4f} (epoch {r['best_epoch']}, "
                      f"{r['train_seconds']:.0f} s training)", flush=True)
    per_lr = {lr: [r["dev_f1"] for r in rows if r["lr"] == lr] for lr in args.lrs}
    best = max(per_lr, key=lambda lr: sum(per_lr[lr]) / len(per_lr[lr]))
    summary = [{"lr": lr, "dev_f1": f1s, "mean_sd": format_mean_sd(f1s)} for lr, f1s in per_lr.items()]
    verdicts = [{"lr": lr, "best_exceeds_spread": exceeds_spread(runs(f"lr {best:g}", per_lr[best]), runs(f"lr {lr:g}", f1s)),
                 "sentence": compare(runs(f"lr {best:g}", per_lr[best]), runs(f"lr {lr:g}", f1s))}
                for lr, f1s in per_lr.items() if lr != best]
    for s in summary:
        print(f"lr {s['lr']:<8g} dev F1 {s['mean_sd']}")
    for v in verdicts:
        print(v["sentence"])
    result = {"setup": {"model": "offline", "limit": args.limit, "epochs": args.epochs, "lrs": args.lrs,
                        "seeds": args.seeds, "command": "nerbook train --model offline --limit N --epochs E "
                        "--lr LR --seed S (other options at their defaults), one process per run",
                        "selection": "best dev entity F1 over the epochs of each run (the checkpoint "
                                     "nerbook train keeps); learning rates compared on their mean over the seeds"},
              "runs": rows, "summary": summary, "best_lr": best, "best_vs_others": verdicts}
    if args.record:
        data = Path(args.data)
        path = write_record(args.record, result, data=[data / "train.txt", data / "valid.txt"], kind="experiment",
                            command=["python", "bench/lr_defaults.py", *sys.argv[1:]])
        print("wrote", path)


if __name__ == "__main__":
    main()
