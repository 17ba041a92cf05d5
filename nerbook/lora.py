"""LoRA, low-rank adaptation, written out (chapter "Parameter-efficient fine-tuning").

Instead of updating a pretrained weight matrix ``W`` (``d_out x d_in``), LoRA keeps it frozen
and learns a low-rank update ``ΔW = (alpha / r) B A``, with ``A`` (``r x d_in``) and ``B``
(``d_out x r``) and ``r`` much smaller than either side (Hu et al., 2021):

    h = W x + b + (alpha / r) B A dropout(x)

``B`` starts at zero, so the adapted model starts as the pretrained one. After training,
``merge_lora`` folds ``ΔW`` into ``W``: the result is a plain model, as fast as the original.
``peft`` does the same (``LoraConfig``); the chapter checks the two against each other.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update ``(alpha / r) B A``."""

    def __init__(self, base: nn.Linear, r: int = 8, alpha: float = 16.0, dropout: float = 0.0) -> None:
        super().__init__()
        if r < 1:
            raise ValueError(f"LoRA rank r must be >= 1, got {r}")
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        self.r, self.alpha = r, alpha
        self.scaling = alpha / r
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        w = base.weight
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features, device=w.device, dtype=w.dtype))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r, device=w.device, dtype=w.dtype))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as nn.Linear (and peft) initialise

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (self.dropout(x) @ self.lora_A.T @ self.lora_B.T) * self.scaling

    def delta_weight(self) -> torch.Tensor:
        """``ΔW = (alpha / r) B A``, the shape of the base weight."""
        return (self.lora_B @ self.lora_A) * self.scaling


def add_lora(model: nn.Module, r: int = 8, alpha: float = 16.0, dropout: float = 0.0,
             target_modules: Sequence[str] = ("query", "value"),
             trainable: Sequence[str] = ("classifier",)) -> list[str]:
    """Freeze ``model`` and wrap every ``nn.Linear`` whose name ends with one of
    ``target_modules`` in a :class:`LoRALinear`; the modules named in ``trainable`` (the new
    classification head) stay trainable. Returns the names of the wrapped modules."""
    for p in model.parameters():
        p.requires_grad_(False)
    targets = [name for name, m in model.named_modules()
               if isinstance(m, nn.Linear) and name.rsplit(".", 1)[-1] in target_modules]
    if not targets:
        raise ValueError(f"no nn.Linear named {list(target_modules)} in {type(model).__name__}")
    for name in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, LoRALinear(getattr(parent, child), r, alpha, dropout))
    for name, m in model.named_modules():
        if name.rsplit(".", 1)[-1] in trainable:
            for p in m.parameters():
                p.requires_grad_(True)
    return targets


@torch.no_grad()
def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every :class:`LoRALinear` into its base layer (``W += ΔW``) and put the plain
    ``nn.Linear`` back: the model no longer needs this module to run or to be saved. Every
    parameter is trainable again afterwards, as in a freshly loaded model."""
    for name, m in list(model.named_modules()):
        if isinstance(m, LoRALinear):
            m.base.weight += m.delta_weight().to(m.base.weight.dtype)
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, m.base)
    for p in model.parameters():
        p.requires_grad_(True)
    return model
