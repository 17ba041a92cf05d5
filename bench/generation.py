"""Can a tiny causal LM answer "which entities are in ...?" in text? (for chapter "One recipe,
many tasks"; issue 15, part 2)

Trains the pretraining chapter's tiny GPT (:func:`nerbook.pretrain.tiny_gpt`) to answer with a
sentence's entities (:mod:`nerbook.instruct`) through :func:`nerbook.train.train`, then scores the
greedy answers on dev sentences whose names training never saw. Optionally, the model is first
pretrained (next-token loss) on unlabelled synthetic sentences, a share of which repeat a span of
themselves: text with repeats is where a language model learns to copy, and an answer copies the
names it lists.

    python bench/generation.py --pretrain-steps 1200 --repeat 1.0 --epochs 12 --seeds 0 1 2 \
        --save records/models/tinygpt-answers --record records/generation-pretrained-cpu-tinygpt-synthetic.json
    python bench/generation.py --epochs 12 --seeds 0 1 2 --record records/generation-scratch-cpu-tinygpt-synthetic.json
    python bench/generation.py --tagger --epochs 12 --seeds 0 1 2 --record records/generation-tagger-cpu-tinybert-synthetic.json

Prints, for each seed, the training losses, two example answers and the dev scores of the answers
(entity-set precision, recall, F1 and the share of exactly right answers), then the F1's mean and
standard deviation over the seeds; ``--record FILE`` writes them with their provenance. ``--save DIR``
keeps the first seed's models for chapter "Answers in text": ``DIR/pretrained`` (after next-token
pretraining, before tuning), ``DIR/tuned`` (after instruction tuning) and the tokenizer in ``DIR``,
as safetensors and JSON; the record lists each file's sha256. A seed sets
the model's initial weights and the order of its pretraining and tuning batches; the data, the
vocabulary and the pretraining corpus are the same for every seed.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import torch

from nerbook.data import schema_of, tag_names
from nerbook.instruct import CausalGeneration, answer_scores, entities_of, instruction_pair
from nerbook.model import load_model, quiet_transformers, sha256_file, train_wordpiece
from nerbook.predict import Tagger
from nerbook.pretrain import CausalCollator, PretrainConfig, pretrain, tiny_gpt
from nerbook.records import write_generated_record
from nerbook.spread import format_mean_sd, runs
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


def save(model, folder: Path) -> dict[str, str]:
    """Save ``model`` (safetensors and its config) to ``folder``; the sha256 of each file written."""
    with quiet_transformers():
        model.save_pretrained(folder, safe_serialization=True)
    return {f.as_posix(): sha256_file(f) for f in sorted(folder.iterdir())}


def run(args, ner, tok, corpus, seed: int, save_to: Path | None = None) -> dict:
    """Pretrain (if asked) and instruction-tune one model from ``seed``; score its dev answers.
    With ``save_to``, keep the pretrained and the tuned model there (see :func:`save`)."""
    gpt = tiny_gpt(tok, seed=seed, hidden=args.hidden, layers=args.layers, heads=4,
                   intermediate=2 * args.hidden, dropout=0.0)
    t0 = time.perf_counter()
    pre, saved = None, {}
    if args.pretrain_steps:
        pre = pretrain(gpt, corpus, CausalCollator(tok),
                       PretrainConfig(steps=args.pretrain_steps, batch_size=32, lr=3e-3, warmup_ratio=0.05,
                                      seed=seed))
        saved.update(save(gpt, save_to / "pretrained") if save_to else {})
        print(f"seed {seed} pretraining: {args.pretrain_steps} steps in {pre.seconds:.0f} s, loss "
              f"{pre.losses[0]:.2f} -> {pre.losses[-1]:.2f}", flush=True)
    task = CausalGeneration()
    cfg = TrainConfig(epochs=args.epochs, batch_size=32, lr=args.lr, patience=None, progress=False, max_length=128,
                      seed=seed, mixed_precision="no")
    res = train(gpt, tok, ner["train"], None, cfg, task=task)
    losses = [e["train_loss"] for e in res.history["epochs"]]
    print(f"seed {seed} instruction tuning: loss by epoch {[round(x, 3) for x in losses]} "
          f"({res.train_seconds:.0f} s)")
    saved.update(save(res.model, save_to / "tuned") if save_to else {})
    gold, predicted = task.answers(res.model, tok, ner["valid"])
    for g, q in list(zip(gold, predicted))[1:3]:
        print(f"  gold {dict(g)}\n  said {dict(q)}")
    scores = answer_scores(gold, predicted)
    print(f"seed {seed} dev answers: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()), flush=True)
    return {"seed": seed, "pretrain_losses": pre.losses if pre else None, "tune_losses": losses, "dev": scores,
            "seconds": time.perf_counter() - t0, **({"saved": saved} if saved else {})}


def run_tagger(args, ner, seed: int) -> dict:
    """The same sentences, model size, epochs, batch size and learning rate for a tiny BERT
    tagger (:func:`nerbook.model.load_model` ``"tiny"``), its tags scored as entity sets the way an
    answer is: what generation is compared with."""
    model, tok = load_model("tiny", schema_of(ner["train"]), texts=ner["train"]["tokens"], seed=seed,
                            tiny_kwargs=dict(hidden=args.hidden, layers=args.layers, heads=4,
                                             intermediate=2 * args.hidden))
    cfg = TrainConfig(epochs=args.epochs, batch_size=32, lr=args.lr, patience=None, progress=False, seed=seed,
                      mixed_precision="no")
    t0 = time.perf_counter()
    res = train(model, tok, ner["train"], None, cfg)
    pred, _ = Tagger(res.model, tok, cfg.max_length, cfg.stride).predict_dataset(ner["valid"])
    gold = [entities_of(w, t) for w, t in zip(ner["valid"]["tokens"], tag_names(ner["valid"]))]
    scores = answer_scores(gold, [entities_of(w, t) for w, t in zip(ner["valid"]["tokens"], pred)])
    print(f"seed {seed} tagger dev entity sets: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()), flush=True)
    return {"seed": seed, "tune_losses": [e["train_loss"] for e in res.history["epochs"]], "dev": scores,
            "seconds": time.perf_counter() - t0}


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
    p.add_argument("--seeds", type=int, nargs="+", default=[0],
                   help="one model per seed (its initial weights, the order of its batches)")
    p.add_argument("--tagger", action="store_true",
                   help="train a tiny BERT tagger of the same size instead, scored the same way")
    p.add_argument("--save", help="keep the first seed's pretrained and tuned models and the tokenizer in this folder")
    p.add_argument("--record", help="write the scores and their provenance to this JSON file")
    args = p.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    ner = synthetic_conll(n_train=args.n_train, n_valid=args.n_dev, n_test=0, seed=0, long_fraction=0.0)
    pairs = [sum(instruction_pair(w, t), []) for w, t in zip(ner["train"]["tokens"], tag_names(ner["train"]))]
    tok = train_wordpiece(pairs, vocab_size=args.vocab)
    corpus = corpus_with_repeats(tok, 4000, args.repeat)
    save_to = Path(args.save) if args.save else None
    if save_to:
        if args.tagger or save_to.exists():
            p.error(f"--save {args.save}: " + ("only generating models are saved" if args.tagger else "exists already"))
        tok.save_pretrained(save_to)
    t0 = time.perf_counter()
    rows = [run_tagger(args, ner, seed) if args.tagger else
            run(args, ner, tok, corpus, seed, save_to if seed == args.seeds[0] else None) for seed in args.seeds]
    f1 = runs("dev F1", [r["dev"]["f1"] for r in rows])
    print(f"dev entity-set F1 over seeds {args.seeds}: {format_mean_sd(f1.values)}")
    if args.record:
        result = {"setup": vars(args), "runs": rows, "summary": {"f1_mean": f1.mean, "f1_sd": f1.sd},
                  "seconds": time.perf_counter() - t0}
        if save_to:  # the models' files are listed in their runs
            result["tokenizer"] = {f.as_posix(): sha256_file(f) for f in sorted(save_to.glob("*.json"))}
        texts = ({"pretraining-corpus.txt": "\n".join(tok.decode(ids) for ids in corpus)}
                 if args.pretrain_steps and not args.tagger else {})
        print("wrote", write_generated_record(args.record, result, {"synthetic": ner}, texts,
                                              command=["python", "bench/generation.py", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
