"""Can a tiny causal LM answer "which entities are in ...?" in text? (for chapter "One recipe,
many tasks"; issue 15, part 2)

Trains the pretraining chapter's tiny GPT (:func:`nerbook.pretrain.tiny_gpt`) to answer with a
sentence's entities (:mod:`nerbook.instruct`) through :func:`nerbook.train.train`, then scores the
greedy answers on dev sentences whose names training never saw. Optionally, the model is first
pretrained (next-token loss) on unlabelled synthetic sentences, a share of which repeat a span of
themselves: text with repeats is where a language model learns to copy, and an answer copies the
names it lists.

    python bench/generation.py --pretrain-steps 1200 --repeat 1.0 --epochs 6

Prints the training losses, two example answers and the dev scores of the answers (entity-set
precision, recall, F1 and the share of exactly right answers); ``--record FILE`` writes them with
their provenance.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import torch

from nerbook.data import tag_names
from nerbook.instruct import CausalGeneration, answer_scores, instruction_pair
from nerbook.model import train_wordpiece
from nerbook.pretrain import CausalCollator, PretrainConfig, pretrain, tiny_gpt
from nerbook.records import generated_data_files, write_record
from nerbook.synthetic import synthetic_conll, synthetic_sentences
from nerbook.train import TrainConfig, train


def corpus_with_repeats(tokenizer, n: int, repeat: float, seed: int = 0) -> list[list[int]]:
    """``n`` unlabelled synthetic sentences as token ids; a share ``repeat`` of them end with a
    copy of one of their own spans of 2 to 8 tokens."""
    rng = random.Random(seed)
    out = []
    for s in synthetic_sentences(n, "train", seed=1, long_fraction=0.0):
        ids = tokenizer(list(s.tokens), is_split_into_words=True, add_special_tokens=False)["input_ids"][:60]
        if rng.random() < repeat:
            i = rng.randrange(len(ids))
            ids = ids + ids[i:min(len(ids), i + rng.randint(2, 8))]
        out.append([tokenizer.cls_token_id, *ids, tokenizer.sep_token_id])
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-train", type=int, default=2000, help="instruction pairs (tagged synthetic sentences)")
    p.add_argument("--n-dev", type=int, default=200)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--pretrain-steps", type=int, default=0, help="next-token pretraining first (0: none)")
    p.add_argument("--repeat", type=float, default=1.0, help="share of pretraining sentences with a repeat")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--vocab", type=int, default=600)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--record", help="write the scores and their provenance to this JSON file")
    args = p.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    ner = synthetic_conll(n_train=args.n_train, n_valid=args.n_dev, n_test=0, seed=0, long_fraction=0.0)
    pairs = [sum(instruction_pair(w, t), []) for w, t in zip(ner["train"]["tokens"], tag_names(ner["train"]))]
    tok = train_wordpiece(pairs, vocab_size=args.vocab)
    gpt = tiny_gpt(tok, seed=args.seed, hidden=args.hidden, layers=args.layers, heads=4,
                   intermediate=2 * args.hidden, dropout=0.0)
    t0 = time.perf_counter()
    pre, corpus = None, corpus_with_repeats(tok, 4000, args.repeat)
    if args.pretrain_steps:
        pre = pretrain(gpt, corpus, CausalCollator(tok),
                       PretrainConfig(steps=args.pretrain_steps, batch_size=32, lr=3e-3, warmup_ratio=0.05))
        print(f"pretraining: {args.pretrain_steps} steps in {pre.seconds:.0f} s, loss {pre.losses[0]:.2f} -> "
              f"{pre.losses[-1]:.2f}", flush=True)
    task = CausalGeneration()
    cfg = TrainConfig(epochs=args.epochs, batch_size=32, lr=args.lr, patience=None, progress=False, max_length=128,
                      seed=args.seed, mixed_precision="no")
    res = train(gpt, tok, ner["train"], None, cfg, task=task)
    losses = [e["train_loss"] for e in res.history["epochs"]]
    print(f"instruction tuning: loss by epoch {[round(x, 3) for x in losses]} ({res.train_seconds:.0f} s)")
    gold, predicted = task.answers(res.model, tok, ner["valid"])
    for g, q in list(zip(gold, predicted))[1:3]:
        print(f"  gold {dict(g)}\n  said {dict(q)}")
    scores = answer_scores(gold, predicted)
    print("dev answers: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))
    if args.record:
        result = {"setup": vars(args), "pretrain_losses": pre.losses if pre else None, "tune_losses": losses,
                  "dev": scores, "seconds": time.perf_counter() - t0}
        with tempfile.TemporaryDirectory() as tmp:  # the generated data, for its sha256
            files = generated_data_files(tmp, ner)
            if args.pretrain_steps:
                files.append(Path(tmp) / "pretraining-corpus.txt")
                files[-1].write_text("\n".join(tok.decode(ids) for ids in corpus), encoding="utf-8")
            print("wrote", write_record(args.record, result, data=files, kind="experiment",
                                        command=["python", "bench/generation.py", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
