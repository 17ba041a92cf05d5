"""nerbook: fine-tune a transformer for named-entity recognition, correctly and fast.

The library behind the course *Why ChatGPT wins*. Each module is one concept:

- :mod:`nerbook.runtime`   seeds, device and numeric precision: what a run runs on
- :mod:`nerbook.schemes`   tagging schemes (IOB1, IOB2, BIOES) and converting between them
- :mod:`nerbook.data`      CoNLL files, label schemas, local and hub datasets
- :mod:`nerbook.hub`       the local Hugging Face hub cache (the ``full`` profile offline)
- :mod:`nerbook.align`     word labels -> subword labels, windows for long sentences
- :mod:`nerbook.batching`  dynamic padding and length-grouped batches
- :mod:`nerbook.model`     loading models (hub, local, offline MiniLM, tiny random BERT)
- :mod:`nerbook.tasks`     what differs between tasks: features, batches, dev score (NER's here)
- :mod:`nerbook.train`     the training loop (accelerate, AdamW, warm-up, early stopping)
- :mod:`nerbook.classify`  a second task: labelled texts, a classification head, accuracy and macro-F1
- :mod:`nerbook.instruct`  answers in text: instruction pairs, the answer-only loss, scoring answers
- :mod:`nerbook.scaling`   truncated encoders, training compute C = 6NT, power-law fits
- :mod:`nerbook.metrics`   entity-level (conlleval) and token-level scores
- :mod:`nerbook.predict`   words or raw text -> entity spans
- :mod:`nerbook.synthetic` seeded synthetic CoNLL-style data (offline profile)
- :mod:`nerbook.pretrain`  tiny causal-LM and masked-LM pretraining
- :mod:`nerbook.attention` scaled dot-product attention from scratch
- :mod:`nerbook.losses`    cross-entropy and its gradient by hand
- :mod:`nerbook.lora`      LoRA adapters written out, and merging them
- :mod:`nerbook.adversarial` FGM and PGD in embedding space
- :mod:`nerbook.perturb`   label-preserving perturbations of NER data, and a robustness report
- :mod:`nerbook.calibration` entity confidences, calibration error, temperature scaling, abstention
- :mod:`nerbook.pii`       pattern PII (e-mail, phone, card, IBAN, IP) with checksums, placeholders
- :mod:`nerbook.redact`    PII redaction: the tagger's names and the patterns together
- :mod:`nerbook.pii_eval`  a synthetic PII corpus and Presidio-style per-type scores (F2)
- :mod:`nerbook.bias`      a bias audit by name origin, bootstrap intervals, a mitigation
- :mod:`nerbook.attribution` integrated gradients and gradient x input, with a sanity check
- :mod:`nerbook.export`    ONNX export, int8 quantization, running an export with ONNX Runtime
- :mod:`nerbook.continual` a second data domain, replay, and continual fine-tuning
- :mod:`nerbook.serve`     an HTTP API (FastAPI) with micro-batching, and a bounded load test
- :mod:`nerbook.multimodal` text features, late and cross-attention fusion, CLIP's InfoNCE
- :mod:`nerbook.records`   provenance records of runs and benchmarks
- :mod:`nerbook.spread`    several seeds: mean +- sd, and whether a gap exceeds the spread
- :mod:`nerbook.viz`       plots and HTML rendering
- :mod:`nerbook.bench`     benchmarks against the naive loop, Trainer and pipeline
- :mod:`nerbook.cli`       ``nerbook train|evaluate|predict|redact|robustness|export|serve|bench``
- :mod:`nerbook.notebook`  the first cell of every chapter

Layers run one way: ``runtime``, ``schemes`` -> ``data`` -> ``align`` -> ``batching`` ->
``model`` -> ``predict`` -> ``tasks`` -> ``train`` -> ``classify``, ``instruct``, with ``metrics`` beside; ``attention``, ``losses``,
``lora``, ``multimodal``, ``pretrain``, ``adversarial`` apart; ``perturb``, ``bias`` and ``redact`` above ``predict``, ``calibration`` above ``metrics``,
``pii``, ``attribution`` and ``scaling`` apart; the faces ``viz``, ``bench``, ``cli``, ``serve`` and ``notebook`` on top.
No core module imports a face (``tests/test_structure.py`` keeps it so).

Submodules are imported on first use so that ``import nerbook`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

from nerbook.notebook import Profile, setup_notebook  # noqa: E402

_SUBMODULES = {
    "adversarial", "align", "attention", "attribution", "averaging", "batching", "bench", "bias", "calibration", "classify", "cli",
    "continual", "data", "export", "hub", "instruct", "layerwise", "lora", "losses", "metrics", "model", "multimodal", "notebook", "perturb",
    "pii", "pii_eval", "predict", "pretrain", "records", "redact", "runtime", "scaling", "schemes", "serve", "spread",
    "switches", "synthetic", "tasks", "train", "viz",
}

__all__ = ["Profile", "__version__", "setup_notebook", *sorted(_SUBMODULES)]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"nerbook.{name}")
    raise AttributeError(f"module 'nerbook' has no attribute {name!r}")
