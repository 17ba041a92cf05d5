"""nerbook.spread: mean +- sd over seeds, and whether a gap exceeds the spread (computed by hand here)."""

from __future__ import annotations

import math

import pytest

from nerbook.spread import compare, exceeds_spread, format_mean_sd, runs


def test_mean_and_sample_sd_by_hand() -> None:
    r = runs("a", [0.80, 0.82, 0.87])
    mean = (0.80 + 0.82 + 0.87) / 3
    sd = math.sqrt(((0.80 - mean) ** 2 + (0.82 - mean) ** 2 + (0.87 - mean) ** 2) / 2)
    assert r.mean == pytest.approx(mean) and r.sd == pytest.approx(sd)
    assert format_mean_sd([0.80, 0.82, 0.87]) == f"{mean:.3f} +- {sd:.3f}" == "0.830 +- 0.036"
    assert runs("one", [0.5]).sd == 0.0


def test_overlap_decides_the_verdict() -> None:
    a, b = runs("A", [0.90, 0.91, 0.92]), runs("B", [0.85, 0.86, 0.895])
    assert exceeds_spread(a, b) and exceeds_spread(b, a)
    assert "larger than the seed-to-seed spread" in compare(a, b)
    assert compare(b, a).startswith("A 0.910 +- 0.010 vs B")  # the better one first
    c = runs("C", [0.85, 0.86, 0.905])
    assert not exceeds_spread(a, c) and "within the seed-to-seed spread" in compare(a, c)


def test_lower_is_better_puts_the_smaller_first() -> None:
    fast, slow = runs("fast", [1.0, 1.1]), runs("slow", [2.0, 2.2])
    assert compare(slow, fast, higher_is_better=False).startswith("fast")
    assert "gap 1.050" in compare(slow, fast, higher_is_better=False)


@pytest.mark.parametrize("bad", [[], [float("nan")], [1.0, float("inf")]])
def test_bad_runs_are_refused(bad) -> None:
    with pytest.raises(ValueError):
        runs("x", bad)


def test_glue_writes_what_myst_nb_reads() -> None:
    from IPython.core.formatters import format_display_data  # noqa: F401  (IPython present)

    shown = []
    import IPython.display

    from nerbook import notebook

    real = IPython.display.display
    IPython.display.display = lambda obj, **kw: shown.append((obj, kw))
    try:
        notebook.glue("f1", 0.8125)
    finally:
        IPython.display.display = real
    (bundle, kw), = shown
    assert bundle == {"application/papermill.record/text/plain": "0.8125"}
    assert kw["metadata"]["scrapbook"] == {"name": "f1", "mime_prefix": "application/papermill.record/"}
    assert kw["raw"] is True


def test_glue_stores_numpy_and_tensor_scalars_as_numbers(monkeypatch) -> None:
    import IPython.display
    import numpy as np
    import torch

    from nerbook import notebook

    shown: list = []
    monkeypatch.setattr(IPython.display, "display", lambda obj, **kw: shown.append(obj))
    notebook.glue("a", np.float64(0.40400))
    notebook.glue("b", torch.tensor(3))
    notebook.glue("c", np.int64(7))
    texts = [next(iter(b.values())) for b in shown]
    assert texts == ["0.404", "3", "7"]          # not "np.float64(0.404)" nor "tensor(3)"
    assert float(texts[0]) == 0.404


def test_glue_matches_myst_nb(monkeypatch) -> None:
    import IPython.display
    import myst_nb.ext.glue as myst_glue

    from nerbook import notebook

    calls: list = []

    def record(obj, **kw):
        calls.append((obj, kw))

    monkeypatch.setattr(myst_glue, "ipy_display", record)
    monkeypatch.setattr(IPython.display, "display", record)
    myst_glue.glue("gap", 0.0312, display=False)
    notebook.glue("gap", 0.0312, display=False)
    assert len(calls) == 2 and calls[0] == calls[1]


def test_format_mean_sd_takes_the_sign_tables_use() -> None:
    from nerbook.spread import format_mean_sd

    assert format_mean_sd([0.8, 0.9], 2, sign="±") == "0.85 ± 0.07"
