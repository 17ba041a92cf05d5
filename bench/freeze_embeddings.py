"""Does freezing the word embeddings cost accuracy? (chapter "Making it fast")

Fine-tunes the offline MiniLM on the first N sentences of a CoNLL folder twice per seed, with the
word embeddings trained and frozen, and prints the dev entity F1 and the training time of each:

    python bench/freeze_embeddings.py PATH/TO/conll2003 --limit 3000 --dev 1000 --lr 1e-4 --seeds 0 1
"""

from __future__ import annotations

import argparse

import torch

from nerbook.data import load_splits
from nerbook.model import load_model
from nerbook.train import TrainConfig, train


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", help="folder with train.txt and valid.txt")
    p.add_argument("--limit", type=int, default=3000, help="training sentences")
    p.add_argument("--dev", type=int, default=1000, help="dev sentences scored")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = p.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    train_ds, valid_ds, schema = load_splits(args.data, None, args.limit)
    valid_ds = valid_ds.select(range(min(args.dev, len(valid_ds))))
    for seed in args.seeds:
        for freeze in (False, True):
            model, tokenizer = load_model("offline", schema, seed=seed)
            cfg = TrainConfig(epochs=args.epochs, batch_size=16, lr=args.lr, seed=seed, progress=False,
                              patience=None, freeze_word_embeddings=freeze)
            res = train(model, tokenizer, train_ds, valid_ds, cfg)
            print(f"seed {seed}, word embeddings {'frozen ' if freeze else 'trained'}: dev F1 "
                  f"{res.best_f1:.4f}, {res.train_seconds:.1f} s of training, "
                  f"{res.trainable_parameters:,} trainable parameters", flush=True)


if __name__ == "__main__":
    main()
