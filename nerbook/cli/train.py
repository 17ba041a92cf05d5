"""``nerbook train``: fine-tune a model on CoNLL data (chapter "Fine-tuning and evaluation")."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nerbook.cli.common import CliError, positive

#: ``nerbook train``'s recipe for the offline MiniLM where the command line leaves it out: batches of
#: 64 windows for 4 epochs at a peak learning rate of 4e-4, with no warm-up. On a CPU it trains with the
#: eager attention kernel, which computes the same model and ran faster than sdpa on the same packed
#: batches, and without dropout on the attention weights (the hidden states keep theirs), which ran
#: faster still, needed no more tokens to dev F1 0.88 and ended within the seed-to-seed spread of the
#: runs with it, above them (:data:`ATTENTION_RECORDS`). How the rest was measured, in order (chapter
#: "Making it fast"): with batches of 16, 2e-4 had the best mean dev F1 of the sweep in
#: :data:`LR_RECORD`; without the warm-up nerbook reached dev F1 0.88 in fewer tokens in every seed of
#: :data:`TTF_RECORD` and ended as high after 3 epochs (:data:`RECIPE_RECORDS`). Batches of 64 at that
#: rate reached 0.88 sooner but ended lower in every seed after 3 epochs and after 4; at the rate scaled
#: with the square root of the batch (2e-4 x 2 = 4e-4), 4 epochs of batches of 64 ended as high as 3 of
#: batches of 16, and reached 0.88 1.5 times sooner than the tuned Trainer at the same batch and rate in
#: both repeats (:data:`BATCH_RECORDS`).
OFFLINE_RECIPE = {"epochs": 4, "batch_size": 64, "lr": 4e-4, "warmup_ratio": 0.0, "dropout": None,
                  "attention": "eager", "attention_dropout": 0.0}
#: The learning-rate sweep (``bench/lr_defaults.py``: 1,000 sentences, 3 epochs, 2 seeds).
LR_RECORD = "records/lr-defaults-cpu-minilm-conll2003.json"
#: Tokens to dev F1 0.88, with and without the warm-up (``bench/time_to_f1_recipe.py``).
TTF_RECORD = "records/time-to-f1-recipe-cpu-minilm-conll2003.json"
#: Final dev F1 of whole runs, with and without the warm-up (``bench/time_to_f1_recipe.py``).
RECIPE_RECORDS = ("records/recipe-final-f1-cpu-minilm-conll2003.json",
                  "records/recipe-final-f1-no-warmup-cpu-minilm-conll2003.json")
#: The attention kernel's speed (``bench/attention_kernel.py``), tokens to dev F1 0.88 with it and the
#: final dev F1 of whole runs without the attention weights' dropout (``bench/time_to_f1_recipe.py``).
ATTENTION_RECORDS = ("records/attention-kernel-cpu-minilm-conll2003.json",
                     "records/time-to-f1-attention-cpu-minilm-conll2003.json",
                     "records/recipe-final-f1-eager-no-attention-dropout-cpu-minilm-conll2003.json")
#: Batches of 64: time to dev F1 0.88 against the tuned Trainer at the same batch size and rate
#: (``nerbook bench train``) and the final dev F1 of whole runs (``bench/time_to_f1_recipe.py``), at 2e-4
#: for 3 and 4 epochs, then at 4e-4 for 4 epochs (the default).
BATCH_RECORDS = ("records/bench-time-to-f1-cpu-minilm-conll2003-batch64.json",
                 "records/recipe-final-f1-batch-64-eager-cpu-minilm-conll2003.json",
                 "records/recipe-final-f1-batch-64-eager-4epochs-cpu-minilm-conll2003.json",
                 "records/bench-time-to-f1-cpu-minilm-conll2003-batch64-lr4e-4.json",
                 "records/recipe-final-f1-batch-64-eager-lr4e-4-4epochs-cpu-minilm-conll2003.json")
#: ``--task classify`` with the offline MiniLM keeps the recipe NER used before its batches of 64 (3 epochs
#: of batches of 16 at 2e-4): the batch-64 runs were NER runs on 14,041 sentences, and on a small
#: classification set (the 1,257 BBC headlines of chapter "One recipe, many tasks") a batch of 64 makes
#: 20 steps an epoch. Nothing here measured it for classification.
OFFLINE_CLASSIFY_RECIPE = {**OFFLINE_RECIPE, "epochs": 3, "batch_size": 16, "lr": 2e-4}
#: For every other model (BERT-base and the like): 3 epochs of batches of 16 at 5e-5 (the top of the
#: range Devlin et al. (2019) recommend for fine-tuning BERT) with a warm-up over 10% of the steps; not
#: measured here.
OTHER_RECIPE = {"epochs": 3, "batch_size": 16, "lr": 5e-5, "warmup_ratio": 0.1, "dropout": None, "attention": None,
                "attention_dropout": None}


def default_recipe(model: str, resume: str | None = None, task: str = "ner") -> dict:
    """Epochs, batch size, peak learning rate, warm-up share, dropout and attention kernel that ``nerbook
    train`` uses where the command line does not say: an interrupted run's own when resuming (so
    that a resumed run ends as it would have), else by model and task (:data:`OFFLINE_RECIPE`,
    :data:`OFFLINE_CLASSIFY_RECIPE`, :data:`OTHER_RECIPE`). The eager attention kernel only where
    training runs on a CPU, where it was measured; elsewhere the model's own."""
    from nerbook.runtime import pick_device

    offline = OFFLINE_CLASSIFY_RECIPE if task == "classify" else OFFLINE_RECIPE
    recipe = dict(offline if model == "offline" else OTHER_RECIPE)
    if recipe["attention"] == "eager" and pick_device() != "cpu":
        recipe["attention"] = None
    if resume:
        from nerbook.model import read_checkpoint_meta

        saved = read_checkpoint_meta(resume).get("train_config", {})
        recipe.update({k: saved[k] for k in recipe if saved.get(k) is not None})
    return recipe


def add_parser(sub) -> None:
    t = sub.add_parser("train", help="fine-tune a model on CoNLL data",
                       description="Fine-tune a model on CoNLL data; the best model (dev entity F1) goes to OUT/best.",
                       epilog="The offline MiniLM's default epochs, batch size, learning rate, warm-up, attention kernel and "
                              "attention dropout were measured on "
                              "CoNLL-2003 (chapter 'Making it fast'): "
                              + ", ".join((LR_RECORD, TTF_RECORD, *RECIPE_RECORDS, *ATTENTION_RECORDS, *BATCH_RECORDS)))
    t.add_argument("--task", choices=["ner", "classify"], default="ner",
                   help="ner (default): CoNLL files, a tag per word; classify: label<TAB>text files (train.tsv "
                        "and valid.tsv in a folder), a label per text, the same loop with a classification head")
    t.add_argument("--train", required=True, help="CoNLL file, or folder with train.txt (and valid.txt); "
                                                   "with --task classify, a .tsv file or a folder with train.tsv")
    t.add_argument("--valid", help="dev file (default: valid.txt, or valid.tsv, next to the training file "
                                   "when --train is a folder)")
    t.add_argument("--model", default="offline", help="hub id, local folder, 'offline' (MiniLM-L6) or 'tiny'")
    t.add_argument("--out", required=True,
                   help="output folder (best/ and last/ go there); must be new or empty, unless --overwrite or --resume")
    add_recipe_arguments(t)
    t.add_argument("--max-length", type=positive(int), default=128, help="window size in subwords")
    t.add_argument("--stride", type=positive(int, 0), default=32, help="overlap of windows of long sentences")
    t.add_argument("--doc-context", action="store_true", help="fill windows with the document's neighbouring sentences")
    t.add_argument("--precision", default="auto", choices=["auto", "no", "bf16", "fp16"])
    t.add_argument("--patience", type=positive(int, 0), default=2, help="early stopping patience in epochs")
    t.add_argument("--train-embeddings", action="store_true",
                   help="also train the word embeddings (kept as pretrained by default; always trained for 'tiny')")
    t.add_argument("--no-packing", dest="packing", action="store_false",
                   help="length-grouped padded batches instead of random batches packed into rows")
    t.add_argument("--label-all-subwords", action="store_true",
                   help="label a word's later subwords I-X too (for serving with transformers' pipeline, "
                        "which tags every piece the tokenizer splits a word into)")
    t.add_argument("--adversarial", choices=["fgm", "pgd"],
                   help="adversarial training in embedding space: FGM (one extra pass per step) or PGD "
                        "(--adv-steps extra passes); see nerbook.adversarial")
    t.add_argument("--adv-eps", type=positive(float), metavar="EPS",
                   help="L2 size of the perturbation of each word's embedding (default 0.1, the best of "
                        "0.1, 0.3 and 1.0 in records/adversarial-cpu-minilm-conll2003.json; MiniLM's word "
                        "embeddings have norm about 1); needs --adversarial")
    t.add_argument("--adv-steps", type=positive(int), metavar="K",
                   help="PGD's steps (default 3); needs --adversarial pgd")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--limit", type=positive(int), help="use the first N training sentences")
    again = t.add_mutually_exclusive_group()
    again.add_argument("--resume", metavar="OUT/last",
                       help="continue an interrupted run from its OUT/last folder (its model, tokenizer and "
                            "labels; --model is not read): training restarts at the epoch boundary after the "
                            "last finished epoch, and with the same other arguments ends as the run would have")
    again.add_argument("--overwrite", action="store_true",
                       help="train into a non-empty --out: its best/ and last/ are deleted first")
    t.add_argument("--json", action="store_true", help="print a JSON record (the progress bars, drawn only "
                   "when stderr is a terminal, are then off too)")
    t.add_argument("--record", help="also write the JSON with provenance (hardware, versions, data hash) here")
    t.set_defaults(func=run, show=show)


def add_recipe_arguments(t) -> None:
    """--epochs, --batch-size, --grad-accum, --lr, --warmup-ratio, --attention, --dropout, --attention-dropout:
    their defaults depend on the model."""
    recipe = ("(default: {offline} for --model offline, measured for NER: see below; {other} for other models; "
              "with --resume, the interrupted run's)")
    t.add_argument("--epochs", type=positive(int), help="passes over the training set " + recipe.format(
        offline=OFFLINE_RECIPE["epochs"], other=OTHER_RECIPE["epochs"]) + f"; --task classify with --model offline: "
        f"{OFFLINE_CLASSIFY_RECIPE['epochs']} epochs of batches of {OFFLINE_CLASSIFY_RECIPE['batch_size']} at "
        f"{OFFLINE_CLASSIFY_RECIPE['lr']:g}, not measured")
    t.add_argument("--batch-size", type=positive(int), help="windows per batch " + recipe.format(
        offline=OFFLINE_RECIPE["batch_size"], other=OTHER_RECIPE["batch_size"]) + "; for the offline MiniLM on a "
        "CPU, 64 at 4e-4 reached dev F1 0.88 sooner than 16 at 2e-4 and ended as high")
    t.add_argument("--grad-accum", type=positive(int), default=1)
    t.add_argument("--lr", type=positive(float), help="peak learning rate " + recipe.format(
        offline=f"{OFFLINE_RECIPE['lr']:g}", other=f"{OTHER_RECIPE['lr']:g}, the top of the range Devlin et al. "
        "(2019) recommend for fine-tuning BERT"))
    t.add_argument("--warmup-ratio", type=share, metavar="R", help="share of the steps over which the learning "
                   "rate rises to its peak " + recipe.format(offline=OFFLINE_RECIPE["warmup_ratio"],
                                                              other=OTHER_RECIPE["warmup_ratio"]))
    t.add_argument("--attention", choices=["eager", "sdpa"], help="attention kernel while training " + recipe.format(
        offline="eager on a CPU, measured", other="the model's own (sdpa in transformers' BERT)"))
    own = "the model's own, 0.1 in BERT and MiniLM"
    t.add_argument("--dropout", type=share, metavar="P", help="rate of every dropout layer while training " + recipe.format(
        offline=OFFLINE_RECIPE["dropout"] if OFFLINE_RECIPE["dropout"] is not None else own,
        other=OTHER_RECIPE["dropout"] if OTHER_RECIPE["dropout"] is not None else own))
    t.add_argument("--attention-dropout", type=share, metavar="P", help="rate of the dropout on the attention "
                   "weights alone (BERT-style models), after --dropout " + recipe.format(
                       offline=OFFLINE_RECIPE["attention_dropout"], other=own))


def run(args: argparse.Namespace) -> dict:
    from nerbook.checkpoint import check_state_folder
    from nerbook.data import load_splits
    from nerbook.model import load_model
    from nerbook.runtime import seed_everything
    from nerbook.train import TrainConfig, evaluate, train

    check_adversarial(args)
    check_out(Path(args.out), args.overwrite, args.resume)
    if args.resume:
        check_state_folder(args.resume)
    seed_everything(args.seed, deterministic=False)
    if args.task == "classify":
        from nerbook.cli.classify import classify_inputs

        train_ds, valid_ds, model, tokenizer, task = classify_inputs(args)
    else:
        train_ds, valid_ds, schema = load_splits(args.train, args.valid, args.limit)
        if args.resume:
            model, tokenizer = resumed_model(args.resume, schema)
        else:
            model, tokenizer = load_model(args.model, schema, texts=train_ds["tokens"], seed=args.seed)
        check_window(tokenizer, args.max_length, args.stride)
        task = None
    for key, value in default_recipe(args.model, args.resume, args.task).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    check_attention(model, args.attention, args.attention_dropout)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, warmup_ratio=args.warmup_ratio,
                      dropout=args.dropout, attention=args.attention, attention_dropout=args.attention_dropout,
                      max_length=args.max_length, stride=args.stride, doc_context=args.doc_context,
                      seed=args.seed, mixed_precision=args.precision, patience=args.patience,
                      grad_accum=args.grad_accum, progress=not args.json and sys.stderr.isatty(), packing=args.packing,
                      freeze_word_embeddings=False if args.train_embeddings else None,
                      label_all_subwords=args.label_all_subwords, adversarial=args.adversarial,
                      **{k: v for k, v in (("adv_eps", args.adv_eps), ("adv_steps", args.adv_steps)) if v})
    res = train(model, tokenizer, train_ds, valid_ds, cfg, out_dir=args.out, resume_from=args.resume, task=task)
    result = {"dev_f1": res.best_f1 if valid_ds is not None else None, "best_epoch": res.best_epoch,
              "stopped_early": res.stopped_early, "epochs": res.history["epochs"],
              "out": str(Path(args.out) / "best"), "train_seconds": res.train_seconds,
              "trainable_parameters": res.trainable_parameters, "n_train": len(train_ds),
              "n_valid": len(valid_ds) if valid_ds is not None else 0, "model": args.model,
              "config": {k: v for k, v in vars(args).items() if k not in ("func", "show")}}
    if res.model is not None and valid_ds is not None:
        result["dev_scores"] = (evaluate(res.model, tokenizer, valid_ds, cfg, token_level=True) if task is None
                                else task.score(res.model, tokenizer, valid_ds, cfg, None, "fp32"))
    if args.record:
        from nerbook.records import write_record

        write_record(args.record, result, [p for p in (args.train, args.valid) if p], kind="train")
    return result


def share(text: str) -> float:
    """An argparse ``type``: a number in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def check_out(out: Path, overwrite: bool, resume: str | None) -> None:
    """``--out`` must be a new or empty folder, unless ``--resume`` continues the run in it or
    ``--overwrite`` (which deletes the old ``best/`` and ``last/``: no stale weights survive)."""
    import shutil

    if out.exists() and not out.is_dir():
        raise CliError(f"--out {out}: is a file, not a folder")
    if not out.is_dir() or resume or not any(out.iterdir()):
        return
    if not overwrite:
        raise CliError(f"--out {out}: is not empty (an earlier run?); use --overwrite to replace it, "
                       "--resume OUT/last to continue it, or another folder")
    for old in [out / "best", out / "last", *out.glob(".best.*"), *out.glob(".last.*")]:
        if old.is_dir():
            shutil.rmtree(old)


def check_attention(model, kernel: str | None, dropout: float | None) -> None:
    """``--attention`` must name a kernel the model can switch to, and ``--attention-dropout`` needs
    a BERT-style attention dropout (both tried, then put back); else a :class:`CliError`."""
    from nerbook.switches import set_attention, set_dropout

    for flag, value, change in (("--attention", kernel, set_attention),
                                ("--attention-dropout", dropout, lambda m, v: set_dropout(m, v, attention_only=True))):
        if value is not None:
            try:
                change(model, change(model, value))
            except ValueError as e:
                raise CliError(f"{flag} {value}: {e}") from None


def check_adversarial(args: argparse.Namespace) -> None:
    """``--adv-eps`` and ``--adv-steps`` mean something only with ``--adversarial`` (steps: PGD)."""
    if args.adversarial is None and (args.adv_eps or args.adv_steps):
        raise CliError(f"--{'adv-eps' if args.adv_eps else 'adv-steps'}: needs --adversarial fgm or pgd")
    if args.adversarial == "fgm" and args.adv_steps:
        raise CliError("--adv-steps: FGM takes one step; use --adversarial pgd")


def resumed_model(folder: str, schema):
    """The model and tokenizer saved in ``--resume``'s folder, whose labels must be the data's."""
    from nerbook.model import load_model, schema_of_model

    model, tokenizer = load_model(folder)
    saved = schema_of_model(model).names
    if tuple(saved) != tuple(schema.names):
        raise CliError(f"--resume {folder}: its labels {', '.join(saved)} are not the data's "
                       f"({', '.join(schema.names)}); resume with the data it was trained on")
    return model, tokenizer


def check_window(tokenizer, max_length: int, stride: int) -> None:
    """``--stride`` must leave room for new words in every window of ``--max-length`` subwords."""
    from nerbook.align import window_budget

    budget = window_budget(tokenizer, max_length)
    if budget < 1:
        raise CliError(f"--max-length {max_length}: leaves no room for words after the special tokens")
    if stride >= budget:
        raise CliError(f"--stride {stride}: must be smaller than --max-length minus the special tokens ({budget})")


def show(r: dict) -> None:
    f1 = r["dev_f1"]
    print(f"trained on {r['n_train']} sentences in {r['train_seconds']:.1f} s; best model: {r['out']}")
    if f1 is not None:
        metric = "macro-F1" if r["config"].get("task") == "classify" else "entity F1"
        print(f"best dev {metric} {f1:.4f} (epoch {r['best_epoch']})")
