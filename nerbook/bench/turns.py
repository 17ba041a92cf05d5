"""Settings of one training step timed side by side (chapter "Making it fast"; ``bench/pack_width.py``,
``bench/attention_kernel.py``).

The offline MiniLM in training mode, its word embeddings frozen as in training, the same seeded
random batches of CoNLL windows for every setting, forward and backward passes without an optimiser
step (so that every setting sees the same weights), and the settings taking turns in a new seeded
order every round: on a shared machine, the setting that follows a change of shapes pays for it.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Callable
from time import perf_counter


def add_turn_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments every side-by-side timing takes: data, sentences, batch size, batches, rounds,
    threads and ``--record``."""
    p.add_argument("data", help="a CoNLL training file, or a folder with train.txt")
    p.add_argument("--limit", type=int, default=3000, help="training sentences to draw windows from")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--steps", type=int, default=30, help="batches per setting and round")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--record", help="write the measurements and their provenance to this JSON file")


def training_windows(args: argparse.Namespace):
    """The model and what every setting trains on: ``(model, tokenizer, windows, drawn, bf16)``,
    with ``windows`` every window of the first ``args.limit`` sentences (input ids and labels),
    ``drawn`` ``args.steps`` random batches of ``args.batch_size`` of them (seed 0), and ``bf16``
    whether this CPU runs bf16 natively (then autocast is on)."""
    import torch

    from nerbook.align import WindowConfig, encode_windows
    from nerbook.bench.contenders import load_bench_model
    from nerbook.data import load_splits
    from nerbook.runtime import resolve_precision
    from nerbook.train import freeze_word_embeddings

    torch.set_num_threads(min(args.threads, torch.get_num_threads()))
    train_ds, _, schema = load_splits(args.data, None, args.limit)
    torch.manual_seed(0)
    model, tokenizer = load_bench_model("offline", schema, train_ds["tokens"], seed=0)
    freeze_word_embeddings(model)
    model.train()
    windows = encode_windows(train_ds, tokenizer, WindowConfig()).select_columns(["input_ids", "labels"]).to_list()
    rng = random.Random(0)
    drawn = [rng.sample(windows, args.batch_size) for _ in range(args.steps)]
    return model, tokenizer, windows, drawn, resolve_precision("auto", "cpu") == "bf16"


def time_passes(model, batches, bf16: bool) -> float:
    """Seconds for the forward and backward passes of ``batches`` (bf16 autocast on the CPU with
    ``bf16``), gradients dropped after each."""
    import torch

    start = perf_counter()
    for batch in batches:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(**batch).loss
        loss.backward()
        model.zero_grad(set_to_none=True)
    return perf_counter() - start


def take_turns(names: list[str], run: Callable[[str, int | None], float], rounds: int) -> dict[str, list[float]]:
    """``run(name, first)`` times setting ``name`` on its first ``first`` batches (all with None):
    each setting once on 3 batches (warm-up: first calls allocate and pick kernels), then all of
    them ``rounds`` times, in a new order every round (seeded by the round). Returns the seconds of
    every round, by setting."""
    for name in names:
        run(name, 3)
    seconds = {name: [] for name in names}
    order = list(names)
    for r in range(rounds):
        random.Random(r).shuffle(order)
        for name in order:
            seconds[name].append(run(name, None))
    return seconds


def turn_setup(args: argparse.Namespace, bf16: bool, **more) -> dict:
    """The ``setup`` of a record of side-by-side timings: the arguments, threads and precision."""
    import torch

    return {"model": "offline", "limit": args.limit, "batch_size": args.batch_size, "steps": args.steps,
            "rounds": args.rounds, "threads": torch.get_num_threads(), "precision": "bf16" if bf16 else "fp32",
            **more}
