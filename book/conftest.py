"""Time limits for the notebooks under nbval: a stalled kernel fails the tests, naming the cell.

The same two numbers as the book build, read from ``_config.yml``: ``execute.timeout`` (seconds
a cell may run; nbval's ``--nbval-cell-timeout``, whose own default is 2000 s) and
``sphinx.config.nb_notebook_time_limit`` (seconds a whole notebook may take, its kernel's
start included). ``NERBOOK_CELL_TIMEOUT`` and ``NERBOOK_NOTEBOOK_TIME_LIMIT`` override them
(tests/test_structure.py uses them to check that the guard fires).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

CONFIG = Path(__file__).resolve().parent.parent / "_config.yml"


def time_limits(config: Path = CONFIG) -> tuple[float, float]:
    """``(seconds per cell, seconds per notebook)`` from ``_config.yml`` and the environment."""
    import yaml

    cell, notebook = os.environ.get("NERBOOK_CELL_TIMEOUT"), os.environ.get("NERBOOK_NOTEBOOK_TIME_LIMIT")
    if not (cell and notebook):
        cfg = yaml.safe_load(config.read_text(encoding="utf-8"))
        cell = cell or cfg["execute"]["timeout"]
        notebook = notebook or cfg["sphinx"]["config"]["nb_notebook_time_limit"]
    return float(cell), float(notebook)


CELL_LIMIT, NOTEBOOK_LIMIT = time_limits()
_spent: dict[Path, float] = {}
_failed: set[Path] = set()


def pytest_configure(config: pytest.Config) -> None:
    # nbval reads its option when a cell runs; keep a smaller value given on the command line.
    given = float(getattr(config.option, "nbval_cell_timeout", 2000) or 2000)
    if hasattr(config.option, "nbval_cell_timeout"):
        config.option.nbval_cell_timeout = min(given, CELL_LIMIT)


def _is_notebook_cell(item: pytest.Item) -> bool:
    return str(getattr(item, "path", "")).endswith(".ipynb")


def _charge(item: pytest.Item, seconds: float) -> None:
    """Add ``seconds`` to the item's notebook; fail the item that takes it over its limit."""
    spent = _spent[item.path] = _spent.get(item.path, 0.0) + seconds
    if spent > NOTEBOOK_LIMIT and item.path not in _failed:
        _failed.add(item.path)
        pytest.fail(f"{item.path.name}: {spent:.0f} s spent on this notebook by {item.name}, over "
                    f"the limit of {NOTEBOOK_LIMIT:.0f} s per notebook (nb_notebook_time_limit in "
                    "_config.yml): a stalled kernel, or a chapter grown too slow", pytrace=False)


def _timed(item: pytest.Item):
    """Wrap a cell's setup (where nbval starts the kernel) and its run: charge their time."""
    t0 = time.perf_counter()
    try:
        return (yield)
    finally:
        if _is_notebook_cell(item):
            _charge(item, time.perf_counter() - t0)


pytest_runtest_setup = pytest.hookimpl(wrapper=True)(_timed)
pytest_runtest_call = pytest.hookimpl(wrapper=True)(_timed)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """One line per notebook: the seconds its cells (and its kernel's start) took under nbval."""
    if not _spent:
        return
    terminalreporter.section(f"notebook times (limit {NOTEBOOK_LIMIT:.0f} s per notebook)")
    for path, seconds in sorted(_spent.items()):
        terminalreporter.write_line(f"{path.name:<28} {seconds:7.1f} s")
