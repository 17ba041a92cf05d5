"""``nerbook predict``: tag a CoNLL file, or plain text into JSON lines of entities (chapter
"Fine-tuning and evaluation")."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

from nerbook.cli.common import CliError, positive, probability

CONLL_SUFFIXES = (".conll", ".iob", ".bio", ".iob2")


def add_parser(sub) -> None:
    r = sub.add_parser("predict", help="tag a CoNLL file or plain text",
                       description="CoNLL in -> CoNLL out with a predicted tag column; plain text in -> JSON lines of entities.")
    r.add_argument("--model", required=True, help="checkpoint folder saved by nerbook train")
    r.add_argument("--input", required=True)
    r.add_argument("--output", help="output file (default: stdout); an existing file is kept unless --overwrite")
    r.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    r.add_argument("--format", choices=["auto", "conll", "text"], default="auto")
    r.add_argument("--batch-size", type=positive(int), default=64)
    r.add_argument("--min-confidence", type=probability, default=0.0, metavar="X",
                   help="abstain on entities whose confidence (the probability of their least sure "
                        "word) is below X: text output lists them under \"unsure\" instead of "
                        "\"entities\"; CoNLL output tags them O (default 0: keep all)")
    r.add_argument("--json", action="store_true", help="print a JSON summary (needs --output)")
    r.set_defaults(func=run, show=show)


def detect_format(path: Path, lines: list[str] | None = None) -> str:
    """``conll`` for ``.conll/.iob/.bio`` files, files that start with ``-DOCSTART-``, and files
    whose first line has a word and at least one more column, the last a tag (``O``,
    ``B-PER``, ...); ``text`` otherwise: ``Barack Obama`` is text, ``Obama B-PER`` CoNLL.

    A CoNLL file with a malformed line later on is still CoNLL: the reader names the line.
    ``lines``: the file's lines, when already read.
    """
    from nerbook.data import DOCSTART, read_lines
    from nerbook.schemes import TAG_RE

    if path.suffix.lower() in CONLL_SUFFIXES:
        return "conll"
    first = next((ln.split() for ln in (read_lines(path) if lines is None else lines) if ln.strip()), [])
    if first[:1] == [DOCSTART]:
        return "conll"
    return "conll" if len(first) >= 2 and TAG_RE.match(first[-1]) else "text"


def open_output(path: str | None, overwrite: bool = False, source: Path | None = None):
    """Where predictions go: stdout, or a temporary file beside ``path`` that :func:`run`
    renames into place when every prediction is written (a crash leaves ``path`` untouched).
    Checked before any work: ``path`` must not be a folder, nor the input file ``source``, nor
    an existing file unless ``overwrite``, and its folder must exist."""
    if path is None:
        return sys.stdout, None
    out = Path(path)
    if out.is_dir():
        raise CliError(f"--output {out}: is a folder; name a file")
    if source is not None and out.exists() and out.resolve() == source.resolve():
        raise CliError(f"--output {out}: is the --input file; write the predictions to another file")
    if out.exists() and not overwrite:
        raise CliError(f"--output {out}: exists; use --overwrite to replace it, or name another file")
    if not out.parent.is_dir():
        raise CliError(f"--output {out}: the folder {out.parent} does not exist")
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        return open(tmp, "w", encoding="utf-8"), tmp
    except OSError as e:
        raise CliError(f"--output {out}: cannot write there ({e.strerror})") from None


@contextlib.contextmanager
def atomic_output(path: str | None, overwrite: bool = False, source: Path | None = None):
    """:func:`open_output` as a ``with`` block: the file is renamed into place when the block
    ends normally, and removed if it raises (or is interrupted), so ``path`` is never half
    written."""
    out, tmp = open_output(path, overwrite, source)
    try:
        yield out
    except BaseException:
        if tmp is not None:
            out.close()
            tmp.unlink(missing_ok=True)
        raise
    if tmp is not None:
        out.close()
        os.replace(tmp, path)


def tag_conll(tagger, sents, keep_docstart: bool, out, min_confidence: float = 0.0) -> dict:
    """Write every word line of CoNLL sentences with a predicted tag column added; with
    ``keep_docstart``, a ``-DOCSTART-`` line opens each document as in the input. Entities less
    sure than ``min_confidence`` are tagged ``O`` (and counted as ``unsure``)."""
    from nerbook.calibration import abstain
    from nerbook.data import conll_lines

    tags, probs = tagger.tag_with_scores([s.tokens for s in sents], [s.doc_id for s in sents])
    tags, unsure = abstain(tags, probs, min_confidence)
    width = len(sents[0].columns[0])  # the reader checked that every word line has as many
    columns = [[[c[k] for c in s.columns] for s in sents] for k in range(1, width)]
    doc_ids = [s.doc_id for s in sents] if keep_docstart else None
    for line in conll_lines([s.tokens for s in sents], *columns, tags, doc_ids=doc_ids):
        out.write(line + "\n")
    return {"format": "conll", "sentences": len(sents), "tokens": sum(len(s.tokens) for s in sents),
            "tagged": sum(len(t) for t in tags), "unsure": unsure}


def tag_text(tagger, lines: list[str], out, min_confidence: float = 0.0) -> dict:
    """Write one JSON line ``{"text", "entities"}`` for every line of plain text; with
    ``min_confidence``, the entities less sure than that go to ``"unsure"`` instead."""
    n_sure = n_unsure = 0
    for text, es in zip(lines, tagger.predict_text(lines)):
        row = {"text": text, "entities": [e.as_dict() for e in es if e.score >= min_confidence]}
        if min_confidence > 0:
            row["unsure"] = [e.as_dict() for e in es if e.score < min_confidence]
            n_unsure += len(row["unsure"])
        n_sure += len(row["entities"])
        out.write(json.dumps(row, ensure_ascii=False) + "\n")
    return {"format": "text", "lines": len(lines), "entities": n_sure, "unsure": n_unsure}


def run(args: argparse.Namespace) -> dict:
    from nerbook.data import DOCSTART, read_conll_sentences, read_lines
    from nerbook.predict import Tagger

    inp = Path(args.input)
    lines = read_lines(inp)  # read once; bad input fails here, before the model loads
    fmt = args.format if args.format != "auto" else detect_format(inp, lines)
    sents = read_conll_sentences(inp, with_tags=False, lines=lines) if fmt == "conll" else None
    if sents is None and not any(line.strip() for line in lines):
        raise CliError(f"{inp}: no text (the file is empty or holds only blank lines)")
    with atomic_output(args.output, args.overwrite, inp) as out:
        tagger = Tagger.from_checkpoint(args.model, batch_size=args.batch_size)
        if sents is not None:
            keep_docstart = any(line.split()[:1] == [DOCSTART] for line in lines)
            summary = tag_conll(tagger, sents, keep_docstart, out, args.min_confidence)
        else:
            summary = tag_text(tagger, lines, out, args.min_confidence)
    summary["output"] = args.output or "-"
    return summary


def show(summary: dict) -> None:
    if summary.get("output") != "-":  # with stdout, the predictions are the output
        print(json.dumps(summary))
