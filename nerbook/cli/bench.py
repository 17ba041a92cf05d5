"""``nerbook bench train|predict``: the benchmarks of :mod:`nerbook.bench` on the command line
(chapter "Making it fast")."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nerbook.bench.contenders import BERT_BASE_RANDOM, TRAIN_CONTENDERS
from nerbook.bench.deploy import DEPLOY_CONTENDERS, deploy_table
from nerbook.bench.prediction import PREDICT_CONTENDERS
from nerbook.bench.report import predict_table, train_table, until_table
from nerbook.bench.runner import set_threads
from nerbook.cli.common import CliError, device_arg, positive


def add_parser(subparsers) -> None:
    """``nerbook bench train|predict``."""
    b = subparsers.add_parser("bench", help="benchmark nerbook against the naive loop, the Trainer and the pipeline",
                              description="Benchmark nerbook against the seed loop, the HF Trainer and the HF pipeline.")
    sub = b.add_subparsers(dest="bench_command", required=True)

    t = sub.add_parser("train", help="training: nerbook vs seed, trainer, trainer-tuned")
    t.add_argument("--train", required=True, help="CoNLL file, or folder with train.txt (and valid.txt)")
    t.add_argument("--valid", help="CoNLL dev file (dev F1 of every contender)")
    t.add_argument("--model", default="offline", help=f"hub id, folder, 'offline', 'tiny' or '{BERT_BASE_RANDOM}'")
    t.add_argument("--limit", type=positive(int), help="first N training sentences")
    t.add_argument("--valid-limit", type=positive(int), help="first N dev sentences")
    t.add_argument("--batch-size", type=positive(int), default=16)
    t.add_argument("--epochs", type=positive(int), default=1)
    t.add_argument("--lr", type=positive(float), default=5e-5, help="learning rate of nerbook and the Trainer (the seed keeps 2e-5)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--against", default=",".join(TRAIN_CONTENDERS), help="comma-separated: " + ", ".join(TRAIN_CONTENDERS))
    t.add_argument("--repeat", type=positive(int), default=1, help="interleaved repeats (best time is kept)")
    t.add_argument("--threads", type=positive(int), help="torch threads in every run (default: torch's)")
    t.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    t.add_argument("--no-isolate", dest="isolate", action="store_false",
                   help="run in this process (faster start; peak memory not measured)")
    t.add_argument("--no-eval", dest="evaluate", action="store_false", help="skip the dev F1")
    t.add_argument("--until-f1", type=unit_interval, metavar="F",
                   help="time to a dev entity F1 of F: every contender scores the dev set (off the clock) every "
                        "--eval-every real tokens and stops at F, at the end of --epochs, or after --budget")
    t.add_argument("--eval-every", type=positive(int), default=28_000, metavar="TOKENS",
                   help="real training tokens between dev scores with --until-f1 (default 28000, about a tenth "
                        "of a CoNLL-2003 epoch)")
    t.add_argument("--budget", type=positive(float), metavar="SECONDS",
                   help="with --until-f1, stop a run after this many training seconds")
    t.add_argument("--nerbook", action="append", default=[], metavar="FIELD=VALUE",
                   help="change one TrainConfig field of nerbook's run (repeatable), e.g. warmup_ratio=0 or "
                        "batch_size=64; the record keeps them")
    t.add_argument("--json", action="store_true")
    t.add_argument("--record", help="write the JSON with provenance here")
    t.set_defaults(func=run_train, show=show_train)

    p = sub.add_parser("predict", help="prediction: nerbook's Tagger vs transformers.pipeline, ONNX Runtime, int8",
                       description="Tag the same sentences with nerbook's Tagger (eager PyTorch) and each "
                                   "contender: the pipeline, or the checkpoint exported to ONNX (onnx), "
                                   "quantized to int8 (onnx-int8, torch-int8), run on the CPU.")
    p.add_argument("--model", required=True, help="checkpoint folder saved by nerbook train")
    p.add_argument("--data", required=True, help="CoNLL file (with tags: F1 too)")
    p.add_argument("--limit", type=positive(int))
    p.add_argument("--batch-size", type=positive(int), default=64)
    p.add_argument("--against", default="pipeline", help="comma-separated: " + ", ".join(PREDICT_CONTENDERS))
    p.add_argument("--repeat", type=positive(int), default=1)
    p.add_argument("--threads", type=positive(int))
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], help="nerbook's (default: the Tagger's, fp32)")
    p.add_argument("--no-isolate", dest="isolate", action="store_false")
    p.add_argument("--json", action="store_true")
    p.add_argument("--record", help="write the JSON with provenance here")
    p.set_defaults(func=run_predict, show=show_predict)


def against(text: str, allowed: tuple[str, ...]) -> list[str]:
    """The contenders named in ``--against`` (comma-separated, ``none`` for nerbook alone)."""
    names = [n.strip() for n in text.split(",") if n.strip() and n.strip() != "none"]
    bad = [n for n in names if n not in allowed]
    if bad:
        raise CliError(f"--against: unknown contender(s) {bad}; choose from {', '.join(allowed)}")
    return list(dict.fromkeys(names))


def progress(args):
    """Progress lines to stderr, unless the output is JSON."""
    return None if args.json else (lambda msg: print(msg, file=sys.stderr, flush=True))


def unit_interval(text: str) -> float:
    """An F1 target: a number in (0, 1]."""
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], not {text}")
    return value


def config_overrides(items: list[str]) -> dict:
    """``--nerbook FIELD=VALUE`` items as TrainConfig fields with values of the field's type
    (``none`` for an optional field's None)."""
    import typing

    from nerbook.train import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    out = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or name not in hints:
            raise CliError(f"--nerbook {item}: expected FIELD=VALUE with FIELD one of {', '.join(hints)}")
        kinds = [k for k in typing.get_args(hints[name]) or (hints[name],) if k is not type(None)]
        optional, word = type(None) in typing.get_args(hints[name]), text.lower()
        if optional and word == "none":
            out[name] = None
            continue
        for kind in kinds:
            try:
                out[name] = parse_as(kind, text)
                break
            except ValueError:
                pass
        else:
            raise CliError(f"--nerbook {item}: {text!r} is not a "
                           + " or ".join(k.__name__ for k in kinds) + (" or none" if optional else ""))
    return out


def parse_as(kind: type, text: str):
    """``text`` as a value of ``kind`` (bool: true or false); ValueError if it is not one."""
    if kind is bool:
        if text.lower() not in ("true", "false"):
            raise ValueError(text)
        return text.lower() == "true"
    return kind(text)


def show_train(result: dict) -> None:
    """The training table; after a time-to-F1 run, the time-to-F1 table too."""
    print(train_table(result))
    if "time_to_f1" in result:
        print()
        print(until_table(result))


def run_train(args: argparse.Namespace) -> dict:
    from nerbook.bench import TrainSpec, bench_train

    names = against(args.against, TRAIN_CONTENDERS)
    if args.until_f1 is not None and not args.valid and not Path(args.train, "valid.txt").is_file():
        raise CliError("--until-f1 needs a dev set: --valid, or a --train folder with valid.txt")
    if args.budget is not None and args.until_f1 is None:
        raise CliError("--budget needs --until-f1")
    if args.until_f1 is not None and not args.evaluate:
        raise CliError("--until-f1 scores the dev set: it cannot go with --no-eval")
    overrides = config_overrides(args.nerbook)
    device_arg(args.device)
    set_threads(args.threads)
    spec = TrainSpec(train=args.train, valid=args.valid, model=args.model, limit=args.limit,
                     valid_limit=args.valid_limit, batch_size=args.batch_size, epochs=args.epochs,
                     lr=args.lr, seed=args.seed, threads=args.threads, device=args.device,
                     evaluate=args.evaluate, until_f1=args.until_f1, eval_every=args.eval_every,
                     budget=args.budget, nerbook_config=overrides or None)
    result = bench_train(spec, names, args.repeat, args.isolate, log=progress(args))
    if args.record:
        from nerbook.records import write_record

        write_record(args.record, result, [p for p in (args.train, args.valid) if p], kind="bench")
    return result


def run_predict(args: argparse.Namespace) -> dict:
    from nerbook.bench import PredictSpec, bench_predict
    from nerbook.export import is_onnx_export

    names = against(args.against, PREDICT_CONTENDERS)
    if is_onnx_export(args.model):
        raise CliError(f"--model {args.model}: an ONNX export; bench its PyTorch checkpoint "
                       "with --against onnx (or onnx-int8)")
    device_arg(args.device)
    set_threads(args.threads)
    spec = PredictSpec(model=args.model, data=args.data, limit=args.limit, batch_size=args.batch_size,
                       threads=args.threads, device=args.device, precision=args.precision)
    result = bench_predict(spec, names, args.repeat, args.isolate, log=progress(args))
    if args.record:
        from nerbook.records import write_record

        write_record(args.record, result, [args.data], kind="bench")
    return result


def show_predict(result: dict) -> None:
    """The prediction table; with a deployment contender, the deployment table too (size, F1 change)."""
    print(predict_table(result))
    if any(c in DEPLOY_CONTENDERS for c in result["contenders"]):
        print()
        print(deploy_table(result))
