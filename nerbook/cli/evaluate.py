"""``nerbook evaluate``: entity-level scores by the conlleval rules (chapter "Fine-tuning and
evaluation")."""

from __future__ import annotations

import argparse

from nerbook.cli.common import CliError, positive


def add_parser(sub) -> None:
    e = sub.add_parser("evaluate", help="entity-level scores (conlleval rules)",
                       description="Score predicted tags against gold tags, entity-level (conlleval) and token-level.")
    e.add_argument("--gold", help="gold CoNLL file (last column = tag)")
    e.add_argument("--pred", help="predicted CoNLL file (last column = tag), same words as --gold")
    e.add_argument("--model", help="checkpoint folder (with --data: predict, then score)")
    e.add_argument("--data", help="labelled CoNLL file to predict and score (a label<TAB>text file for a "
                                  "checkpoint trained with --task classify)")
    e.add_argument("--mode", choices=["conlleval", "strict"], default="conlleval")
    e.add_argument("--batch-size", type=positive(int), default=64)
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=run, show=show)


def score_files(gold: str, pred: str, mode: str | None = None) -> dict:
    """Entity- and token-level scores of a predicted CoNLL file against a gold one.

    Tags are read as written (no IOB2 normalisation), so that scoring sees what conlleval sees.
    """
    from nerbook.data import read_conll_sentences
    from nerbook.metrics import entity_scores

    g = read_conll_sentences(gold, normalize=False)
    p = read_conll_sentences(pred, normalize=False)
    if len(g) != len(p):
        raise CliError(f"{pred}: {len(p)} sentences but {gold} has {len(g)}")
    for a, b in zip(g, p):
        if len(a.tokens) != len(b.tokens):
            raise CliError(f"{pred}:{b.line}: sentence has {len(b.tokens)} words but the gold "
                           f"sentence at {gold}:{a.line} has {len(a.tokens)}")
        for j, (u, v) in enumerate(zip(a.tokens, b.tokens)):
            if u != v:  # the files must hold the same words: scores of other words mean nothing
                raise CliError(f"{pred}:{b.line + j}: word {v!r} but the gold file has {u!r} "
                               f"at {gold}:{a.line + j}")
    return entity_scores([s.tags for s in g], [s.tags for s in p], mode=mode, token_level=True)


def run(args: argparse.Namespace) -> dict:
    mode = None if args.mode == "conlleval" else args.mode
    if args.gold and args.pred:
        if args.model or args.data:
            raise CliError("use either --gold/--pred or --model/--data, not both")
        return score_files(args.gold, args.pred, mode)
    if args.model and args.data:
        from nerbook.model import read_checkpoint_meta

        if read_checkpoint_meta(args.model).get("task") == "classify":  # trained with --task classify
            from nerbook.cli.classify import evaluate_classifier

            return evaluate_classifier(args.model, args.data, args.batch_size)
        from nerbook.data import read_conll_sentences, sentences_to_dataset
        from nerbook.predict import Tagger

        tagger = Tagger.from_checkpoint(args.model, batch_size=args.batch_size)
        ds = sentences_to_dataset(read_conll_sentences(args.data, schema=tagger.schema), tagger.schema)
        return tagger.score(ds, mode=mode, token_level=True)
    raise CliError("evaluate needs --gold FILE --pred FILE, or --model DIR --data FILE")


def show(r: dict) -> None:
    if r.get("task") == "classify":
        from nerbook.cli.classify import show_scores

        return show_scores(r)
    o = r["overall"]
    print(f"{'entity':<10}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>9}")
    for name, s in [*sorted(r["per_type"].items()), ("overall", o), ("macro", r["macro"])]:
        print(f"{name:<10}{s['precision']:>10.4f}{s['recall']:>10.4f}{s['f1']:>10.4f}{s['support']:>9}")
    print(f"token-level accuracy (incl. O), for contrast: {r['token_level']['accuracy']:.4f}")
