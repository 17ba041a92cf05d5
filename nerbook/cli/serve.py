"""``nerbook serve``: a checkpoint behind HTTP, with micro-batching (chapter "Deployment")."""

from __future__ import annotations

import argparse
import sys

from nerbook.cli.common import CliError, between, positive

__all__ = ["add_parser", "run", "show"]

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


def port_number(text: str) -> int:
    """An argparse ``type`` accepting a TCP port, 1 to 65535."""
    value = positive(int)(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"a port is at most 65535, got {text}")
    return value


#: An argparse ``type`` accepting a wait in milliseconds, 0 to 60000.
milliseconds = between(0, 60_000)


def add_parser(sub) -> None:
    r = sub.add_parser(
        "serve", help="serve a checkpoint over HTTP (POST /ner, GET /health, /docs)",
        description="Load a checkpoint once and answer POST /ner with {\"text\": ...} -> "
                    "{\"entities\": [{type, start, end, text, score}]} or {\"texts\": [...]} -> "
                    "{\"results\": [...]} (start/end: character offsets); GET /health names the "
                    "model; /docs and /openapi.json describe the API. Concurrent requests are "
                    "tagged together (micro-batching). A body too large is a 413, other bad "
                    "input a 422. SIGTERM or Ctrl-C stops the server cleanly (exit status 0).")
    r.add_argument("--model", required=True, help="checkpoint folder saved by nerbook train")
    r.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; another "
                        "address, e.g. 0.0.0.0, opens the model to the network, with a warning)")
    r.add_argument("--port", type=port_number, default=8000, help="TCP port (default 8000)")
    r.add_argument("--max-batch", type=positive(int), default=32, metavar="N",
                   help="most texts tagged in one model call (default 32)")
    r.add_argument("--batch-wait-ms", type=milliseconds, default=5.0, metavar="X",
                   help="how long a batch waits for more requests before the model runs, in "
                        "milliseconds (default 5; 0: never wait)")
    r.add_argument("--max-body-bytes", type=positive(int), default=1_000_000, metavar="N",
                   help="largest request body, in bytes; a larger one is a 413 (default 1000000)")
    r.add_argument("--max-text-chars", type=positive(int), default=10_000, metavar="N",
                   help="longest text, in characters; a longer one is a 422 (default 10000)")
    r.add_argument("--max-texts", type=positive(int), default=64, metavar="N",
                   help="most texts in one request; more is a 422 (default 64)")
    r.add_argument("--log-level", choices=LOG_LEVELS, default="info",
                   help="uvicorn's logging: startup, shutdown and one line a request at info "
                        "(default info)")
    r.set_defaults(func=run, show=show)


def run(args: argparse.Namespace) -> dict:
    try:
        from nerbook.serve import is_loopback, serve
    except ImportError as e:
        raise CliError(f"nerbook serve needs fastapi and uvicorn ({e}): "
                       "pip install fastapi uvicorn") from None
    if not is_loopback(args.host):
        print(f"nerbook: warning: --host {args.host} is not a loopback address: anyone who can "
              f"reach this machine on port {args.port} can use the model", file=sys.stderr)
    limits = {"max_batch": args.max_batch, "batch_wait_ms": args.batch_wait_ms,
              "max_body_bytes": args.max_body_bytes, "max_text_chars": args.max_text_chars,
              "max_texts": args.max_texts}
    try:
        serve(args.model, host=args.host, port=args.port, log_level=args.log_level, **limits)
    except OSError as e:  # the port is taken, the address is not this machine's, ...
        if isinstance(e, FileNotFoundError):
            raise
        raise CliError(str(e.strerror or e)) from None
    return {"model": args.model, "host": args.host, "port": args.port, "stopped": True}


def show(summary: dict) -> None:
    print(f"nerbook serve: stopped ({summary['host']}:{summary['port']})", file=sys.stderr)
