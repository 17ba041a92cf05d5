"""Command line: ``nerbook train | evaluate | predict | bench`` (also ``python -m nerbook``).

Every command prints a readable report, or JSON with ``--json``; bad input ends with a one-line
``nerbook: error: ...`` naming the file and line (or the argument) and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

EXIT_BAD_INPUT = 2


class CliError(Exception):
    """An error to report in one line."""


# --------------------------------------------------------------------------------------
# train
# --------------------------------------------------------------------------------------


def _load_splits(train: str, valid: str | None, limit: int | None):
    from nerbook.data import (
        load_local,
        read_conll,
        read_conll_sentences,
        schema_of,
        sentences_to_dataset,
    )

    p = Path(train)
    if p.is_dir():
        dd = load_local(p)
        if "train" not in dd:
            raise CliError(f"{p}: no train.txt")
        train_ds = dd["train"]
        valid_ds = dd.get("valid")
    elif p.is_file():
        train_ds = read_conll(p)
        valid_ds = None
    else:
        raise CliError(f"--train {train}: no such file or folder")
    schema = schema_of(train_ds)
    if valid is not None:
        valid_ds = sentences_to_dataset(read_conll_sentences(valid, schema=schema), schema)
    if limit is not None:
        train_ds = train_ds.select(range(min(limit, len(train_ds))))
    return train_ds, valid_ds, schema


def cmd_train(args: argparse.Namespace) -> dict:
    from nerbook.model import load_model
    from nerbook.notebook import seed_everything
    from nerbook.train import TrainConfig, train

    seed_everything(args.seed, deterministic=False)
    train_ds, valid_ds, schema = _load_splits(args.train, args.valid, args.limit)
    model, tokenizer = load_model(args.model, schema, texts=train_ds["tokens"], seed=args.seed)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                      max_length=args.max_length, stride=args.stride, doc_context=args.doc_context,
                      seed=args.seed, mixed_precision=args.precision, patience=args.patience,
                      grad_accum=args.grad_accum, progress=not args.json, packing=args.packing,
                      freeze_word_embeddings=False if args.train_embeddings else None,
                      label_all_subwords=args.label_all_subwords)
    res = train(model, tokenizer, train_ds, valid_ds, cfg, out_dir=args.out, resume_from=args.resume)
    best = str(Path(args.out) / "best")
    result = {"dev_f1": res.best_f1 if valid_ds is not None else None, "best_epoch": res.best_epoch,
              "stopped_early": res.stopped_early, "epochs": res.history["epochs"], "out": best,
              "train_seconds": res.train_seconds, "trainable_parameters": res.trainable_parameters,
              "n_train": len(train_ds),
              "n_valid": len(valid_ds) if valid_ds is not None else 0, "model": args.model,
              "config": {k: v for k, v in vars(args).items() if k not in ("func", "show")}}
    if res.model is not None and valid_ds is not None:
        from nerbook.train import evaluate

        result["dev_scores"] = evaluate(res.model, tokenizer, valid_ds, cfg, token_level=True)
    if args.record:
        from nerbook.records import write_record

        write_record(args.record, result, [p for p in (args.train, args.valid) if p], kind="train")
    return result


def _print_train(r: dict) -> None:
    f1 = r["dev_f1"]
    print(f"trained on {r['n_train']} sentences in {r['train_seconds']:.1f} s; best model: {r['out']}")
    if f1 is not None:
        print(f"best dev entity F1 {f1:.4f} (epoch {r['best_epoch']})")


# --------------------------------------------------------------------------------------
# evaluate
# --------------------------------------------------------------------------------------


def _read_tag_file(path: str):
    """Tags as written (no IOB2 normalisation), so that scoring sees what conlleval sees."""
    from nerbook.data import read_conll_sentences

    return read_conll_sentences(path, normalize=False)


def score_files(gold: str, pred: str, mode: str | None = None) -> dict:
    """Entity- and token-level scores of a predicted CoNLL file against a gold one."""
    from nerbook.metrics import entity_scores, token_scores

    g, p = _read_tag_file(gold), _read_tag_file(pred)
    if len(g) != len(p):
        raise CliError(f"{pred}: {len(p)} sentences but {gold} has {len(g)}")
    for a, b in zip(g, p):
        if len(a.tokens) != len(b.tokens):
            raise CliError(f"{pred}:{b.line}: sentence has {len(b.tokens)} words but the gold "
                           f"sentence at {gold}:{a.line} has {len(a.tokens)}")
    gt, pt = [s.tags for s in g], [s.tags for s in p]
    out = entity_scores(gt, pt, mode=mode)
    out["token_level"] = token_scores(gt, pt)
    return out


def cmd_evaluate(args: argparse.Namespace) -> dict:
    if args.gold and args.pred:
        if args.model or args.data:
            raise CliError("use either --gold/--pred or --model/--data, not both")
        return score_files(args.gold, args.pred, args.mode)
    if args.model and args.data:
        from nerbook.data import read_conll_sentences, sentences_to_dataset, tag_names
        from nerbook.metrics import entity_scores, token_scores
        from nerbook.model import schema_of_model
        from nerbook.predict import Tagger

        tagger = Tagger.from_checkpoint(args.model, batch_size=args.batch_size)
        schema = schema_of_model(tagger.model)
        ds = sentences_to_dataset(read_conll_sentences(args.data, schema=schema), schema)
        pred, _ = tagger.predict_dataset(ds)
        gold = tag_names(ds)
        out = entity_scores(gold, pred, mode=args.mode)
        out["token_level"] = token_scores(gold, pred)
        return out
    raise CliError("evaluate needs --gold FILE --pred FILE, or --model DIR --data FILE")


def _print_scores(r: dict) -> None:
    o = r["overall"]
    print(f"{'entity':<10}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>9}")
    for name, s in [*sorted(r["per_type"].items()), ("overall", o), ("macro", r["macro"])]:
        print(f"{name:<10}{s['precision']:>10.4f}{s['recall']:>10.4f}{s['f1']:>10.4f}{s['support']:>9}")
    print(f"token-level accuracy (incl. O), for contrast: {r['token_level']['accuracy']:.4f}")


# --------------------------------------------------------------------------------------
# predict
# --------------------------------------------------------------------------------------


def detect_format(path: Path) -> str:
    """``conll`` for ``.conll/.iob/.bio`` files, ``-DOCSTART-`` files, or files whose non-blank
    lines all have the same number (>= 2) of columns; ``text`` otherwise."""
    if path.suffix.lower() in (".conll", ".iob", ".bio", ".iob2"):
        return "conll"
    try:
        lines = [ln.split() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except UnicodeDecodeError:
        return "conll"  # let the CoNLL reader report the bad line
    if lines and lines[0][0] == "-DOCSTART-":
        return "conll"
    widths = {len(ln) for ln in lines}
    return "conll" if len(widths) == 1 and widths.pop() >= 2 else "text"


def cmd_predict(args: argparse.Namespace) -> dict:
    from nerbook.data import DOCSTART, read_conll_sentences
    from nerbook.predict import Tagger

    inp = Path(args.input)
    if not inp.is_file():
        raise CliError(f"--input {inp}: no such file")
    fmt = args.format if args.format != "auto" else detect_format(inp)
    if fmt == "conll":
        sents = read_conll_sentences(inp, with_tags=False)
    else:
        try:
            lines = inp.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as e:
            line = inp.read_bytes()[: e.start].count(b"\n") + 1
            raise CliError(f"{inp}:{line}: not valid UTF-8") from None
    tagger = Tagger.from_checkpoint(args.model, batch_size=args.batch_size)
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    try:
        if fmt == "conll":
            tags = tagger.tag([s.tokens for s in sents], [s.doc_id for s in sents])
            prev_doc = None
            width = max(len(c) for s in sents for c in s.columns)
            for s, ts in zip(sents, tags):
                if s.doc_id != prev_doc and prev_doc is not None or (prev_doc is None and s.doc_id != 0):
                    out.write(" ".join([DOCSTART] + ["-X-"] * (width - 1) + ["O"]) + "\n\n")
                prev_doc = s.doc_id
                for cols, t in zip(s.columns, ts):
                    out.write(" ".join([*cols, t]) + "\n")
                out.write("\n")
            summary = {"format": "conll", "sentences": len(sents),
                       "tokens": sum(len(s.tokens) for s in sents), "tagged": sum(len(t) for t in tags)}
        else:
            ents = tagger.predict_text(lines)
            for text, es in zip(lines, ents):
                out.write(json.dumps({"text": text, "entities": [e.as_dict() for e in es]},
                                     ensure_ascii=False) + "\n")
            summary = {"format": "text", "lines": len(lines), "entities": sum(len(e) for e in ents)}
    finally:
        if args.output:
            out.close()
    summary["output"] = args.output or "-"
    return summary


# --------------------------------------------------------------------------------------
# parser and entry point
# --------------------------------------------------------------------------------------


def _positive(kind):
    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if v <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return v
    return parse


def build_parser() -> argparse.ArgumentParser:
    from nerbook import __version__

    p = argparse.ArgumentParser(prog="nerbook", description="Fine-tune, evaluate and run transformer NER models.")
    p.add_argument("--version", action="version", version=f"nerbook {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="{train,evaluate,predict,bench}")

    t = sub.add_parser("train", help="fine-tune a model on CoNLL data",
                       description="Fine-tune a model on CoNLL data; the best model (dev entity F1) goes to OUT/best.")
    t.add_argument("--train", required=True, help="CoNLL file, or folder with train.txt (and valid.txt)")
    t.add_argument("--valid", help="CoNLL dev file (default: valid.txt next to train.txt when --train is a folder)")
    t.add_argument("--model", default="offline", help="hub id, local folder, 'offline' (MiniLM-L6) or 'tiny'")
    t.add_argument("--out", required=True, help="output folder")
    t.add_argument("--epochs", type=_positive(int), default=3)
    t.add_argument("--batch-size", type=_positive(int), default=16)
    t.add_argument("--grad-accum", type=_positive(int), default=1)
    t.add_argument("--lr", type=_positive(float), default=5e-5)
    t.add_argument("--max-length", type=_positive(int), default=128, help="window size in subwords")
    t.add_argument("--stride", type=int, default=32, help="overlap of windows of long sentences")
    t.add_argument("--doc-context", action="store_true", help="fill windows with the document's neighbouring sentences")
    t.add_argument("--precision", default="auto", choices=["auto", "no", "bf16", "fp16"])
    t.add_argument("--patience", type=int, default=2, help="early stopping patience in epochs")
    t.add_argument("--train-embeddings", action="store_true",
                   help="also train the word embeddings (kept as pretrained by default; always trained for 'tiny')")
    t.add_argument("--no-packing", dest="packing", action="store_false",
                   help="length-grouped padded batches instead of random batches packed into rows")
    t.add_argument("--label-all-subwords", action="store_true",
                   help="label a word's later subwords I-X too (for serving with transformers' pipeline, "
                        "which tags every piece the tokenizer splits a word into)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--limit", type=_positive(int), help="use the first N training sentences")
    t.add_argument("--resume", help="resume from OUT/last of an earlier run")
    t.add_argument("--json", action="store_true", help="print a JSON record")
    t.add_argument("--record", help="also write the JSON with provenance (hardware, versions, data hash) here")
    t.set_defaults(func=cmd_train, show=_print_train)

    e = sub.add_parser("evaluate", help="entity-level scores (conlleval rules)",
                       description="Score predicted tags against gold tags, entity-level (conlleval) and token-level.")
    e.add_argument("--gold", help="gold CoNLL file (last column = tag)")
    e.add_argument("--pred", help="predicted CoNLL file (last column = tag), same words as --gold")
    e.add_argument("--model", help="checkpoint folder (with --data: predict, then score)")
    e.add_argument("--data", help="labelled CoNLL file to predict and score")
    e.add_argument("--mode", choices=["conlleval", "strict"], default="conlleval")
    e.add_argument("--batch-size", type=_positive(int), default=64)
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_evaluate, show=_print_scores)

    r = sub.add_parser("predict", help="tag a CoNLL file or plain text",
                       description="CoNLL in -> CoNLL out with a predicted tag column; plain text in -> JSON lines of entities.")
    r.add_argument("--model", required=True, help="checkpoint folder saved by nerbook train")
    r.add_argument("--input", required=True)
    r.add_argument("--output", help="output file (default: stdout)")
    r.add_argument("--format", choices=["auto", "conll", "text"], default="auto")
    r.add_argument("--batch-size", type=_positive(int), default=64)
    r.add_argument("--json", action="store_true", help="print a JSON summary (needs --output)")
    r.set_defaults(func=cmd_predict, show=lambda s: print(json.dumps(s)) if s.get("output") != "-" else None)

    try:
        from nerbook.bench import add_bench_parser
    except ImportError:  # pragma: no cover - bench is part of the package
        pass
    else:
        add_bench_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if getattr(args, "mode", None) == "conlleval":
        args.mode = None
    from nerbook.data import ConllFormatError
    from nerbook.model import ModelLoadError
    from nerbook.train import TrainingDiverged

    if getattr(args, "json", False) and args.command == "predict" and not args.output:
        parser.error("predict --json needs --output (stdout carries the predictions)")
    try:
        result = args.func(args)
    except (CliError, ConllFormatError, ModelLoadError, TrainingDiverged, FileNotFoundError,
            TypeError, ValueError) as e:
        if os.environ.get("NERBOOK_DEBUG"):
            raise
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"nerbook: error: {msg}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if getattr(args, "json", False):
        print(json.dumps(result, default=float))
    else:
        args.show(result)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
