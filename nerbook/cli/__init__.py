"""Command line: ``nerbook train | evaluate | predict | robustness | redact | bench | serve |
export`` (also ``python -m nerbook``).

Every command prints a readable report, or JSON with ``--json``; bad input ends with a one-line
``nerbook: error: ...`` naming the file and line (or the argument) and exit status 2. A bug in
nerbook is not bad input: it surfaces as a traceback.

One module a command (:mod:`~nerbook.cli.train`, :mod:`~nerbook.cli.evaluate`,
:mod:`~nerbook.cli.predict`, :mod:`~nerbook.cli.robustness`, :mod:`~nerbook.cli.redact`,
:mod:`~nerbook.cli.bench`, :mod:`~nerbook.cli.serve`, :mod:`~nerbook.cli.export`), each with
``add_parser`` and ``run``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from nerbook.cli import bench, evaluate, export, predict, redact, robustness, serve, train
from nerbook.cli.common import EXIT_BAD_INPUT, CliError


def build_parser() -> argparse.ArgumentParser:
    from nerbook import __version__

    p = argparse.ArgumentParser(prog="nerbook", description="Fine-tune, evaluate and run transformer NER models.")
    p.add_argument("--version", action="version", version=f"nerbook {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="{train,evaluate,predict,robustness,redact,bench,serve,export}")
    for command in (train, evaluate, predict, robustness, redact, bench, serve, export):
        command.add_parser(sub)
    return p


def bad_input_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean bad input (a file, a model folder, an argument), not a bug."""
    from nerbook.classify import TextFormatError
    from nerbook.data import ConllFormatError
    from nerbook.model import ModelLoadError
    from nerbook.train import TrainingDiverged

    return (CliError, ConllFormatError, TextFormatError, ModelLoadError, TrainingDiverged, FileNotFoundError)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if getattr(args, "json", False) and args.command == "predict" and not args.output:
        parser.error("predict --json needs --output (stdout carries the predictions)")
    try:
        result = args.func(args)
    except bad_input_errors() as e:
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


__all__ = ["EXIT_BAD_INPUT", "CliError", "build_parser", "main"]
