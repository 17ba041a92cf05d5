"""How accuracy grows with model size, data and compute (chapter "One recipe, any size").

Three small tools for scaling experiments with the same training loop:

- :func:`truncate_layers` keeps the first ``k`` pretrained layers of an encoder, the cheapest way to
  get a family of smaller models that all start from the same pretraining;
- :func:`non_embedding_parameters` and :func:`training_flops` count the compute of a run as
  Kaplan et al. (2020) do, ``C = 6 N T``: ``N`` parameters outside the embedding tables (a lookup
  costs no multiply) times ``T`` tokens trained, times 6 (2 FLOPs per weight per token forward, 4
  backward);
- :func:`fit_power_law` fits ``y = a * x ** slope`` by least squares on log-log axes, the straight
  line of a scaling plot, with the share of variance it explains; :func:`leave_one_out_slopes`
  says how much one point moves it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch


def base_model(model: torch.nn.Module) -> torch.nn.Module:
    """The body under a task head (``model.<base_model_prefix>``, e.g. ``model.bert``), or the model itself."""
    return getattr(model, getattr(model, "base_model_prefix", ""), model)


def encoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The list of transformer layers of a BERT-like encoder (``model.<base>.encoder.layer``)."""
    layers = getattr(getattr(base_model(model), "encoder", None), "layer", None)
    if not isinstance(layers, torch.nn.ModuleList):
        raise ValueError(f"{type(model).__name__}: not a BERT-like encoder (no encoder.layer list)")
    return layers


def truncate_layers(model: torch.nn.Module, keep: int) -> torch.nn.Module:
    """Keep the first ``keep`` transformer layers of ``model`` (in place) and return it.

    The embeddings, the kept layers and the task head stay as they were; the config's
    ``num_hidden_layers`` follows, so a saved checkpoint reloads with the same depth.
    """
    layers = encoder_layers(model)
    if not 1 <= keep <= len(layers):
        raise ValueError(f"keep must be between 1 and {len(layers)} layers, got {keep}")
    del layers[keep:]
    model.config.num_hidden_layers = keep
    return model


def embedding_parameters(model: torch.nn.Module) -> int:
    """Parameters of the input embedding block (word, position and type tables and their LayerNorm)."""
    emb = getattr(base_model(model), "embeddings", None)
    if emb is None:
        emb = model.get_input_embeddings()
    return sum(p.numel() for p in emb.parameters())


def non_embedding_parameters(model: torch.nn.Module) -> int:
    """``N`` of ``C = 6 N T``: every parameter outside the embedding block."""
    return sum(p.numel() for p in model.parameters()) - embedding_parameters(model)


def training_flops(n_params: int, tokens: int) -> float:
    """``C = 6 N T``, the training FLOPs of ``tokens`` tokens through ``n_params`` weights (Kaplan
    et al., 2020); attention's own products, small at these lengths, are left out."""
    return 6.0 * n_params * tokens


@dataclass(frozen=True)
class PowerLaw:
    """``y = a * x ** slope``, fitted on log-log axes; ``r2`` is the share of the variance of
    ``log y`` the line explains."""

    slope: float
    a: float
    r2: float
    n: int

    def __call__(self, x: float) -> float:
        return self.a * x ** self.slope


def fit_power_law(x: Sequence[float], y: Sequence[float]) -> PowerLaw:
    """Least-squares line through ``(log x, log y)``: the slope of a scaling plot.

    Needs at least two points with distinct positive ``x`` and positive ``y``.
    """
    if any(not (a > 0 and b > 0) for a, b in zip(x, y, strict=True)):
        raise ValueError("a power law needs positive x and y")
    pts = [(math.log(a), math.log(b)) for a, b in zip(x, y, strict=True)]
    n = len(pts)
    mx, my = sum(p[0] for p in pts) / max(n, 1), sum(p[1] for p in pts) / max(n, 1)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    if n < 2 or sxx == 0:
        raise ValueError("a power law needs at least two distinct x")
    slope = sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx
    intercept = my - slope * mx
    ss_res = sum((p[1] - intercept - slope * p[0]) ** 2 for p in pts)
    ss_tot = sum((p[1] - my) ** 2 for p in pts)
    return PowerLaw(slope, math.exp(intercept), 1.0 - ss_res / ss_tot if ss_tot else 1.0, n)


def leave_one_out_slopes(x: Sequence[float], y: Sequence[float]) -> list[float]:
    """The slope of :func:`fit_power_law` with each point left out in turn: how far one run moves
    the fit (needs three or more points, two of them with distinct ``x`` whichever is left out)."""
    pts = list(zip(x, y, strict=True))
    return [fit_power_law(*zip(*(p for j, p in enumerate(pts) if j != i))).slope for i in range(len(pts))]
