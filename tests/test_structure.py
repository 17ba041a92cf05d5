"""The book's structure: table of contents, notebooks, configuration, references, nbval.

These tests read files; none of them executes a chapter (pytest does that separately, through
nbval, for every notebook under book/). Run them alone with ``pytest tests/test_structure.py``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from nerbook.notebook import FIRST_CELL, REPOSITORY_URL

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
TOC = ROOT / "_toc.yml"
CONFIG = ROOT / "_config.yml"
BIB = ROOT / "references.bib"
SANITIZE = ROOT / "tests" / "sanitize.cfg"

REQUIRED_BIB_KEYS = {
    "vaswani2017attention",
    "devlin2019bert",
    "tjongkimsang2003conll",
    "loshchilov2019adamw",
    "goodfellow2015explaining",
    "miyato2017adversarial",
    "hu2021lora",
    "radford2018improving",
    "radford2019language",
    "ouyang2022training",
}
MAX_WIDGET_STATE = 50 * 1024  # bytes of ipywidgets state a committed notebook may carry


def _notebooks() -> list[Path]:
    return sorted(
        p for p in BOOK.rglob("*.ipynb")
        if not any(part.startswith(".") or part == "_build" for part in p.relative_to(BOOK).parts)
    )


NOTEBOOKS = _notebooks()
NB_IDS = [p.relative_to(ROOT).as_posix() for p in NOTEBOOKS]


def _read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _toc_entries(node: object) -> list[str]:
    """Every ``root``/``file`` value in _toc.yml, in order (urls and globs are not files)."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("root", "file") and isinstance(value, str):
                found.append(value)
            else:
                found.extend(_toc_entries(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_toc_entries(item))
    return found


def _toc_docnames() -> list[str]:
    entries = _toc_entries(yaml.safe_load(TOC.read_text(encoding="utf-8")))
    return [re.sub(r"\.(md|ipynb)$", "", e).strip("/") for e in entries]


# --- table of contents -------------------------------------------------------------------------


def test_toc_is_valid_jupyter_book_toc() -> None:
    from sphinx_external_toc.parsing import parse_toc_yaml

    site_map = parse_toc_yaml(TOC)
    assert site_map.root.docname == "book/intro"
    assert site_map.file_format == "jb-book"


def test_every_toc_entry_exists_once() -> None:
    docnames = _toc_docnames()
    assert docnames, "_toc.yml lists no file"
    missing = [d for d in docnames
               if not (ROOT / f"{d}.md").is_file() and not (ROOT / f"{d}.ipynb").is_file()]
    assert not missing, f"_toc.yml lists files that do not exist (as .md or .ipynb): {missing}"
    both = [d for d in docnames if (ROOT / f"{d}.md").is_file() and (ROOT / f"{d}.ipynb").is_file()]
    assert not both, f"ambiguous toc entries, both .md and .ipynb exist: {both}"
    duplicates = sorted({d for d in docnames if docnames.count(d) > 1})
    assert not duplicates, f"_toc.yml lists these more than once: {duplicates}"


def test_every_notebook_is_in_the_toc() -> None:
    listed = set(_toc_docnames())
    absent = [p.relative_to(ROOT).as_posix() for p in NOTEBOOKS
              if p.relative_to(ROOT).with_suffix("").as_posix() not in listed]
    assert not absent, f"notebooks missing from _toc.yml (the build would skip them): {absent}"


def test_book_has_the_setup_chapter() -> None:
    assert (BOOK / "setup.ipynb") in NOTEBOOKS


# --- notebooks ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NB_IDS)
def test_first_cell_is_a_markdown_title(path: Path) -> None:
    cells = _read(path)["cells"]
    assert cells, f"{path.name} is empty"
    first = cells[0]
    assert first["cell_type"] == "markdown", f"{path.name}: the first cell must be markdown"
    first_line = _source(first).lstrip("\n").split("\n", 1)[0]
    assert re.fullmatch(r"# \S.*", first_line), (
        f"{path.name}: the first cell must start with a '# Title' line, got {first_line!r}")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NB_IDS)
def test_first_code_cell_is_the_standard_cell(path: Path) -> None:
    code = [c for c in _read(path)["cells"] if c["cell_type"] == "code"]
    assert code, f"{path.name} has no code cell"
    assert _source(code[0]) == FIRST_CELL, (
        f"{path.name}: the first code cell must be exactly nerbook.notebook.FIRST_CELL "
        "(regenerate it from that constant rather than editing it by hand)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NB_IDS)
def test_outputs_come_from_a_clean_top_to_bottom_run(path: Path) -> None:
    nb = _read(path)
    counts, errors, mismatched = [], [], []
    for index, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code" or not _source(cell).strip():
            continue  # Jupyter does not execute an empty cell
        counts.append(cell.get("execution_count"))
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                errors.append(f"cell {index}: {out.get('ename')}: {out.get('evalue')}")
            if (out.get("output_type") == "execute_result"
                    and out.get("execution_count") != cell.get("execution_count")):
                mismatched.append(index)
    assert not errors, f"{path.name} was committed with errors: {errors}"
    assert counts == list(range(1, len(counts) + 1)), (
        f"{path.name}: execution counts {counts} are not 1..{len(counts)}: restart the kernel, "
        "run all cells top to bottom, then commit")
    assert not mismatched, f"{path.name}: results of another run in cells {mismatched}"


def _calls(source: str, name: str) -> list[str]:
    """The text of every call ``name(...)`` in ``source``, its arguments included."""
    calls = []
    for match in re.finditer(rf"\b{name}\(", source):
        depth, end = 1, match.end()
        while depth and end < len(source):
            depth += {"(": 1, ")": -1}.get(source[end], 0)
            end += 1
        calls.append(source[match.start():end])
    return calls


def _training_precisions(source: str) -> list[str | None]:
    """The ``mixed_precision`` of every ``TrainConfig`` in ``source`` that trains (sets ``epochs``),
    read from the call or from a ``**NAME`` whose ``dict(...)`` the same source defines; ``None``
    where neither names it."""
    found = []
    for call in _calls(source, "TrainConfig"):
        if "epochs=" not in call:
            continue  # a config only read (its defaults) or only used to cut windows
        text = call + "".join(d for name in re.findall(r"\*\*(\w+)", call)
                              for d in _calls(source, f"{name} = dict"))
        named = re.search(r"mixed_precision=[\"'](\w+)[\"']", text)
        found.append(named.group(1) if named else None)
    return found


@pytest.mark.parametrize(("source", "expected"), [
    ('cfg = TrainConfig(epochs=2, lr=5e-4, mixed_precision="no", progress=False)', ["no"]),
    ("cfg = TrainConfig(epochs=2, lr=5e-4)\nTrainConfig().adv_eps\nTrainConfig(max_length=32)", [None]),
    ('RECIPE = dict(batch_size=16, mixed_precision="no")\nTrainConfig(epochs=e, **RECIPE)', ["no"]),
    ("TrainConfig(epochs=1, mixed_precision='auto', lr=f(1, (2)))", ["auto"]),
])
def test_training_precisions_reads_the_calls(source: str, expected: list) -> None:
    assert _training_precisions(source) == expected


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NB_IDS)
def test_training_precision_is_explicit(path: Path) -> None:
    """A chapter that trains names its precision, and a checked cell trains in fp32.

    The default, ``"auto"``, trains in bf16 where the CPU computes it natively, and two kinds of
    CPU do that with different kernels (AMX on a recent Xeon, AVX-512-BF16 on an AMD EPYC) that
    round differently: after a few hundred steps the printed F1s differ, and a checked output
    holds on one kind of machine only. In fp32 two such CPUs differ in the last bits only, which
    the printed numbers and tests/sanitize.cfg absorb. So every training config says which
    precision it uses, and one in a checked cell uses ``"no"``; a training cell whose result a
    checked cell reads must be marked the same way by hand (its own output is not compared).
    """
    wrong = []
    for index, cell in enumerate(_read(path)["cells"]):
        if cell["cell_type"] != "code":
            continue
        source = _source(cell)
        checked = "# NBVAL_CHECK_OUTPUT" in source.splitlines()
        for precision in _training_precisions(source):
            if precision is None or (checked and precision != "no"):
                wrong.append(f"cell {index} ({cell.get('id')}): mixed_precision={precision!r}")
    assert not wrong, (f"{path.name}: name mixed_precision in every TrainConfig that trains, "
                       f"\"no\" in a checked cell: {wrong}")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NB_IDS)
def test_no_stale_widget_state(path: Path) -> None:
    nb = _read(path)
    state = nb.get("metadata", {}).get("widgets")
    size = len(json.dumps(state)) if state else 0
    assert size <= MAX_WIDGET_STATE, (
        f"{path.name} carries {size} bytes of widget state in its metadata: clear it "
        "(Jupyter: Edit > Clear widget state, or strip metadata.widgets) and save again")
    views = 0
    for index, cell in enumerate(nb["cells"]):
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            blob = data.get("application/vnd.jupyter.widget-view+json")
            views += blob is not None
            assert blob is None or len(json.dumps(blob)) <= MAX_WIDGET_STATE, (
                f"{path.name}: cell {index} has a widget view over {MAX_WIDGET_STATE} bytes")
    assert views or not state, (
        f"{path.name} shows no widget but carries the state of {size} bytes of old ones (an earlier run's "
        "progress bars): strip metadata.widgets")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NB_IDS)
def test_no_sentence_of_prose_repeats(path: Path) -> None:
    """An edit that pastes a paragraph twice leaves the same long sentence twice on the page (a
    summary bullet once appeared four times); every sentence of twelve words or more is unique."""
    seen: dict[str, int] = {}
    for index, cell in enumerate(_read(path)["cells"]):
        if cell["cell_type"] != "markdown":
            continue
        text = " ".join("".join(cell["source"]).split())
        for sentence in re.split(r"(?<=[.!?])\s+", text):
            if len(sentence.split()) >= 12:
                assert sentence not in seen, (
                    f"{path.name}: cell {index} repeats a sentence of cell {seen[sentence]}: {sentence[:80]}...")
                seen[sentence] = index


# --- configuration -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load(CONFIG.read_text(encoding="utf-8"))


def test_repository_url_is_written_once(config: dict) -> None:
    assert config["repository"]["url"] == REPOSITORY_URL
    assert config["repository"]["branch"] == "main"
    assert config["repository"]["path_to_book"] == ""
    assert f"git+{REPOSITORY_URL}@" in FIRST_CELL


def test_book_config_is_strict(config: dict) -> None:
    execute = config["execute"]
    assert execute["execute_notebooks"] in ("cache", "force")
    assert execute["allow_errors"] is False
    assert 0 < execute["timeout"] <= 600
    assert config["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert "sphinxcontrib.mermaid" in config["sphinx"]["extra_extensions"]
    assert config["bibtex_bibfiles"] == ["references.bib"]
    assert {"dollarmath", "amsmath"} <= set(config["parse"]["myst_enable_extensions"])
    assert config["only_build_toc_files"] is True


# --- references --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bib_keys() -> set[str]:
    from pybtex.database import parse_file

    return set(parse_file(str(BIB), bib_format="bibtex").entries.keys())


def test_bibliography_has_the_required_entries(bib_keys: set[str]) -> None:
    assert not REQUIRED_BIB_KEYS - bib_keys, f"missing: {sorted(REQUIRED_BIB_KEYS - bib_keys)}"


CITE = re.compile(r"\{cite(?::[a-z]+)?\}`([^`]+)`")
LITERAL = re.compile(r"^```(?!\{)[^\n]*\n.*?^```|``.+?``", re.DOTALL | re.MULTILINE)  # shown, not cited


def _cited_keys() -> dict[str, set[str]]:
    cited: dict[str, set[str]] = {}
    pages = sorted(BOOK.rglob("*.md")) + NOTEBOOKS
    for page in pages:
        if page.suffix == ".ipynb":
            text = "\n".join(_source(c) for c in _read(page)["cells"] if c["cell_type"] == "markdown")
        else:
            text = page.read_text(encoding="utf-8")
        for match in CITE.finditer(LITERAL.sub("", text)):
            for key in match.group(1).split(","):
                cited.setdefault(key.strip(), set()).add(page.relative_to(ROOT).as_posix())
    return cited


def test_every_citation_is_in_the_bibliography(bib_keys: set[str]) -> None:
    cited = _cited_keys()
    assert cited, "the book cites nothing"
    unknown = {key: sorted(pages) for key, pages in cited.items() if key not in bib_keys}
    assert not unknown, f"cited but not in references.bib: {unknown}"


def test_one_bibliography_directive() -> None:
    pages = [p for p in sorted(BOOK.rglob("*.md")) + NOTEBOOKS
             if "{bibliography}" in p.read_text(encoding="utf-8")]
    assert [p.relative_to(ROOT).as_posix() for p in pages] == ["book/references.md"]


# --- nbval -------------------------------------------------------------------------------------


def _sanitize(text: str) -> str:
    from nbval.plugin import get_sanitize_patterns

    for regex, replace in get_sanitize_patterns(SANITIZE.read_text(encoding="utf-8")):
        text = re.sub(regex, replace, text)
    return text


@pytest.mark.parametrize(("raw", "clean"), [
    (" 45%|████▌     | 9/20 [00:01<00:02,  4.50it/s]", "TQDM-BAR"),
    ("epoch 1: 100%|##########| 20/20 [00:03<00:00, 6.1it/s, loss=0.42]", "TQDM-BAR"),
    ("trained in 12.3 s (0.5s per epoch, 250 ms per batch)",
     "trained in TIME (TIME per epoch, TIME per batch)"),
    ("throughput: 1,234 tokens/s, 4.50it/s, 2.1 s/it", "throughput: RATE, RATE, RATE"),
    ("<torch.utils.data.DataLoader object at 0x7f3a2c1b9d90>",
     "<torch.utils.data.DataLoader object at 0xADDRESS>"),
    ("saved to /tmp/pytest-of-me/run3/model.safetensors", "saved to PATH"),
    ("File C:\\Users\\me\\nerbook\\x.py", "File PATH"),
    ("started 2026-11-28 15:22:03.123, took 00:01:23", "started DATETIME, took DURATION"),
    # a glued float's full repr is compared to 3 decimals: trained weights differ in the last bits
    # from one kind of CPU to another
    ("0.8699575066566467", "0.869~"), ("-1.21527668638958", "-1.215~"),
    ("9.119510650634766e-06", "9.119~e-06"), ("236.46503024951016", "236.465~"),
    # facts that must survive the sanitizer untouched
    ("see https://github.com/why-chatgpt-wins/nerbook", None),
    ("tensor([ 1.5410, -0.2934, -2.1788]) and 9/20 and 6 layers", None),
    ("model.safetensors: 90.9 MB, 22.7M parameters, 3 sentences, 10 samples", None),
    ("precision 0.912 recall 0.875 f1 0.893 (support 1,204)", None),
    ("clean loss 1.0952, slope -1.215, ratio 0.123456 (6 decimals: printed, not a repr)", None),
])
def test_sanitize_rules(raw: str, clean: str | None) -> None:
    assert _sanitize(raw) == (raw if clean is None else clean)


def _notebook(*cells: tuple[str, str | None]) -> str:
    """A notebook of code cells (source, stored stdout or None), as executed once in order."""
    out = []
    for count, (source, stdout) in enumerate(cells, start=1):
        outputs = [] if stdout is None else [
            {"output_type": "stream", "name": "stdout", "text": stdout}]
        out.append({"cell_type": "code", "execution_count": count, "id": f"cell-{count}",
                    "metadata": {}, "outputs": outputs, "source": source})
    nb = {"cells": [{"cell_type": "markdown", "id": "title", "metadata": {},
                     "source": "# A tiny notebook"}, *out],
          "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python",
                                      "name": "python3"}},
          "nbformat": 4, "nbformat_minor": 5}
    return json.dumps(nb)


def test_nbval_catches_regressions(tmp_path: Path) -> None:
    """nbval, run as pyproject.toml runs it, fails a checked cell whose output changed or a cell
    that raises, and passes a correct notebook (whose addresses and timings differ from the
    stored ones only where tests/sanitize.cfg allows)."""
    check = "# NBVAL_CHECK_OUTPUT\nprint(6 * 7)"
    notebooks = {
        "good": _notebook(
            (check, "42\n"),
            ("# NBVAL_CHECK_OUTPUT\nprint(object())\nprint('took 0.1234 s')",
             "<object object at 0x7f0000000000>\ntook 3.5 s\n"),
            ("print('unchecked: anything goes')", "something else entirely\n"),
        ),
        "changed": _notebook((check, "41\n")),
        "raises": _notebook(("raise RuntimeError('boom')", None)),
    }
    for name, text in notebooks.items():
        (tmp_path / f"{name}.ipynb").write_text(text, encoding="utf-8")
    (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")  # not our pyproject
    report = tmp_path / "report.xml"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-c", str(tmp_path / "pytest.ini"),
         "--rootdir", str(tmp_path), "-p", "no:cacheprovider", "-q",
         "--nbval-lax", "--nbval-current-env", "--nbval-sanitize-with", str(SANITIZE),
         f"--junitxml={report}", *(f"{name}.ipynb" for name in notebooks)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    log = proc.stdout[-4000:] + proc.stderr[-2000:]
    assert proc.returncode == 1, log
    outcome: dict[str, set[str]] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        failed = case.find("failure") is not None or case.find("error") is not None
        name = case.get("classname", "").split(".")[0] or case.get("file", "")
        outcome.setdefault(name, set()).add("failed" if failed else "passed")
    assert outcome == {"good": {"passed"}, "changed": {"failed"}, "raises": {"failed"}}, log
