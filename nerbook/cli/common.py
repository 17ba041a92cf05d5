"""What every command of the command line shares: one-line errors and argument checks."""

from __future__ import annotations

import argparse

#: The exit status of bad input (a bad file, a missing model, an impossible argument).
EXIT_BAD_INPUT = 2


class CliError(Exception):
    """Bad input, reported as one line ``nerbook: error: ...`` with exit status 2."""


def positive(kind=int, minimum: int = 1):
    """An argparse ``type`` accepting numbers of ``kind`` of at least ``minimum`` (> 0 for floats)."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if kind is float and not value > 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        if kind is not float and value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {text}")
        return value
    parse.__name__ = f"{kind.__name__} > 0" if kind is float else f"{kind.__name__} >= {minimum}"
    return parse


def between(low: float, high: float):
    """An argparse ``type`` accepting a number from ``low`` to ``high`` (both included)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low:g} and {high:g}, got {text}")
        return value
    parse.__name__ = f"number in [{low:g}, {high:g}]"
    return parse


#: An argparse ``type`` accepting a probability, a number in [0, 1].
probability = between(0.0, 1.0)


def device_arg(requested: str) -> str:
    """``requested`` as :func:`nerbook.runtime.resolve_device` resolves it, or a :class:`CliError`."""
    from nerbook.runtime import resolve_device

    try:
        return resolve_device(requested)
    except ValueError as e:
        raise CliError(f"--device {requested}: {e}") from None
