"""Does ``torch.compile`` pay for its compile time? (chapter "Making it fast")

Trains the same model on the same packed batches twice in this process, eager and then compiled
(``torch.compile(model, dynamic=True)``: packed batches change shape every step), with nerbook's
settings (bf16 autocast where native, fused AdamW, word embeddings frozen), and prints for each
the first step (where the compilation happens), the median of the later steps and the total:

    python bench/compile_check.py PATH/TO/conll2003 --limit 800
    python bench/compile_check.py PATH/TO/conll2003/train.txt --model bert-base-random --device cuda

``--record FILE`` writes the step times with their provenance to a JSON record (kind
``"experiment"``, which the results page leaves alone), for chapter "Making it fast" to read.
Run it with ``TORCHINDUCTOR_CACHE_DIR`` pointing to an empty folder to time a cold compilation;
the record says whether inductor's cache folder held anything when the run started.
"""

from __future__ import annotations

import argparse
import getpass
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from nerbook.align import WindowConfig, encode_windows
from nerbook.batching import PackingCollator
from nerbook.bench.contenders import load_bench_model
from nerbook.data import load_splits
from nerbook.records import write_record
from nerbook.runtime import resolve_device, resolve_precision
from nerbook.train import TrainConfig, freeze_word_embeddings, make_loader, make_optimizer


def run(model, tokenizer, train_ds, cfg: TrainConfig, device: str, compiled: bool) -> list[float]:
    """Seconds of every training step of one epoch."""
    freeze_word_embeddings(model)
    model.to(device).train()
    loader, _ = make_loader(encode_windows(train_ds, tokenizer, WindowConfig()), tokenizer, cfg,
                            PackingCollator.for_model(model, tokenizer))
    optimizer = make_optimizer(model, cfg, device)
    step_model = torch.compile(model, dynamic=True) if compiled else model
    precision = resolve_precision("auto", device)
    times = []
    for batch in loader:
        t0 = time.perf_counter()
        batch = {k: v.to(device) for k, v in batch.items()}
        with torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = step_model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", help="a CoNLL training file, or a folder with train.txt")
    p.add_argument("--model", default="offline", help="offline (MiniLM), bert-base-random, or a path")
    p.add_argument("--limit", type=int, default=800, help="training sentences (one epoch)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (the machines this book runs on have 2)")
    p.add_argument("--record", help="write the step times and their provenance to this JSON file")
    p.add_argument("--note", default="", help="what the record should say about the conditions of the run")
    args = p.parse_args()
    cache = Path(os.environ.get("TORCHINDUCTOR_CACHE_DIR")
                 or Path(tempfile.gettempdir()) / f"torchinductor_{getpass.getuser()}")
    warm_cache = cache.is_dir() and any(cache.iterdir())
    device = resolve_device(args.device)
    if device == "cpu":
        torch.set_num_threads(min(args.threads, torch.get_num_threads()))
    train_ds, _, schema = load_splits(args.data, None, args.limit)
    cfg = TrainConfig(batch_size=args.batch_size, lr=1e-4, seed=0)
    steps = {}
    for compiled in (False, True):
        torch.manual_seed(0)
        model, tokenizer = load_bench_model(args.model, schema, train_ds["tokens"], seed=0)
        times = run(model, tokenizer, train_ds, cfg, device, compiled)
        steps["compiled" if compiled else "eager"] = times
        later = times[1:] or times
        print(f"{'compiled' if compiled else 'eager   '}: {len(times)} steps in {sum(times):.1f} s; "
              f"first step {times[0]:.2f} s, median of the others {1000 * statistics.median(later):.0f} ms",
              flush=True)
    if args.record:
        setup = {"model": args.model, "n_train": len(train_ds), "batch_size": args.batch_size, "device": device,
                 "threads": torch.get_num_threads() if device == "cpu" else None,
                 "inductor_cache_warm": warm_cache, "note": args.note}
        path = write_record(args.record, {"setup": setup, "step_seconds": steps}, data=[args.data],
                            kind="experiment", command=["python", "bench/compile_check.py", *sys.argv[1:]])
        print("wrote", path)


if __name__ == "__main__":
    main()
