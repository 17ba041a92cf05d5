"""Does replay stop a tagger from forgetting its first domain? (chapter "Deployment")

Fine-tunes the offline MiniLM on domain A (the synthetic newswire of :mod:`nerbook.synthetic`),
then continues from those weights on domain B (the social-media and tech posts of
:mod:`nerbook.continual`): on B alone, and on B plus a share of replayed A sentences. Every
model is scored on both domains' test sentences (names unseen in training), for each seed:

    python bench/continual.py --n-train 400 --n-test 200 --epochs 3 --lr 5e-4 \\
        --shares 0 0.25 0.5 --seeds 0 1 2 --record records/continual-cpu-minilm-synthetic.json

The record (kind ``"experiment"``) holds every run, the mean +- sd of each stage and share over
the seeds, and whether replay's gain exceeds the seed-to-seed spread (:mod:`nerbook.spread`:
the ranges of the runs do not overlap). The data is generated, not downloaded: its provenance
is the sha256 of the generated splits, written as CoNLL files.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from nerbook.continual import continual_experiment, synthetic_domain_splits
from nerbook.records import write_generated_record
from nerbook.spread import compare, exceeds_spread, format_mean_sd, runs
from nerbook.synthetic import synthetic_conll
from nerbook.train import TrainConfig

NOTE = ("Seconds are wall-clock, measured while other jobs shared the machine's cores: read them as "
        "noisy. The F1 values do not depend on the load.")


def summarise(all_rows: list[dict]) -> list[dict]:
    """One row per (stage, share): old and new F1 as mean +- sd over the seeds, and the runs."""
    keys = list(dict.fromkeys((r["stage"], r["share"]) for r in all_rows))
    out = []
    for stage, share in keys:
        rows = [r for r in all_rows if (r["stage"], r["share"]) == (stage, share)]
        f1_old, f1_new = [r["f1_old"] for r in rows], [r["f1_new"] for r in rows]
        out.append({"stage": stage, "share": share, "f1_old": f1_old, "f1_new": f1_new,
                    "f1_old_mean_sd": format_mean_sd(f1_old), "f1_new_mean_sd": format_mean_sd(f1_new)})
    return out


def verdicts(summary: list[dict]) -> list[dict]:
    """Each replay share against no replay: old-domain F1 (forgetting) and new-domain F1."""
    base = next(s for s in summary if s["stage"] == "A->B" and s["share"] == 0.0)
    out = []
    for s in summary:
        if s["stage"] != "A->B" or s["share"] == 0.0:
            continue
        row = {"share": s["share"]}
        for key in ("f1_old", "f1_new"):
            with_replay, without = runs(f"replay {s['share']}", s[key]), runs("no replay", base[key])
            row[key] = {"gain": with_replay.mean - without.mean, "exceeds_spread": exceeds_spread(with_replay, without),
                        "sentence": compare(with_replay, without)}
        out.append(row)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-train", type=int, default=400, help="training sentences of each domain")
    p.add_argument("--n-test", type=int, default=200, help="test sentences of each domain")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--shares", type=float, nargs="+", default=[0.0, 0.25, 0.5])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--record", help="write the runs and their provenance to this JSON file")
    args = p.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    splits = {"a": synthetic_conll(args.n_train, 0, args.n_test, seed=0),
              "b": synthetic_domain_splits(args.n_train, 0, args.n_test, seed=0)}
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, max_length=args.max_length,
                      stride=16, patience=None, progress=False)
    t0 = time.perf_counter()
    experiments = []
    for seed in args.seeds:
        out = continual_experiment("offline", splits["a"], splits["b"], cfg, args.shares, seed)
        for r in out["rows"]:
            print(f"seed {seed} {r['stage']:4s} share {r['share']!s:4s}: old F1 {r['f1_old']:.4f}, "
                  f"new F1 {r['f1_new']:.4f} ({r['seconds']:.0f} s)", flush=True)
        experiments.append(out)
    summary = summarise([r for e in experiments for r in e["rows"]])
    print(f"\n{'stage':6s} {'share':6s} {'old F1 (A test)':18s} new F1 (B test)")
    for s in summary:
        print(f"{s['stage']:6s} {s['share']!s:6s} {s['f1_old_mean_sd']:18s} {s['f1_new_mean_sd']}")
    result = {"setup": {"model": "offline", "n_train": args.n_train, "n_test": args.n_test, "epochs": args.epochs,
                        "lr": args.lr, "batch_size": args.batch_size, "max_length": args.max_length, "stride": 16,
                        "shares": args.shares, "seeds": args.seeds, "data_seed": 0, "dev_selection": None,
                        "threads": torch.get_num_threads()},
              "experiments": experiments, "summary": summary, "replay_vs_none": verdicts(summary),
              "seconds": time.perf_counter() - t0, "note": NOTE}
    for v in result["replay_vs_none"]:
        print(f"old domain, {v['f1_old']['sentence']}")
        print(f"new domain, {v['f1_new']['sentence']}")
    if args.record:
        print("wrote", write_generated_record(args.record, result, {f"domain-{d}": dd for d, dd in splits.items()},
                                              command=["python", "bench/continual.py", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
