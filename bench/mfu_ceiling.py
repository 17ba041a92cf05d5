"""How high can the training step's MFU go on this CPU? (chapter "Making it fast")

Times nerbook's training step for MiniLM as ``nerbook train --model offline`` takes it (batches of
64 packed windows, the eager attention kernel without attention dropout, the model's other dropout,
bf16 autocast where native, fused AdamW, word embeddings frozen), then the same step with the
levers that remove what is not matrix products, alone and together:

- ``compiled``: ``torch.compile(model, dynamic=True)`` fuses the elementwise work (packed batches
  change shape every step); its first step, where it compiles, is timed apart;
- ``max-autotune``: the same with ``mode="max-autotune"``, which times alternative kernels for the
  products (on a CPU, inductor's GEMM templates, which can fuse the work that follows a product into
  it) and keeps the fastest;
- ``no dropout``: every dropout rate 0, so no random masks are drawn;
- ``bf16 weights``: the model cast to bf16 and run without autocast, so no casts of weights,
  activations or gradients; the optimiser then updates bf16 weights, which loses small updates:
  a bound on what fewer casts could give, not a recipe;
- ``compiled, bf16 weights`` (the model's dropout kept) and ``all three``.

Each setting starts from the same weights, trains on the same batches (``--warmup`` untimed, then
``--steps`` timed), runs ``--rounds`` times in turns with the others (the fastest round counts) and is
measured against the 1024 x 1024 bf16 product timed just before and just
after it (the faster of the two, as ``nerbook bench train`` does). Last, the model's linear layers'
products alone (forward and both backward products, at the mean tokens of a batch,
:func:`nerbook.bench.measure.linear_gemm_rate`) give the ceiling: the MFU of a step that did
nothing but its matrix products.

    python bench/mfu_ceiling.py PATH/TO/conll2003 --record records/mfu-ceiling-cpu-minilm-conll2003.json

The record's kind is ``"experiment"``.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time

import torch

from nerbook.align import WindowConfig, encode_windows
from nerbook.batching import PackingCollator
from nerbook.bench.contenders import load_bench_model
from nerbook.bench.measure import TokenCounter, linear_gemm_rate, matmul_tflops, model_flops
from nerbook.cli.train import OFFLINE_RECIPE
from nerbook.data import load_splits
from nerbook.records import write_record
from nerbook.runtime import resolve_precision
from nerbook.train import TrainConfig, make_loader, make_optimizer, run_settings

#: The settings, in the order they run: what each changes in nerbook's step.
SETTINGS = {"nerbook": {}, "compiled": {"compile": True}, "max-autotune": {"compile": "max-autotune"},
            "no dropout": {"dropout": 0.0},
            "bf16 weights": {"bf16_weights": True}, "compiled, bf16 weights": {"compile": True, "bf16_weights": True},
            "all three": {"compile": True, "dropout": 0.0, "bf16_weights": True}}


def recipe_config(dropout: float | None = None) -> TrainConfig:
    """The training configuration of ``nerbook train --model offline`` (``OFFLINE_RECIPE``), with
    ``dropout`` for every dropout layer (None: the model's own)."""
    return TrainConfig(**{**OFFLINE_RECIPE, "dropout": dropout}, seed=0)


def time_setting(model, batches, setting: dict, warmup: int, steps: int) -> dict:
    """Train ``model`` ``warmup`` untimed steps (the first one timed apart), then ``steps`` timed
    ones, with ``setting``'s levers; return the seconds."""
    bf16_weights = setting.get("bf16_weights", False)
    if bf16_weights:
        model.to(torch.bfloat16)
        batches = [{k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in b.items()} for b in batches]
    autocast = not bf16_weights and resolve_precision("auto", "cpu") == "bf16"
    optimizer = make_optimizer(model, recipe_config(), "cpu")
    mode = setting.get("compile")
    step_model = torch.compile(model, dynamic=True, mode=None if mode is True else mode) if mode else model

    def step(batch) -> float:
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = step_model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    first = [step(b) for b in batches[:warmup]]
    timed = [step(b) for b in batches[warmup:warmup + steps]]
    return {"first_step_seconds": first[0], "step_seconds": timed, "seconds": sum(timed)}


def measure(name: str, args, train_ds, schema) -> tuple[dict, torch.nn.Module]:
    """One setting's row (its step times, tokens, model FLOP rate and MFU against the bf16 1024 x 1024
    rate timed just before and just after it, the faster) and the model it trained."""
    setting = SETTINGS[name]
    torch.manual_seed(0)
    model, tokenizer = load_bench_model(args.model, schema, train_ds["tokens"], seed=0)
    run_settings(model, recipe_config(setting.get("dropout")))
    model.train()
    loader, _ = make_loader(encode_windows(train_ds, tokenizer, WindowConfig()), tokenizer, recipe_config(),
                            PackingCollator.for_model(model, tokenizer))
    batches = list(loader)
    if len(batches) < args.warmup + args.steps:
        raise SystemExit(f"{args.data}: {len(batches)} batches; --warmup and --steps need {args.warmup + args.steps}")
    counter = TokenCounter(model, tokenizer.pad_token_id)
    counter.remove()  # counted from the batches before the timing: no hook runs in the timed steps
    for b in batches[args.warmup:args.warmup + args.steps]:
        counter.count(b["input_ids"], b.get("attention_mask"))
    totals = counter.totals()
    before = matmul_tflops("cpu", "bf16")
    row = time_setting(model, batches, setting, args.warmup, args.steps)
    reference = max(before, matmul_tflops("cpu", "bf16"))
    tflops = model_flops(model, totals["real_tokens"], totals["sum_len_sq"]) / row["seconds"] / 1e12
    return {**row, **totals, "tokens_per_second": totals["real_tokens"] / row["seconds"],
            "model_tflops": tflops, "bf16_tflops": [before, reference], "mfu_bf16": tflops / reference}, model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", help="a CoNLL training file, or a folder with train.txt")
    p.add_argument("--model", default="offline", help="offline (MiniLM), bert-base-random, or a path")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (the compile happens in the first)")
    p.add_argument("--steps", type=int, default=15, help="timed steps")
    p.add_argument("--rounds", type=int, default=2, help="times each setting runs, in turns; the faster counts")
    p.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    p.add_argument("--threads", type=int, default=2, help="CPU threads (the machines this book runs on have 2)")
    p.add_argument("--record", help="write the measurements and their provenance to this JSON file")
    p.add_argument("--note", default="", help="what the record should say about the conditions of the run")
    args = p.parse_args()
    torch.set_num_threads(min(args.threads, torch.get_num_threads()))
    batch_size = OFFLINE_RECIPE["batch_size"]
    train_ds, _, schema = load_splits(args.data, None, batch_size * (args.warmup + args.steps))
    runs: dict[str, list[dict]] = {name: [] for name in args.settings}
    for round_, name in itertools.product(range(args.rounds), args.settings):
        row, model = measure(name, args, train_ds, schema)
        runs[name].append(row)
        print(f"round {round_ + 1}, {name:<22} {row['tokens_per_second']:6,.0f} real tokens/s, median step "
              f"{1e3 * statistics.median(row['step_seconds']):.0f} ms, first step {row['first_step_seconds']:.1f} s, "
              f"model {1e3 * row['model_tflops']:.0f} GFLOP/s, bf16 1024 {1e3 * row['bf16_tflops'][1]:.0f}: "
              f"MFU {row['mfu_bf16']:.1%}", flush=True)
    rows = {name: {**min(r, key=lambda x: x["seconds"]), "rounds": r} for name, r in runs.items()}
    tokens = round(row["computed_tokens"] / row["batches"])
    before = matmul_tflops("cpu", "bf16")
    gemm = linear_gemm_rate(model, tokens, "bf16")
    reference = max(before, matmul_tflops("cpu", "bf16"))
    ceiling = {"tokens": tokens, "linear_tflops": gemm, "bf16_tflops": reference, "mfu_bf16": gemm / reference}
    print(f"linear layers' products alone ({tokens} tokens a batch): {1e3 * gemm:.0f} GFLOP/s, "
          f"bf16 1024 {1e3 * reference:.0f}: MFU ceiling {gemm / reference:.1%}")
    if args.record:
        setup = {"model": args.model, "batch_size": batch_size, "warmup": args.warmup, "steps": args.steps,
                 "rounds": args.rounds, "threads": torch.get_num_threads(), "recipe": OFFLINE_RECIPE,
                 "settings": SETTINGS, "note": args.note}
        path = write_record(args.record, {"setup": setup, "rows": rows, "ceiling": ceiling}, data=[args.data],
                            kind="experiment", command=["python", "bench/mfu_ceiling.py", *sys.argv[1:]])
        print("wrote", path)


if __name__ == "__main__":
    main()
