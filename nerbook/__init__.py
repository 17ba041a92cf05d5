"""nerbook: fine-tune a transformer for named-entity recognition, correctly and fast.

The library behind the course *Why ChatGPT wins*. Each module is one concept:

- :mod:`nerbook.data`      CoNLL files, label schemas, hub and synthetic datasets
- :mod:`nerbook.align`     word labels -> subword labels, windows for long sentences
- :mod:`nerbook.batching`  dynamic padding and length-grouped batches
- :mod:`nerbook.model`     loading models (hub, local, offline MiniLM, tiny random BERT)
- :mod:`nerbook.train`     the training loop (accelerate, AdamW, warm-up, early stopping)
- :mod:`nerbook.metrics`   entity-level (conlleval) and token-level scores
- :mod:`nerbook.predict`   words or raw text -> entity spans
- :mod:`nerbook.synthetic` seeded synthetic CoNLL-style data (offline profile)
- :mod:`nerbook.pretrain`  tiny causal-LM and masked-LM pretraining
- :mod:`nerbook.attention` scaled dot-product attention from scratch
- :mod:`nerbook.losses`    cross-entropy and its gradient by hand
- :mod:`nerbook.lora`      LoRA adapters written out, and merging them
- :mod:`nerbook.viz`       plots and HTML rendering
- :mod:`nerbook.bench`     benchmarks against the naive loop, Trainer and pipeline
- :mod:`nerbook.records`   provenance records of runs and benchmarks
- :mod:`nerbook.cli`       ``nerbook train|evaluate|predict|bench``

Submodules are imported on first use so that ``import nerbook`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

from nerbook.notebook import Profile, setup_notebook  # noqa: E402

_SUBMODULES = {
    "align", "attention", "batching", "bench", "cli", "data", "lora", "losses", "metrics", "model",
    "notebook", "predict", "pretrain", "records", "synthetic", "train", "viz",
}

__all__ = ["Profile", "__version__", "setup_notebook", *sorted(_SUBMODULES)]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"nerbook.{name}")
    raise AttributeError(f"module 'nerbook' has no attribute {name!r}")
