"""Several seeds, one honest sentence: mean, spread, and whether a difference exceeds it.

Every comparison between two methods in the book (pretrained against random weights, one
learning rate against another, LoRA against full fine-tuning, ...) runs each method with
several seeds. :func:`runs` summarises one method's runs as mean +- sample standard deviation;
:func:`compare` says whether the gap between two methods is larger than the seed-to-seed
spread. Chapter "Fine-tuning and evaluation" introduces the idea; every chapter that compares
methods uses it.

The rule is deliberately simple and conservative for the three to five seeds a chapter can
afford: a difference *exceeds the spread* only when the ranges of the runs do not overlap,
so that every run of the better method beats every run of the other.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Runs:
    """The results of one method over several seeds (chapter "Fine-tuning and evaluation")."""

    name: str
    values: tuple[float, ...]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def sd(self) -> float:
        """Sample standard deviation (n - 1); 0 for a single run."""
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0

    def __str__(self) -> str:
        return f"{self.name}: {format_mean_sd(self.values)} over {len(self.values)} seeds"


def runs(name: str, values: Sequence[float]) -> Runs:
    """Summarise one method's results over seeds; ``values`` must be finite numbers."""
    vals = tuple(float(v) for v in values)
    if not vals:
        raise ValueError(f"{name}: no runs to summarise")
    if not all(math.isfinite(v) for v in vals):
        raise ValueError(f"{name}: a run is not a finite number: {vals}")
    return Runs(name, vals)


def format_mean_sd(values: Sequence[float], digits: int = 3, sign: str = "+-") -> str:
    """``"0.812 +- 0.014"``: mean and sample standard deviation of ``values`` (``sign="±"`` for tables)."""
    r = runs("values", values)
    return f"{r.mean:.{digits}f} {sign} {r.sd:.{digits}f}"


def exceeds_spread(a: Runs, b: Runs) -> bool:
    """True when the two sets of runs do not overlap: every run of one beats every run of the other."""
    return min(a.values) > max(b.values) or min(b.values) > max(a.values)


def compare(a: Runs, b: Runs, digits: int = 3, higher_is_better: bool = True) -> str:
    """One sentence: both summaries, the gap of the means, and whether it exceeds the spread."""
    first, second = (a, b) if (a.mean >= b.mean) == higher_is_better else (b, a)
    gap = abs(a.mean - b.mean)
    verdict = ("larger than the seed-to-seed spread: every run of {0} beats every run of {1}"
               if exceeds_spread(a, b) else
               "within the seed-to-seed spread: the runs overlap, so these seeds do not separate {0} from {1}")
    return (f"{first.name} {format_mean_sd(first.values, digits)} vs {second.name} "
            f"{format_mean_sd(second.values, digits)} (n = {len(first.values)}, {len(second.values)}); "
            f"gap {gap:.{digits}f}, " + verdict.format(first.name, second.name))


__all__ = ["Runs", "compare", "exceeds_spread", "format_mean_sd", "runs"]
