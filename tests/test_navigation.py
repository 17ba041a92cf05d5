"""Chapters a reader can find their way through: prerequisites, links, exercises with hints and solutions.

The conventions every chapter follows (issue "teaching integrity"):

- near the top, a ``## Prerequisites`` section with a ``**Chapters:**`` line (which chapters it
  builds on, as ``{doc}`` links) and a ``**Maths:**`` line;
- a reference to another chapter is a ``{doc}`` link, never a quoted title (``chapter "X"``);
- a ``## Exercises`` section whose every item has a hint (``*Hint:*``), and after it at least one
  worked solution: a code cell tagged ``hide-cell`` (the rendered book shows it collapsed) that
  starts with ``# Solution to exercise N`` and asserts its answer, so that the tests check it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "book").glob("*.ipynb"))
NO_EXERCISES = {"setup", "results"}  # the start page and the page of records
NO_PREVIOUS_CHAPTER = {"setup"}


def _toc_docs() -> set[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    docs = {toc["root"]}
    for part in toc["parts"]:
        docs |= {c["file"] for c in part["chapters"]}
    return {Path(d).name for d in docs}


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def _markdown(cells: list[dict]) -> list[str]:
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]


def _section(cells: list[dict], heading: str) -> str | None:
    """The markdown from ``heading`` to the next heading of the same level (or the end)."""
    text = "\n\n".join(_markdown(cells))
    m = re.search(rf"^## {re.escape(heading)}\s*$(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    return m.group(1) if m else None


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_states_its_prerequisites(path: Path) -> None:
    cells = _cells(path)
    top = "\n\n".join(_markdown(cells[:5]))
    assert "## Prerequisites" in top, f"{path.name}: no '## Prerequisites' among the first cells"
    section = _section(cells, "Prerequisites")
    assert "**Chapters:**" in section and "**Maths:**" in section, f"{path.name}: {section!r}"
    chapters_line = re.search(r"\*\*Chapters:\*\*(.*)", section).group(1)
    if path.stem not in NO_PREVIOUS_CHAPTER:
        assert "{doc}`" in chapters_line, f"{path.name}: the prerequisites link no chapter"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapters_are_referred_to_by_links(path: Path) -> None:
    docs = _toc_docs()
    for i, text in enumerate(_markdown(_cells(path))):
        plain = re.findall(r"(?i)\bchapters?\s+[\"“*]+[A-Z][^\"”*]*[\"”*]", text)
        assert not plain, f"{path.name} cell {i}: write these as {{doc}} links: {plain}"
        for target in re.findall(r"\{doc\}`(?:[^`<]*<)?([^`>]+)>?`", text):
            assert Path(target).name in docs, f"{path.name} cell {i}: {{doc}} target {target!r} not in the book"


@pytest.mark.parametrize("path", [p for p in CHAPTERS if p.stem not in NO_EXERCISES], ids=lambda p: p.stem)
def test_exercises_have_hints_and_a_checked_solution(path: Path) -> None:
    cells = _cells(path)
    section = _section(cells, "Exercises")
    assert section, f"{path.name}: no '## Exercises' section"
    items = re.split(r"^\d+\.\s", section, flags=re.M)[1:]
    assert items, f"{path.name}: the exercises are not a numbered list"
    for n, item in enumerate(items, start=1):
        assert "*Hint:*" in item, f"{path.name}: exercise {n} has no '*Hint:*'"
    start = next(i for i, c in enumerate(cells) if c["cell_type"] == "markdown"
                 and re.search(r"^## Exercises", "".join(c["source"]), flags=re.M))
    solutions = [c for c in cells[start:] if c["cell_type"] == "code"
                 and "".join(c["source"]).startswith("# Solution to exercise")]
    assert solutions, f"{path.name}: no solution cell ('# Solution to exercise N') after the exercises"
    for cell in solutions:
        src = "".join(cell["source"])
        n = int(re.match(r"# Solution to exercise (\d+)", src).group(1))
        assert 1 <= n <= len(items), f"{path.name}: a solution to exercise {n} of {len(items)}"
        assert "hide-cell" in cell["metadata"].get("tags", []), f"{path.name}: solution {n} is not collapsed (tag hide-cell)"
        assert re.search(r"^\s*assert ", src, flags=re.M), f"{path.name}: solution {n} checks nothing"


def test_api_reference_documents_every_module() -> None:
    import nerbook

    page = (ROOT / "book" / "api.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\.\. automodule:: nerbook\.(\w+)$", page, flags=re.M))
    # bench and cli are commands, documented by their --help (the page says so)
    assert documented == set(nerbook._SUBMODULES) - {"bench", "cli"} | {"checkpoint"}, documented


@pytest.mark.parametrize("path", [p for p in CHAPTERS if p.stem not in {"setup", "results"}],
                         ids=lambda p: p.stem)
def test_chapter_links_the_api_reference(path: Path) -> None:
    """Where a chapter first uses a nerbook function, it links it to the API reference page."""
    import importlib

    text = "\n".join(_markdown(_cells(path)))
    targets = re.findall(r"\{py:(?:func|class|mod|meth|data)\}`[~!]?(nerbook\.[\w.]+)`", text)
    assert targets, f"{path.name}: no {{py:func}}`nerbook....` link to the API reference"
    for target in targets:  # Sphinx would silently render a missing target as plain text
        parts = target.split(".")
        for cut in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:cut]))
                break
            except ImportError:
                continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr, None)
            assert obj is not None, f"{path.name}: {target} does not exist"
        # a constant ({py:data}) has no __module__: its home is the module it is read from
        home = getattr(obj, "__module__", None) or getattr(obj, "__name__", None) or ".".join(parts[:cut])
        assert home.startswith("nerbook."), f"{path.name}: {target} is not documented by nerbook"
        if cut < len(parts):
            assert home == ".".join(parts[:cut]), \
                f"{path.name}: link {target} to where it is defined, {home}.{parts[-1]}"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_code_cells_are_short(path: Path) -> None:
    """A reader follows a cell that does one thing: at most 40 lines of code."""
    long = [(i, len("".join(c["source"]).splitlines())) for i, c in enumerate(_cells(path))
            if c["cell_type"] == "code" and len("".join(c["source"]).splitlines()) > 40]
    assert not long, f"{path.name}: cells over 40 lines (cell, lines): {long}"
