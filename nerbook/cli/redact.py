"""``nerbook redact``: personal data in plain text replaced by typed placeholders (chapter
"Safety and ethics")."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from nerbook.cli.common import CliError, positive
from nerbook.cli.predict import atomic_output

__all__ = ["add_parser", "run", "show"]


def add_parser(sub) -> None:
    r = sub.add_parser(
        "redact", help="replace names, e-mails, phones, cards, IBANs and IP addresses by placeholders",
        description="Plain text in, one redacted line per input line out (blank lines kept): the "
                    "model's persons, organisations and locations become <PERSON>, <ORGANIZATION>, "
                    "<LOCATION>; e-mail addresses, phone numbers, Luhn-valid card numbers, valid "
                    "IBANs and IP addresses become <EMAIL>, <PHONE>, <CREDIT_CARD>, <IBAN>, "
                    "<IP_ADDRESS>. Every other occurrence of a found text is replaced too.")
    r.add_argument("--model", help="checkpoint folder saved by nerbook train (not needed with --patterns-only)")
    r.add_argument("--input", required=True, help="UTF-8 plain text file")
    r.add_argument("--output", help="output file (default: stdout); an existing file is kept unless --overwrite")
    r.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    r.add_argument("--json", dest="json_lines", action="store_true",
                   help='write JSON lines {"text": redacted, "replacements": [...]} (offsets, not the removed text)')
    r.add_argument("--min-confidence", type=float, default=0.0,
                   help="ignore model entities less sure than this (the probability of their least sure word), in [0, 1] (default: 0)")
    r.add_argument("--patterns-only", action="store_true",
                   help="no model: e-mails, phones, cards, IBANs and IP addresses only (--model is ignored)")
    r.add_argument("--batch-size", type=positive(int), default=64)
    r.set_defaults(func=run, show=show)


def _checked(args: argparse.Namespace) -> None:
    """Argument errors, before any file is read or model loaded."""
    if not args.patterns_only and not args.model:
        raise CliError("--model is required (or --patterns-only, for e-mails, phones, cards, IBANs "
                       "and IP addresses alone)")
    if not 0.0 <= args.min_confidence <= 1.0:
        raise CliError(f"--min-confidence {args.min_confidence}: must be in [0, 1]")


def _write(out, texts: list[str], records: list[list[dict]], json_lines: bool) -> None:
    for text, recs in zip(texts, records):
        line = json.dumps({"text": text, "replacements": recs}, ensure_ascii=False) if json_lines else text
        out.write(line + "\n")


def run(args: argparse.Namespace) -> dict:
    from nerbook.data import read_lines
    from nerbook.redact import redact

    _checked(args)
    inp = Path(args.input)
    lines = read_lines(inp)  # bad input fails here, before the model loads
    with atomic_output(args.output, args.overwrite, inp) as out:  # never the input; kept unless --overwrite
        tagger = None
        if not args.patterns_only:
            from nerbook.predict import Tagger

            tagger = Tagger.from_checkpoint(args.model, batch_size=args.batch_size)
        texts, records = redact(lines, tagger, min_confidence=args.min_confidence)
        _write(out, texts, records, args.json_lines)
    by_type = Counter(r["type"] for recs in records for r in recs)
    return {"input": str(inp), "output": args.output or "-", "lines": len(lines),
            "replacements": sum(by_type.values()), "by_type": dict(sorted(by_type.items())),
            "model": None if args.patterns_only else str(args.model)}


def show(summary: dict) -> None:
    if summary.get("output") != "-":  # with stdout, the redacted text is the output
        print(json.dumps(summary))
