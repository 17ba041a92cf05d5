"""Does freezing the word embeddings cost accuracy? (chapter "Making it fast")

Fine-tunes the offline MiniLM on the first N sentences of a CoNLL folder twice per seed, with the
word embeddings trained and frozen, and prints the dev entity F1 and the training time of each;
``--record`` writes them, with their provenance, to a JSON record the chapter reads:

    python bench/freeze_embeddings.py PATH/TO/conll2003 --limit 3000 --dev 1000 --lr 1e-4 --seeds 0 1 2 \\
        --record records/freeze-embeddings-cpu-minilm-conll2003.json

The record's kind is ``"experiment"``: the results page, which tabulates ``"train"`` and ``"bench"``
records, leaves it alone. Its times are wall-clock seconds on whatever else the machine was doing;
the F1 values do not depend on that.
"""

from __future__ import annotations

import argparse
import sys

import torch

from nerbook.data import load_splits
from nerbook.model import load_model
from nerbook.records import write_record
from nerbook.train import TrainConfig, train

NOTE = ("Times are wall-clock seconds measured while other jobs shared the machine's cores: "
        "read them as noisy. The dev F1 values do not depend on the load.")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", help="folder with train.txt and valid.txt")
    p.add_argument("--limit", type=int, default=3000, help="training sentences")
    p.add_argument("--dev", type=int, default=1000, help="dev sentences scored")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--record", help="write the runs and their provenance to this JSON file")
    p.add_argument("--note", default=NOTE, help="what the record should say about its conditions")
    args = p.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    train_ds, valid_ds, schema = load_splits(args.data, None, args.limit)
    valid_ds = valid_ds.select(range(min(args.dev, len(valid_ds))))
    rows = []
    for seed in args.seeds:
        for freeze in (False, True):
            model, tokenizer = load_model("offline", schema, seed=seed)
            cfg = TrainConfig(epochs=args.epochs, batch_size=16, lr=args.lr, seed=seed, progress=False,
                              patience=None, freeze_word_embeddings=freeze)
            res = train(model, tokenizer, train_ds, valid_ds, cfg)
            epochs = res.history["epochs"]
            steps = epochs[-1]["step"]
            step_seconds = sum(e["seconds"] for e in epochs)  # the training passes, without scoring dev
            rows.append({"seed": seed, "word_embeddings": "frozen" if freeze else "trained",
                         "dev_f1": float(res.best_f1), "train_seconds": float(res.train_seconds),
                         "steps": int(steps), "seconds_per_step": step_seconds / steps,
                         "trainable_parameters": int(res.trainable_parameters)})
            print(f"seed {seed}, word embeddings {'frozen ' if freeze else 'trained'}: dev F1 "
                  f"{res.best_f1:.4f}, {res.train_seconds:.1f} s of training "
                  f"({1000 * step_seconds / steps:.0f} ms per step), "
                  f"{res.trainable_parameters:,} trainable parameters", flush=True)
    if args.record:
        setup = {"model": "offline", "n_train": len(train_ds), "n_dev": len(valid_ds), "epochs": args.epochs,
                 "batch_size": 16, "lr": args.lr, "seeds": args.seeds, "threads": torch.get_num_threads(),
                 "note": args.note}
        path = write_record(args.record, {"setup": setup, "runs": rows}, data=[args.data], kind="experiment",
                            command=["python", "bench/freeze_embeddings.py", *sys.argv[1:]])
        print("wrote", path)


if __name__ == "__main__":
    main()
