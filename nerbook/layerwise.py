"""Layer-wise learning-rate decay (chapter "Results", the accuracy goal).

A pretrained encoder's lower layers hold the most general features and the head none at all, so
fine-tuning can move the top fastest and the bottom least: the head trains at the peak rate,
the encoder's top layer at ``decay`` times it, the layer below at ``decay**2`` and so on down to
the embeddings (Howard and Ruder 2018, "discriminative fine-tuning"; Clark et al. 2020, ELECTRA).
:func:`layer_decay_groups` builds the optimizer's parameter groups for it, with the weight-decay
split of :func:`nerbook.train.param_groups`.
"""

from __future__ import annotations

import re

import torch

_LAYER = re.compile(r"\.(\d+)\.")


def layer_of(name: str, prefix: str, n_layers: int) -> int:
    """Where the parameter ``name`` sits, counted from the bottom: 0 for the embeddings,
    ``i + 1`` for the encoder's layer ``i``, ``n_layers + 1`` for everything above (pooler,
    head). ``prefix`` is the encoder's attribute (``model.base_model_prefix``, ``"bert"``), or
    ``""`` for a bare encoder."""
    if prefix and not name.startswith(prefix + "."):
        return n_layers + 1  # the task head
    inside = name[len(prefix) + 1:] if prefix else name
    if inside.startswith("embeddings."):
        return 0
    match = _LAYER.search("." + inside)
    if match is None:
        return n_layers + 1  # the pooler
    layer = int(match.group(1))
    if layer >= n_layers:
        raise ValueError(f"{name}: layer {layer}, but the model has {n_layers} layers")
    return layer + 1


def layer_decay_groups(model: torch.nn.Module, weight_decay: float, lr: float, decay: float) -> list[dict]:
    """AdamW parameter groups with the rate ``lr * decay**depth``, ``depth`` counted down from
    the head (0) to the embeddings; matrices decayed by ``weight_decay``, vectors (biases,
    LayerNorm) not. Groups come top first, so group 0 holds the peak rate."""
    if not 0 < decay <= 1:
        raise ValueError(f"layer_decay must be in (0, 1], not {decay}")
    n_layers = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    if n_layers is None:
        raise ValueError(f"layer-wise learning-rate decay needs a model with config.num_hidden_layers, "
                         f"not {type(model).__name__}")
    prefix = getattr(model, "base_model_prefix", "")
    prefix = prefix if hasattr(model, prefix) else ""  # a bare encoder: no head
    groups: dict[tuple[int, float], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        depth = n_layers + 1 - layer_of(name, prefix, n_layers)
        wd = weight_decay if p.ndim >= 2 else 0.0
        group = groups.setdefault((depth, wd), {"params": [], "weight_decay": wd, "lr": lr * decay**depth})
        group["params"].append(p)
    return [groups[k] for k in sorted(groups, key=lambda k: (k[0], -k[1]))]
