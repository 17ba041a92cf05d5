"""A stalled notebook fails the book build and the tests, naming the notebook and the cell.

The limits live in ``_config.yml`` (``execute.timeout`` per cell, ``nb_notebook_time_limit`` per
notebook); the book build enforces them through nbclient and ``book/_ext/execution_guard.py``,
pytest through ``book/conftest.py``. Each test below makes a tiny notebook that sleeps past a
small limit and checks that the run fails and says where.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))


def _notebook(*sources: str) -> str:
    cells = [{"cell_type": "markdown", "id": "title", "metadata": {}, "source": "# Sleepy"}]
    cells += [{"cell_type": "code", "execution_count": i, "id": f"c{i}", "metadata": {},
               "outputs": [], "source": src} for i, src in enumerate(sources, start=1)]
    return json.dumps({"cells": cells, "metadata": {"kernelspec": {
        "display_name": "Python 3", "language": "python", "name": "python3"}},
        "nbformat": 4, "nbformat_minor": 5})


def test_limits_are_generous_and_consistent() -> None:
    cell = CONFIG["execute"]["timeout"]
    notebook = CONFIG["sphinx"]["config"]["nb_notebook_time_limit"]
    assert 60 <= cell <= notebook <= 600, (cell, notebook)
    assert "execution_guard" in CONFIG["sphinx"]["local_extensions"]
    spec = importlib.util.spec_from_file_location("book_conftest", ROOT / "book" / "conftest.py")
    book_conftest = importlib.util.module_from_spec(spec)  # the nbval side reads the same numbers
    spec.loader.exec_module(book_conftest)
    env = {k: os.environ.pop(k, None) for k in ("NERBOOK_CELL_TIMEOUT", "NERBOOK_NOTEBOOK_TIME_LIMIT")}
    try:
        assert book_conftest.time_limits(ROOT / "_config.yml") == (cell, notebook)
    finally:
        os.environ.update({k: v for k, v in env.items() if v is not None})


def _pytest_notebook(tmp_path: Path, text: str, **env: str) -> subprocess.CompletedProcess:
    folder = tmp_path / "nb"
    folder.mkdir()
    shutil.copy(ROOT / "book" / "conftest.py", folder / "conftest.py")
    (folder / "sleepy.ipynb").write_text(text, encoding="utf-8")
    (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-c", str(tmp_path / "pytest.ini"), "--rootdir",
         str(tmp_path), "-p", "no:cacheprovider", "-q", "--nbval-lax", "--nbval-current-env",
         "nb/sleepy.ipynb"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, env={**os.environ, **env})


def test_nbval_fails_a_cell_over_the_cell_limit(tmp_path: Path) -> None:
    proc = _pytest_notebook(tmp_path, _notebook("print('fast')", "import time\ntime.sleep(30)"),
                            NERBOOK_CELL_TIMEOUT="2", NERBOOK_NOTEBOOK_TIME_LIMIT="100")
    log = proc.stdout[-3000:] + proc.stderr[-1000:]
    assert proc.returncode == 1, log
    assert "1 failed, 1 passed" in log and "sleepy.ipynb::Cell 1" in log, log
    assert "Timeout of 2 seconds exceeded" in log, log


def test_nbval_fails_a_notebook_over_the_notebook_limit(tmp_path: Path) -> None:
    slow = "import time\ntime.sleep(1.5)"
    proc = _pytest_notebook(tmp_path, _notebook(slow, slow, slow, "print('never charged')"),
                            NERBOOK_CELL_TIMEOUT="60", NERBOOK_NOTEBOOK_TIME_LIMIT="2.5")
    log = proc.stdout[-3000:] + proc.stderr[-1000:]
    assert proc.returncode == 1, log
    # The kernel's start and two cells of 1.5 s are over the limit: the cell that crossed it
    # fails (the first or the second, depending on how fast the kernel started), the rest run.
    assert "1 failed, 3 passed" in log, log
    assert "sleepy.ipynb: " in log and "over the limit of 2 s per notebook" in log, log


def _build_book(tmp_path: Path, source: str, cell_timeout: int, notebook_limit: float):
    book = tmp_path / "book"
    book.mkdir()
    ext = ROOT / "book" / "_ext"
    (book / "_config.yml").write_text(yaml.safe_dump({
        "title": "t", "only_build_toc_files": True,
        "execute": {"execute_notebooks": "cache", "timeout": cell_timeout, "allow_errors": False,
                    "raise_on_error": True},
        "sphinx": {"local_extensions": {"execution_guard": str(ext)},
                   "config": {"nb_notebook_time_limit": notebook_limit}},
    }), encoding="utf-8")
    (book / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n- file: sleepy\n",
                                   encoding="utf-8")
    (book / "intro.md").write_text("# Intro\n", encoding="utf-8")
    (book / "sleepy.ipynb").write_text(_notebook("print('fast')", source), encoding="utf-8")
    jb = Path(sys.executable).with_name("jupyter-book")
    return subprocess.run([str(jb), "build", str(book), "-W", "--keep-going"], capture_output=True,
                          text=True, timeout=240)


def test_book_build_fails_a_notebook_over_the_notebook_limit(tmp_path: Path) -> None:
    proc = _build_book(tmp_path, "import time\ntime.sleep(3)", cell_timeout=60, notebook_limit=2)
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0, log[-3000:]
    assert "sleepy.ipynb: executing this notebook took" in log, log[-3000:]
    assert "over the limit of 2 s per notebook" in log, log[-3000:]


def test_book_build_fails_a_cell_over_the_cell_limit(tmp_path: Path) -> None:
    proc = _build_book(tmp_path, "import time\ntime.sleep(30)", cell_timeout=2, notebook_limit=100)
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0, log[-3000:]
    assert "sleepy.ipynb: WARNING: Executing notebook failed: CellTimeoutError" in log, log[-3000:]
    assert "time.sleep(30)" in log, log[-3000:]  # nbclient shows the cell that timed out
