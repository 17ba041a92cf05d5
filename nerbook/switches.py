"""Switches a training run flips on a loaded model and flips back after it: the dropout rates and
the attention kernel (chapter "Making it fast"). Each setter returns what it replaced, which a
second call puts back (``nerbook.train.run_settings``)."""

from __future__ import annotations

import torch

#: Config fields that give a BERT-style model's dropout rates (hidden states, attention weights, head).
DROPOUT_FIELDS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout")
#: The name ending of a BERT-style model's dropout on the attention weights (the rest drop hidden states).
ATTENTION_DROPOUT = "attention.self.dropout"


def set_dropout(model: torch.nn.Module, rate: float | dict, attention_only: bool = False) -> dict:
    """Set every dropout layer of ``model`` to ``rate``, and the config's dropout fields with it
    (so a saved checkpoint says what it trained with); return the old rates, which a second call
    with that dict puts back (chapter "Making it fast"). ``attention_only`` sets only the dropout on
    the attention weights of a BERT-style model (layers named ``...attention.self.dropout``, config
    field ``attention_probs_dropout_prob``); a model without them is a ``ValueError``.

    transformers' BERT reads its attention dropout from the layer's ``p`` at every call, so this
    works on a loaded model; its config fields only matter for a model built again from the config.
    """
    layers = {name: m for name, m in model.named_modules() if isinstance(m, torch.nn.Dropout)
              and (not attention_only or name.endswith(ATTENTION_DROPOUT))}
    if attention_only and not layers:
        raise ValueError(f"{type(model).__name__} has no BERT-style attention dropout (*.{ATTENTION_DROPOUT})")
    config = getattr(model, "config", None)
    fields = [f for f in (("attention_probs_dropout_prob",) if attention_only else DROPOUT_FIELDS) if hasattr(config, f)]
    old = {"layers": {name: m.p for name, m in layers.items()}, "config": {f: getattr(config, f) for f in fields}}
    if isinstance(rate, dict):
        for name, p in rate["layers"].items():
            layers[name].p = p
        for f, value in rate["config"].items():
            setattr(config, f, value)
        return old
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout rate {rate} is not in [0, 1)")
    for m in layers.values():
        m.p = rate
    for f in fields:
        setattr(config, f, rate)
    return old


def set_attention(model: torch.nn.Module, kernel: str) -> str:
    """Switch a transformers model's attention to ``kernel`` (``"eager"``: the matrix products and
    softmax written out; ``"sdpa"``: torch's ``scaled_dot_product_attention``); return the one it
    had, which a second call puts back (chapter "Making it fast": on a CPU, eager attention trained
    faster). A model without the switch, or an unknown kernel, is a ``ValueError``."""
    if kernel not in ("eager", "sdpa"):
        raise ValueError(f"attention kernel {kernel!r}: choose 'eager' or 'sdpa'")
    config = getattr(model, "config", None)
    if not hasattr(model, "set_attn_implementation") or config is None:
        raise ValueError(f"{type(model).__name__} has no switch of attention kernel")
    before = getattr(config, "_attn_implementation", None) or "eager"
    model.set_attn_implementation(kernel)
    return before
