"""How does dev F1 grow with model size, data and compute? (chapter "One recipe, any size", page "Results")

Fine-tunes models on a CoNLL folder with ``nerbook.train.train`` and one recipe (batch 16, no
warm-up, linear decay; the offline MiniLM's lr 2e-4), and scores the full dev set:

- ``depth``: the offline MiniLM truncated to its first 1, 2, 3 and 6 pretrained layers, the whole
  training set, ``--epochs`` epochs (dev F1 after each);
- ``tiny``: tiny BERTs of growing width and depth, random weights and a word-piece vocabulary
  learnt from the training sentences (lr ``--tiny-lr``), same data and epochs;
- ``data``: the full MiniLM on the first 100, 300, 1,000 and 3,000 training sentences, for
  ``--epochs`` epochs but at least ``--min-steps`` optimizer steps (dev F1 of the last model).

Each run's compute is ``C = 6 N T`` (``nerbook.scaling``). ``--record`` writes one record per
family, rewritten after every run, so a killed sweep keeps what it finished:

    python bench/scaling.py PATH/TO/conll2003 --family depth --record records/scaling-depth-cpu-minilm-conll2003.json
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import torch

from nerbook.data import load_splits
from nerbook.model import load_model
from nerbook.records import write_record
from nerbook.runtime import pick_device, scoring_precision
from nerbook.scaling import non_embedding_parameters, training_flops, truncate_layers
from nerbook.train import TrainConfig, evaluate, train

NOTE = ("One seed family on a shared 2-core CPU: times are wall-clock seconds with other jobs running; "
        "dev F1 does not depend on the load. dev_f1 is the last model's (no selection on dev).")
TINY_SHAPES = ((64, 2), (128, 2), (128, 4), (256, 4))  # (hidden, layers); heads = hidden // 32


def one_run(model, tokenizer, train_ds, valid_ds, cfg: TrainConfig, per_epoch: bool) -> dict:
    """Train; return dev F1 of the last model, tokens, compute and the dev F1 after each epoch."""
    n = non_embedding_parameters(model)
    res = train(model, tokenizer, train_ds, valid_ds if per_epoch else None, cfg)
    epochs = res.history["epochs"]
    tokens = [sum(e["real_tokens"] for e in epochs[: i + 1]) for i in range(len(epochs))]
    if per_epoch:
        final = epochs[-1]["dev_f1"]
    else:  # scored as train() scores dev: in the run's precision
        precision = scoring_precision(cfg.mixed_precision, pick_device())
        final = evaluate(res.model, tokenizer, valid_ds, cfg, precision=precision)["overall"]["f1"]
    return {"non_embedding_parameters": n, "epochs": cfg.epochs, "steps": epochs[-1]["step"],
            "tokens": tokens[-1], "flops": training_flops(n, tokens[-1]), "dev_f1": float(final),
            "curve": [{"epoch": e["epoch"], "tokens": t, "flops": training_flops(n, t), "dev_f1": e["dev_f1"]}
                      for e, t in zip(epochs, tokens, strict=True) if "dev_f1" in e],
            "train_seconds": float(res.train_seconds)}


def runs_of(family: str, args, train_ds, valid_ds, schema):
    """Yield ``(label, settings, model, tokenizer, train set, config, per_epoch)`` for each run."""
    recipe = dict(batch_size=16, warmup_ratio=0.0, progress=False, patience=None)
    for seed in args.seeds:
        if family == "depth":
            for keep in args.depths:
                model, tok = load_model("offline", schema, seed=seed)
                yield (f"{keep} layers", {"layers": keep, "n_train": len(train_ds), "seed": seed},
                       truncate_layers(model, keep), tok, train_ds,
                       TrainConfig(epochs=args.epochs, lr=args.lr, seed=seed, **recipe), True)
        elif family == "tiny":
            texts = train_ds["tokens"]
            for hidden, layers in TINY_SHAPES:
                model, tok = load_model("tiny", schema, texts=texts, seed=seed, tiny_kwargs=dict(
                    hidden=hidden, layers=layers, heads=hidden // 32, intermediate=4 * hidden))
                yield (f"tiny {hidden}x{layers}", {"hidden": hidden, "layers": layers, "n_train": len(train_ds),
                                                   "seed": seed}, model, tok, train_ds,
                       TrainConfig(epochs=args.epochs, lr=args.tiny_lr, seed=seed, **recipe), True)
        else:
            for n in args.sizes:
                subset = train_ds.select(range(min(n, len(train_ds))))
                epochs = max(args.epochs, math.ceil(args.min_steps / math.ceil(len(subset) / 16)))
                model, tok = load_model("offline", schema, seed=seed)
                yield (f"{len(subset)} sentences", {"layers": 6, "n_train": len(subset), "seed": seed},
                       model, tok, subset, TrainConfig(epochs=epochs, lr=args.lr, seed=seed, **recipe), False)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", help="folder with train.txt and valid.txt")
    p.add_argument("--family", choices=("depth", "tiny", "data"), required=True)
    p.add_argument("--depths", type=int, nargs="+", default=[1, 2, 3, 6])
    p.add_argument("--sizes", type=int, nargs="+", default=[100, 300, 1000, 3000])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--min-steps", type=int, default=400, help="data family: at least this many steps")
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--tiny-lr", type=float, default=1e-3)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--record", help="write the runs and their provenance to this JSON file")
    p.add_argument("--note", default=NOTE)
    args = p.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    train_ds, valid_ds, schema = load_splits(args.data)
    rows = []
    for label, settings, model, tok, ds, cfg, per_epoch in runs_of(args.family, args, train_ds, valid_ds, schema):
        t0 = time.perf_counter()
        row = {"label": label, **settings, "lr": cfg.lr, **one_run(model, tok, ds, valid_ds, cfg, per_epoch)}
        rows.append(row)
        print(f"{label} (seed {settings['seed']}): dev F1 {row['dev_f1']:.4f}, N {row['non_embedding_parameters']:,}, "
              f"T {row['tokens']:,}, C {row['flops']:.3g}, {time.perf_counter() - t0:.0f} s", flush=True)
        if args.record:
            setup = {"family": args.family, "model": "offline" if args.family != "tiny" else "tiny",
                     "n_dev": len(valid_ds), "batch_size": 16, "warmup_ratio": 0.0, "epochs": args.epochs,
                     "min_steps": args.min_steps if args.family == "data" else None, "seeds": args.seeds,
                     "threads": torch.get_num_threads(), "note": args.note}
            write_record(args.record, {"setup": setup, "runs": rows}, data=[args.data], kind="experiment",
                         command=["python", "bench/scaling.py", *sys.argv[1:]])
    if args.record:
        print("wrote", args.record)


if __name__ == "__main__":
    main()
