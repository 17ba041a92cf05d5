"""``nerbook robustness``: a model's scores on perturbed copies of a data set (chapter
"Adversarial training and robustness")."""

from __future__ import annotations

import argparse
from pathlib import Path

from nerbook.cli.common import CliError, positive
from nerbook.perturb import PERTURBATIONS

__all__ = ["add_parser", "read_data", "run", "show"]


def add_parser(sub) -> None:
    r = sub.add_parser(
        "robustness", help="scores on perturbed data (typos, unseen names, casing, punctuation)",
        description="Tag a data set and perturbed copies of it (label-preserving: typos and OCR "
                    "errors, held-out names, casing, punctuation) and report entity-level F1 and "
                    "its drop. A labelled CoNLL file is scored against its gold tags; plain text "
                    "(or CoNLL without tags) against the model's own clean predictions.")
    r.add_argument("--model", required=True, help="checkpoint folder saved by nerbook train")
    r.add_argument("--data", required=True,
                   help="labelled CoNLL file, or plain text (one sentence a line) as nerbook predict reads it")
    r.add_argument("--format", choices=["auto", "conll", "text"], default="auto",
                   help="how to read --data (default: detected as nerbook predict does)")
    r.add_argument("--perturbations", default=",".join(PERTURBATIONS),
                   help="comma-separated, from: " + ", ".join(PERTURBATIONS) + " (default: all)")
    r.add_argument("--rate", type=float, default=0.05,
                   help="share of characters (char_noise) or O words (punct_noise) perturbed, in (0, 1] "
                        "(default: 0.05; entity_swap and the casings change every entity/word)")
    r.add_argument("--seed", type=int, default=0, help="seed of the perturbations (default: 0)")
    r.add_argument("--batch-size", type=positive(int), default=64)
    r.add_argument("--json", action="store_true", help="print the report as JSON")
    r.set_defaults(func=run, show=show)


def perturbation_names(text: str) -> list[str]:
    """The perturbations named in ``--perturbations`` (comma-separated, each once)."""
    names = list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    bad = [n for n in names if n not in PERTURBATIONS]
    if bad or not names:
        raise CliError(f"--perturbations {text!r}: unknown perturbation(s) {', '.join(bad) or '(none given)'}; "
                       f"choose from {', '.join(PERTURBATIONS)}")
    return names


def read_data(path: Path, fmt: str):
    """``(sentences, labelled)`` of ``--data``: CoNLL with a tag column is labelled; CoNLL of
    words alone and plain text (one sentence a line, split as ``nerbook predict`` splits it) are
    not. Bad input raises, naming the file (and line)."""
    from nerbook.cli.predict import detect_format
    from nerbook.data import DOCSTART, Sentence, read_conll_sentences, read_lines
    from nerbook.predict import split_words

    lines = read_lines(path)
    fmt = fmt if fmt != "auto" else detect_format(path, lines)
    if fmt == "conll":
        first = next((ln.split() for ln in lines if ln.split() and ln.split()[0] != DOCSTART), [])
        labelled = len(first) >= 2
        return read_conll_sentences(path, with_tags=labelled, lines=lines), labelled
    sents = [Sentence([w for w, _, _ in split_words(ln)], None, i, no)
             for i, (no, ln) in enumerate((no, ln) for no, ln in enumerate(lines, 1) if split_words(ln))]
    if not sents:
        raise CliError(f"{path}: no text (the file is empty or holds only blank lines)")
    return sents, False


def run(args: argparse.Namespace) -> dict:
    from nerbook.data import read_conll_sentences, sentences_to_dataset
    from nerbook.perturb import robustness_report
    from nerbook.predict import Tagger

    names = perturbation_names(args.perturbations)
    if not 0 < args.rate <= 1:
        raise CliError(f"--rate {args.rate}: must be in (0, 1]")
    data = Path(args.data)
    sents, labelled = read_data(data, args.format)  # bad input fails here, before the model loads
    tagger = Tagger.from_checkpoint(args.model, batch_size=args.batch_size)
    if labelled:  # every entity type must be one the model knows: the reader names the line
        sents = read_conll_sentences(data, schema=tagger.schema)
    ds = sentences_to_dataset(sents, tagger.schema)
    report = robustness_report(tagger, ds, names, rate=args.rate, seed=args.seed,
                               reference="gold" if labelled else "clean predictions")
    return {"model": str(args.model), "data": str(data), **report}


def show(r: dict) -> None:
    ref = "gold tags" if r["reference"] == "gold" else "the model's clean predictions (consistency)"
    print(f"robustness of {r['model']} on {r['data']}: {r['sentences']} sentences, {r['words']} words")
    print(f"scored against {ref}; rate {r['rate']}, seed {r['seed']}")
    print(f"{'perturbation':<14}{'precision':>10}{'recall':>10}{'f1':>10}{'drop':>10}{'changed':>9}")
    for name, s in r["results"].items():
        print(f"{name:<14}{s['precision']:>10.4f}{s['recall']:>10.4f}{s['f1']:>10.4f}"
              f"{s['drop']:>10.4f}{s['sentences_changed']:>9}")
    types = sorted({t for s in r["results"].values() for t in s["per_type"]})
    if types:
        print("\nF1 per entity type")
        print(f"{'perturbation':<14}" + "".join(f"{t:>10}" for t in types))
        for name, s in r["results"].items():
            cells = (f"{s['per_type'][t]:>10.4f}" if t in s["per_type"] else f"{'-':>10}" for t in types)
            print(f"{name:<14}" + "".join(cells))
    print("changed: sentences the perturbation altered; drop: clean F1 minus F1")
