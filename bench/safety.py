"""Can the tagger's confidence be trusted, and what does abstaining buy? (chapter "Safety and ethics")

Runs a checkpoint trained by ``nerbook train`` over the CoNLL-2003 dev file once, keeps the word
logits, and splits dev *by document* in two halves: the even documents fit the temperature
(Guo et al. 2017), the odd ones are held out. For each half, before and after scaling: the word
NLL, the word- and entity-level expected calibration error (10 equal bins) and the reliability
bins; then selective prediction on the held-out half: precision at 90% and 50% coverage, and the
thresholds chosen on the fitting half applied to the held-out one:

    nerbook train --train PATH/TO/conll2003 --model offline --out runs/conll-minilm-trained \\
        --epochs 2 --lr 1e-4 --batch-size 16 --seed 0 --train-embeddings
    python bench/safety.py PATH/TO/conll2003 --model runs/conll-minilm-trained/best \\
        --record records/safety-cpu-minilm-conll2003.json
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

from nerbook.calibration import (
    entity_outcomes,
    expected_calibration_error,
    fit_temperature,
    nll,
    precision_at_coverage,
    reliability_bins,
    tags_and_probs,
)
from nerbook.data import read_conll_sentences, sentences_to_dataset, tag_names
from nerbook.metrics import entity_scores
from nerbook.model import read_checkpoint_meta
from nerbook.predict import Tagger
from nerbook.records import write_record

COVERAGES = (0.9, 0.5)


def generic_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The same fit by a generic bounded scalar optimiser (scipy), as a check of L-BFGS."""
    from scipy.optimize import minimize_scalar

    def f(log_t: float) -> float:
        return float(torch.nn.functional.cross_entropy(logits / math.exp(log_t), labels))

    return math.exp(minimize_scalar(f, bounds=(-3, 3), method="bounded", options={"xatol": 1e-6}).x)


def half_report(logits, gold, gold_ids, names, temperature: float) -> dict:
    """NLL, word and entity ECE (least sure word and product) and the bins at one temperature."""
    tags, probs = tags_and_probs(logits, names, temperature)
    word_conf = [p for sent in probs for p in sent]
    word_ok = [t == g for ts, gs in zip(tags, gold) for t, g in zip(ts, gs)]
    out = {"temperature": temperature, "nll": nll(logits, gold_ids, temperature),
           "word_ece": expected_calibration_error(word_conf, word_ok)}
    for how in ("min", "product"):
        conf, ok = entity_outcomes(gold, tags, probs, how)
        out[f"entity_ece_{how}"] = expected_calibration_error(conf, ok)
        out[f"entity_bins_{how}"] = reliability_bins(conf, ok)
    out["entities"], out["entity_precision"] = len(conf), sum(ok) / len(ok)
    return out


def selective(gold, logits, names, temperature: float, thresholds: dict | None = None) -> dict:
    """Precision at each coverage of :data:`COVERAGES`; with ``thresholds`` (chosen on the other
    half), also what those thresholds give here: coverage, precision and entity F1."""
    tags, probs = tags_and_probs(logits, names, temperature)
    conf, ok = entity_outcomes(gold, tags, probs)
    out = {"all": {"coverage": 1.0, "precision": sum(ok) / len(ok), "f1": entity_scores(gold, tags)["overall"]["f1"]}}
    for c in COVERAGES:
        row = precision_at_coverage(conf, ok, c)
        out[f"at_{c}"] = {"threshold": row["threshold"], "coverage": row["coverage"], "precision": row["precision"]}
    for c, t in (thresholds or {}).items():
        kept = [k for k, x in zip(ok, conf) if x >= t]
        out[f"threshold_from_fit_{c}"] = {"threshold": t, "coverage": len(kept) / len(ok),
                                          "precision": sum(kept) / len(kept)}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", help="folder with valid.txt (CoNLL-2003)")
    p.add_argument("--model", required=True, help="checkpoint folder saved by nerbook train")
    p.add_argument("--record", help="write the results and their provenance to this JSON file")
    args = p.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    tagger = Tagger.from_checkpoint(args.model, batch_size=64)
    names = tagger.schema.names
    dev = sentences_to_dataset(read_conll_sentences(Path(args.data) / "valid.txt", schema=tagger.schema),
                               tagger.schema)
    logits = tagger.word_logits(dev)
    gold, gold_ids = tag_names(dev), dev["ner_tags"]
    halves = {"fit": [i for i, d in enumerate(dev["doc_id"]) if d % 2 == 0],
              "held_out": [i for i, d in enumerate(dev["doc_id"]) if d % 2 == 1]}
    part = {h: ([logits[i] for i in idx], [gold[i] for i in idx], [gold_ids[i] for i in idx])
            for h, idx in halves.items()}
    z = torch.cat(part["fit"][0])
    y = torch.tensor([i for sent in part["fit"][2] for i in sent])
    temperature, check = fit_temperature(z, y), generic_temperature(z, y)
    print(f"T = {temperature:.4f} (L-BFGS), {check:.4f} (scipy bounded)", flush=True)
    result = {"checkpoint": read_checkpoint_meta(args.model), "temperature": temperature, "temperature_scipy": check,
              "halves": {h: {"sentences": len(idx), "documents": len({dev['doc_id'][i] for i in idx})}
                         for h, idx in halves.items()}}
    for h, (lg, g, gi) in part.items():
        result[h] = {"before": half_report(lg, g, gi, names, 1.0), "after": half_report(lg, g, gi, names, temperature)}
        print(h, {f"{key} {k}": round(v[key], 4) for key in ("nll", "word_ece", "entity_ece_min")
                  for k, v in result[h].items()}, flush=True)
    fit_sel = selective(part["fit"][1], part["fit"][0], names, temperature)
    thresholds = {c: fit_sel[f"at_{c}"]["threshold"] for c in COVERAGES}
    result["selective"] = {"fit": fit_sel,
                           "held_out": selective(part["held_out"][1], part["held_out"][0], names, temperature, thresholds)}
    print("selective, held out:", result["selective"]["held_out"], flush=True)
    if args.record:
        path = write_record(args.record, result, data=[Path(args.data) / "valid.txt"], kind="experiment",
                            command=["python", "bench/safety.py", *sys.argv[1:]])
        print("wrote", path)


if __name__ == "__main__":
    main()
