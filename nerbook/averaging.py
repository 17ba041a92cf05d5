"""Averaging the weights along the end of a run (chapter "Results", the accuracy goal).

The last steps of a run wander around a minimum; their mean often sits nearer its centre than any
one of them (checkpoint averaging, Vaswani et al. 2017; stochastic weight averaging, Izmailov et
al. 2018). :class:`WeightAverage` keeps the running mean of the trainable weights after every
optimizer step from a given step on, one ``lerp`` per tensor, and lends it to the model for
evaluation and saving.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


class WeightAverage:
    """The mean of ``model``'s trainable weights over the optimizer steps after ``start``."""

    def __init__(self, model: torch.nn.Module, start: int) -> None:
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.start, self.n = start, 0
        self.mean: list[torch.Tensor] | None = None

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Fold in the weights after optimizer step ``step`` (counted from 1) if it is past ``start``."""
        if step <= self.start:
            return
        if self.mean is None:
            self.mean = [p.detach().clone() for p in self.params]
        else:  # mean_{n+1} = mean_n + (w - mean_n) / (n + 1)
            for m, p in zip(self.mean, self.params):
                m.lerp_(p, 1.0 / (self.n + 1))
        self.n += 1

    @torch.no_grad()
    def load_into(self) -> None:
        """Put the mean into the model's weights (no-op before the first update)."""
        for p, m in zip(self.params, self.mean or []):
            p.copy_(m)

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """The model holds the mean inside the block and its own weights again after it."""
        if self.mean is None:
            yield
            return
        live = [p.detach().clone() for p in self.params]
        self.load_into()
        try:
            yield
        finally:
            with torch.no_grad():
                for p, w in zip(self.params, live):
                    p.copy_(w)

    def state_dict(self) -> dict:
        return {"start": self.start, "n": self.n, "mean": self.mean or []}

    def load_state_dict(self, state: dict) -> None:
        mean = state["mean"]
        if mean and len(mean) != len(self.params):
            raise ValueError(f"{len(mean)} averaged tensors for {len(self.params)} trainable weights")
        self.start, self.n = int(state["start"]), int(state["n"])
        self.mean = [m.to(p.device, p.dtype) for m, p in zip(mean, self.params)] if mean else None
