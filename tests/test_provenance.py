"""Every number in a chapter's prose comes from the page's own outputs, a glue, or a citation.

The intro promises that the numbers you read are the numbers the code produced. This test keeps
the promise: it scans the markdown of every chapter for *claims* (a number with a decimal point,
a number with a unit such as ``75 s``, ``140 MB``, ``30%`` or ``2.2x``, a number written with
thousands separators, a number in scientific notation) and accepts one only if

- it is inserted by myst-nb's glue (``{glue:text}`name```, written by ``nerbook.notebook.glue``
  in a code cell of the same notebook): then it *is* the output;
- it appears among the outputs of the same notebook (printed text, tables, glued values), as
  written or rounded to the digits the prose shows (with at least two significant digits, so
  that a typed ``0.8`` is not backed by any output between 0.75 and 0.85), or among the settings
  written in its code cells (``lr=1e-4``);
- it stands in a sentence that cites its source (``{cite}`key```): a literature figure.

Inline code and code blocks, link targets and role targets are not prose. A glue name used in
the prose must be glued by the notebook. ``test_an_unbacked_number_fails`` shows the check
failing on a typed number.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "book").glob("*.ipynb"))
PAGES = sorted((ROOT / "book").glob("*.md"))
GLUE_PREFIX = "application/papermill.record/"

_UNIT = r"(?:%|‰|x(?![\w])|×(?!\s)|\s?(?:ms|s|min|h|GiB|MiB|KiB|GB|MB|kB|KB|TB)\b|\s?(?:k|K|M|B)\b)"
CLAIM = re.compile(
    r"(?<![\w.\-/^_{])("
    r"\d+(?:\.\d+)?[eE][-+]?\d+"          # 1e-6, 3e-5
    r"|\d{1,3}(?:,\d{3})+(?:\.\d+)?"      # 30,522
    r"|\d+\.\d+"                          # 0.759
    r"|\d+(?=" + _UNIT + r")"             # 75 s, 140 MB, 30%, 2x, 110M
    r")(?![\w.,]*\d)"
)
NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?")
ROLE = re.compile(r"\{([\w:-]+)\}`([^`]*)`")


def _prose(markdown: str) -> str:
    """The markdown with code, link targets, role targets and HTML tags blanked out."""
    text = re.sub(r"(```|~~~).*?\1", " ", markdown, flags=re.S)
    text = ROLE.sub(" ", text)
    text = re.sub(r"`[^`]*`", " ", text)
    text = re.sub(r"\]\([^)]*\)", "]", text)
    text = re.sub(r"https?://\S+", " ", text)
    return re.sub(r"<[^>]+>", " ", text)


def _sentences(markdown: str) -> list[str]:
    """Sentences (and list items) of a markdown cell, code blocks removed, roles kept."""
    text = re.sub(r"(```|~~~).*?\1", " ", markdown, flags=re.S)
    parts = re.split(r"(?<=[.!?:;])\s+(?=[A-Z*(\[{-])|\n\s*\n|\n(?=\s*(?:[-*]|\d+\.)\s)", text)
    return [p for p in parts if p.strip()]


def claims(markdown: str) -> list[tuple[str, str]]:
    """``(number, sentence)`` for each claim in ``markdown`` that does not cite its source."""
    found = []
    for sentence in _sentences(markdown):
        if "{cite" in sentence:
            continue
        found += [(m.group(1), sentence.strip()) for m in CLAIM.finditer(_prose(sentence))]
    return found


def _to_float(token: str) -> float:
    return float(token.replace(",", ""))


def _outputs_text(nb: dict) -> str:
    """All the text a notebook shows or glues: streams, plain text, HTML, markdown."""
    texts = []
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            if "text" in out:
                texts.append("".join(out["text"]))
            for mime, value in out.get("data", {}).items():
                kind = mime.removeprefix(GLUE_PREFIX)
                if kind in ("text/plain", "text/html", "text/markdown", "text/latex"):
                    texts.append(re.sub(r"<[^>]+>", " ", "".join(value)))
    return "\n".join(texts)


def backing(nb: dict) -> set[str]:
    """The number tokens a notebook's outputs and code cells contain (commas removed)."""
    text = _outputs_text(nb)
    text += "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    return {m.group(0).lstrip("+-").replace(",", "") for m in NUMBER.finditer(text)}


def glued_names(nb: dict) -> set[str]:
    names = set()
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            scrap = out.get("metadata", {}).get("scrapbook")
            if scrap:
                names.add(scrap["name"])
    return names


def _significant(token: str) -> int:
    digits = token.replace(",", "").split("e")[0].split("E")[0].replace(".", "").lstrip("0")
    return len(digits)


def is_backed(token: str, numbers: set[str]) -> bool:
    """Is ``token`` (as the prose writes it) among ``numbers``, exactly or rounded?"""
    plain = token.replace(",", "")
    if plain in numbers:
        return True
    try:
        value = _to_float(plain)
    except ValueError:
        return False
    decimals = len(plain.split(".")[1]) if "." in plain and "e" not in plain.lower() else 0
    if "e" in plain.lower():
        return any(_close(value, n) for n in numbers)
    if _significant(plain) < 2:
        return False
    for n in numbers:
        try:
            x = _to_float(n)
        except ValueError:
            continue
        for scaled in (x, 100 * x, x / 1e3, x / 1e6, x / 1e9, x * 1e3):
            if math.isfinite(scaled) and abs(round(scaled, decimals) - value) < 10 ** -(decimals + 6):
                return True
    return False


def _close(a: float, b: str) -> bool:
    try:
        return math.isclose(a, _to_float(b), rel_tol=1e-9)
    except ValueError:
        return False


def problems(nb: dict) -> list[str]:
    """Each unbacked claim and each glue name the prose uses but the notebook does not glue."""
    numbers, names = backing(nb), glued_names(nb)
    found = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "markdown":
            continue
        text = "".join(cell["source"])
        for role, target in ROLE.findall(text):
            if role.startswith("glue") and target.split(":")[0] not in names:
                found.append(f"cell {i}: glue name {target.split(':')[0]!r} is never glued")
        for token, sentence in claims(text):
            if not is_backed(token, numbers):
                found.append(f"cell {i}: {token!r} has no output, glue or citation behind it: "
                             f"{' '.join(sentence.split())[:160]}")
    return found


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_every_number_in_the_prose_is_backed(path: Path) -> None:
    found = problems(json.loads(path.read_text(encoding="utf-8")))
    assert not found, f"{path.name}:\n" + "\n".join(found)


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.name)
def test_markdown_pages_cite_their_numbers(path: Path) -> None:
    found = claims(path.read_text(encoding="utf-8"))
    assert not found, f"{path.name}: numbers with no citation: {found}"


# ---- the check itself, on notebooks made up for the purpose --------------------------------------

def _nb(markdown: str, code: str = "", outputs: list | None = None) -> dict:
    return {"cells": [
        {"cell_type": "code", "source": code, "outputs": outputs or [], "metadata": {}},
        {"cell_type": "markdown", "source": markdown, "metadata": {}},
    ]}


def _stream(text: str) -> dict:
    return {"output_type": "stream", "name": "stdout", "text": text}


def _glue(name: str, value: str) -> dict:
    return {"output_type": "display_data", "data": {GLUE_PREFIX + "text/plain": value},
            "metadata": {"scrapbook": {"name": name, "mime_prefix": GLUE_PREFIX}}}


def test_an_unbacked_number_fails() -> None:
    nb = _nb("The model reached a dev F1 of 0.937 after 75 s.", outputs=[_stream("dev F1 0.812\n")])
    found = problems(nb)
    assert len(found) == 2 and "'0.937'" in found[0] and "'75'" in found[1], found


def test_printed_rounded_glued_and_cited_numbers_pass() -> None:
    nb = _nb("Dev F1 0.812 (0.81 rounded) in 75 s, 1.6M parameters, 30% of 1,234 words; lr 1e-4. "
             "Glued: {glue:text}`f1:.3f`. BERT-base scored 92.4 {cite}`devlin2019bert`.",
             code="lr = 1e-4\nglue('f1', 0.8123)",
             outputs=[_stream("dev F1 0.812 in 75.3 s, 1,612,345 parameters, share 0.30 of 1234 words\n"),
                      _glue("f1", "0.8123")])
    assert problems(nb) == []


def test_one_significant_digit_must_match_exactly() -> None:
    nb = _nb("A gap of about 0.8 points.", outputs=[_stream("gap 0.7712\n")])
    assert problems(nb) and "'0.8'" in problems(nb)[0]


def test_a_glue_name_that_is_never_glued_fails() -> None:
    assert "never glued" in problems(_nb("F1 {glue:text}`missing:.3f`."))[0]


def test_code_and_links_are_not_prose() -> None:
    assert claims("Run `--lr 3e-5` or see [v2.5](https://x.org/1.5) and\n```\nx = 0.25\n```\n") == []
