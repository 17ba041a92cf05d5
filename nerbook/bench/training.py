"""``nerbook bench train``: every contender on the same data, interleaved (chapter "Making it
fast").

:func:`bench_train` trains the same model (a fresh copy each time, loading not timed) on the
same sentences with each contender in turn, interleaved when repeated, and reports the wall
time, the real (non-pad) tokens per second, the tokens actually computed (padding included),
the peak memory and the dev entity F1, every contender evaluated the same way
(:func:`nerbook.train.evaluate`, on words, in fp32).
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, replace
from pathlib import Path

from nerbook.bench.contenders import TrainSpec, run_train_contender
from nerbook.bench.measure import MEMORY_NOTE, matmul_rates, peak_tflops
from nerbook.bench.runner import Runner
from nerbook.runtime import resolve_device, resolve_precision


def summarise(runs: dict[str, list[dict]], reference: str = "nerbook", peak: float | None = None,
              rates: dict[str, float] | None = None) -> dict:
    """Per contender: best-of-R seconds, tokens/s, computed tokens, peak memory, mean dev F1, ratio;
    ``mfu`` against a card's ``peak`` TFLOP/s, and ``mfu_fp32``/``mfu_bf16`` against the matrix
    product rates (TFLOP/s) measured in the same run: those just before and after the best run
    (its ``matmul_tflops``) where it has them, else ``rates``. Every run's own MFU is listed too."""
    out: dict[str, dict] = {}
    for name, rs in runs.items():
        best = min(rs, key=lambda r: r["seconds"])
        f1s = [r["dev_f1"] for r in rs if r.get("dev_f1") is not None]
        mems = [r["peak_mem_mb"] for r in rs if r.get("peak_mem_mb") is not None]
        entry = {"seconds": best["seconds"], "tokens_per_s": best["real_tokens"] / best["seconds"],
                 "computed_tokens": best["computed_tokens"], "real_tokens": best["real_tokens"],
                 "padding_share": 1 - best["real_tokens"] / max(1, best["computed_tokens"]),
                 "peak_mem_mb": max(mems) if mems else None,
                 "dev_f1": sum(f1s) / len(f1s) if f1s else None,
                 "train_loss": best.get("train_loss"),
                 "model_tflop": best["model_flops"] / 1e12,
                 "runs": [{**{k: r.get(k) for k in ("seconds", "peak_mem_mb", "dev_f1", "train_loss")},
                           **mfus(r, r.get("matmul_tflops", rates))} for r in rs]}
        if peak:
            entry["mfu"] = best["model_flops"] / best["seconds"] / (peak * 1e12)
        entry.update(mfus(best, best.get("matmul_tflops", rates)))
        if "matmul_tflops" in best:
            entry["matmul_tflops"] = best["matmul_tflops"]
        out[name] = entry
    ref = out[reference]["seconds"]
    for entry in out.values():
        entry["ratio"] = entry["seconds"] / ref
    return out


def mfus(run: dict, rates: dict[str, float] | None) -> dict[str, float]:
    """``mfu_<dtype>``: the run's model FLOPs per second over each matrix product rate (TFLOP/s)."""
    return {f"mfu_{d}": run["model_flops"] / run["seconds"] / (rate * 1e12) for d, rate in (rates or {}).items()}


def summarise_until(runs: dict[str, list[dict]], reference: str = "nerbook") -> dict:
    """Per contender of a time-to-F1 run: the training seconds and real tokens to the target in
    each repeat (None where it was not reached), their mean over the repeats that reached it, the
    best dev F1, and every repeat's curve; ``ratio``: the contender's mean seconds over nerbook's
    (how many times sooner nerbook got there), when both reached the target every time."""
    out: dict[str, dict] = {}
    for name, rs in runs.items():
        secs = [r["seconds_to_f1"] for r in rs]
        toks = [r["tokens_to_f1"] for r in rs]
        hit = [s for s in secs if s is not None]
        out[name] = {"seconds_to_f1": secs, "tokens_to_f1": toks, "reached": len(hit), "repeats": len(rs),
                     "mean_seconds_to_f1": sum(hit) / len(hit) if hit else None,
                     "mean_tokens_to_f1": (sum(t for t in toks if t is not None) / len(hit)) if hit else None,
                     "best_f1": max(r["best_f1"] for r in rs), "reasons": [r["reason"] for r in rs],
                     "train_seconds": [r["seconds"] for r in rs], "eval_seconds": [r["eval_seconds"] for r in rs],
                     "curves": [r["curve"] for r in rs]}
    ref = out[reference]
    for entry in out.values():
        both = entry["reached"] == entry["repeats"] and ref["reached"] == ref["repeats"]
        entry["ratio"] = entry["mean_seconds_to_f1"] / ref["mean_seconds_to_f1"] if both else None
    return out


def frozen_tiny(spec: TrainSpec, folder: str) -> TrainSpec:
    """For ``tiny``, make the model and its tokenizer once and save them, so that every run
    starts from the same weights and the same vocabulary (a WordPiece tokenizer trained
    anew in each process may differ)."""
    if spec.model != "tiny":
        return spec
    from nerbook.data import load_splits
    from nerbook.model import load_model, save_checkpoint

    train_ds, _, schema = load_splits(spec.train, spec.valid, spec.limit)
    model, tokenizer = load_model("tiny", schema, texts=list(train_ds["tokens"]), seed=spec.seed)
    save_checkpoint(model, tokenizer, Path(folder) / "tiny")
    return replace(spec, model=str(Path(folder) / "tiny"))


def bench_train(spec: TrainSpec, against: list[str], repeat: int = 1, isolate: bool = True,
                log=None) -> dict:
    """Run nerbook and the contenders ``repeat`` times, interleaved; see the module docstring."""
    import torch

    order = ["nerbook", *[c for c in against if c != "nerbook"]]
    runner = Runner(isolate, ("transformers.trainer",) if any(c.startswith("trainer") for c in order) else ())
    runs: dict[str, list[dict]] = {c: [] for c in order}
    device = resolve_device(spec.device)
    samples = [matmul_rates(device)]  # before the first run and after every run
    with tempfile.TemporaryDirectory() as tmp:
        frozen = frozen_tiny(spec, tmp)
        for r in range(repeat):
            run_spec = replace(frozen, seed=spec.seed + r, repeat=r)  # F1 averaged over seeds
            for c in order:
                run = runner(run_train_contender, c, run_spec)
                samples.append(matmul_rates(device))  # the faster of just before and just after: what the cores could do
                run["matmul_tflops"] = {d: max(samples[-2][d], samples[-1][d]) for d in samples[-1]}
                runs[c].append(run)
                if log and spec.until_f1 is not None:
                    log(f"[{r + 1}/{repeat}] {c:<14} {run['reason']:<7} after {run['seconds']:8.1f} s: "
                        f"dev F1 {run['dev_f1']:.4f} (best {run['best_f1']:.4f}); to F1 {spec.until_f1}: "
                        f"{run['seconds_to_f1']} s")
                elif log:
                    log(f"[{r + 1}/{repeat}] {c:<14} {run['seconds']:8.2f} s  dev F1 {run.get('dev_f1')}")
    rates = {d: max(sample[d] for sample in samples) for d in samples[0]}
    setup = {"task": "train", **asdict(spec), "repeat": repeat, "isolated": isolate,
             "contender_order": order, "device": device,
             "threads": spec.threads or torch.get_num_threads(),
             "nerbook_precision": resolve_precision("auto", device),
             "seconds": "best of the interleaved repeats; model loading and evaluation excluded, "
                        "data encoding included",
             "dev_f1": "entity F1 on the dev set (nerbook.train.evaluate, fp32), mean over the repeats; "
                       "repeat r uses seed + r for every contender (the Trainer: 42 + seed + r)",
             "memory": MEMORY_NOTE[device] if isolate else "not measured per run (isolation off)",
             "peak_bf16_tflops": peak_tflops(device),
             "matmul_tflops": rates, "matmul_samples": samples,
             "mfu": "model FLOPs (6 x non-embedding parameters x real tokens + attention) per second of "
                    "the best run, over a card's bf16 peak (mfu) and over the rate of 1024 x 1024 matrix "
                    "products measured just before and just after that run, the faster (mfu_fp32, mfu_bf16; "
                    "the contender's matmul_tflops); setup matmul_tflops: the fastest of all the samples "
                    "(matmul_samples: before the first run and after each run, in order)"}
    first = runs["nerbook"][0]
    setup.update(n_train=first["n_train"], n_valid=first["n_valid"], parameters=first["parameters"])
    contenders = summarise(runs, peak=setup["peak_bf16_tflops"], rates=rates)
    if not isolate:
        for entry in contenders.values():
            entry["peak_mem_mb"] = None
    result = {"contenders": contenders, "setup": setup}
    if spec.until_f1 is not None:
        setup["time_to_f1"] = (
            f"every contender trains until its dev entity F1 (fp32, a copy of the weights) reaches "
            f"{spec.until_f1}, scored every {spec.eval_every} real training tokens; the clock stops while the "
            f"dev set is scored; a run also ends when its epochs end or after {spec.budget} training seconds. "
            "seconds (above) and MFU are then those of the whole run up to its end")
        result["time_to_f1"] = summarise_until(runs)
    return result
