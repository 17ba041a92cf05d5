"""Does the tagger find every person equally well, and does training on diverse names help?
(chapter "Safety and ethics")

1. Audits a checkpoint (e.g. MiniLM fine-tuned on the full CoNLL-2003 training set): person
   recall per name origin on :data:`nerbook.bias.AUDIT_TEMPLATES`, with cluster-bootstrap
   intervals, and the best-worst gap.
2. The mitigation, measured over seeds: fine-tunes the offline MiniLM on the first N training
   sentences as they are, and with half of their persons renamed across origins
   (:func:`nerbook.bias.diversify_person_names`, names disjoint from the audited ones), then
   audits each model and scores it on the dev sentences.

    python bench/bias.py PATH/TO/conll2003 --model runs/conll-minilm-trained/best \\
        --limit 2000 --seeds 0 1 2 --record records/bias-cpu-minilm-conll2003.json
"""

from __future__ import annotations

import argparse
import sys

import torch

from nerbook.bias import audit_dataset, bias_report, diversify_person_names, origin_names
from nerbook.data import load_splits
from nerbook.model import load_model
from nerbook.predict import Tagger
from nerbook.records import write_record
from nerbook.train import TrainConfig, train


def audit(tagger: Tagger, audit_ds, n_boot: int) -> dict:
    """The bias report, printed one line per origin."""
    rep = bias_report(tagger, audit_ds, n_boot=n_boot, seed=0)
    for r in rep["origins"]:
        print(f"  {r['origin']:24s} recall {r['recall']:.3f} [{r['low']:.3f}, {r['high']:.3f}]", flush=True)
    g = rep["gap"]
    print(f"  gap {g['value']:.3f} ({g['best']} - {g['worst']}) [{g['low']:.3f}, {g['high']:.3f}]", flush=True)
    return rep


def run_one(args, train_ds, dev_ds, audit_ds, schema, train_names, mitigated: bool, seed: int) -> dict:
    """Fine-tune one model (with or without renamed persons), audit it and score it on dev."""
    data = diversify_person_names(train_ds, train_names, rate=args.rate, seed=seed) if mitigated else train_ds
    model, tokenizer = load_model("offline", schema, seed=seed)
    cfg = TrainConfig(epochs=args.epochs, batch_size=16, lr=args.lr, seed=seed, progress=False, patience=None)
    res = train(model, tokenizer, data, None, cfg)
    tagger = Tagger(res.model, tokenizer, cfg.max_length, cfg.stride, batch_size=64)
    print(f"{'diverse names' if mitigated else 'as is':13s} seed {seed}", flush=True)
    rep = audit(tagger, audit_ds, args.n_boot)
    return {"mitigated": mitigated, "seed": seed, "dev_f1": tagger.score(dev_ds)["overall"]["f1"], "audit": rep}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", help="folder with train.txt and valid.txt")
    p.add_argument("--model", help="a checkpoint to audit first (e.g. trained on the full training set)")
    p.add_argument("--limit", type=int, default=2000, help="training sentences of the mitigation runs")
    p.add_argument("--dev", type=int, default=1000, help="dev sentences scored")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--rate", type=float, default=0.5, help="share of training persons renamed")
    p.add_argument("--per-origin", type=int, default=80, help="names drawn per origin (split audit/train)")
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--record", help="write the results and their provenance to this JSON file")
    args = p.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    names = origin_names(per_origin=args.per_origin, seed=0)
    audit_ds = audit_dataset({o: v["audit"] for o, v in names.items()})
    train_names = {o: v["train"] for o, v in names.items()}
    result = {"setup": {"origins": {o: {"audit": len(v["audit"]), "train": len(v["train"])} for o, v in names.items()},
                        "audit_sentences": len(audit_ds), "n_boot": args.n_boot, "limit": args.limit,
                        "epochs": args.epochs, "lr": args.lr, "rate": args.rate, "seeds": args.seeds,
                        "dev": args.dev, "model": args.model}}
    if args.model:
        print("checkpoint", args.model, flush=True)
        result["checkpoint"] = audit(Tagger.from_checkpoint(args.model, batch_size=64), audit_ds, args.n_boot)
    train_ds, dev_ds, schema = load_splits(args.data, None, args.limit)
    dev_ds = dev_ds.select(range(min(args.dev, len(dev_ds))))
    result["runs"] = [run_one(args, train_ds, dev_ds, audit_ds, schema, train_names, mitigated, seed)
                      for seed in args.seeds for mitigated in (False, True)]
    if args.record:
        path = write_record(args.record, result, data=[args.data], kind="experiment",
                            command=["python", "bench/bias.py", *sys.argv[1:]])
        print("wrote", path)


if __name__ == "__main__":
    main()
