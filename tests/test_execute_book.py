"""scripts/execute_book.py: the book's notebooks executed side by side into the build's cache.

The build (myst-nb in ``cache`` mode) must find what the script executed, and must not run it
again: checked with myst-nb's own cache client, not only with jupyter-cache.
"""

from __future__ import annotations

import io
import logging
import sys
import time
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
# Imported by name (not from a file spec): the worker processes find _execute by its module.
sys.path.insert(0, str(ROOT / "scripts"))
import execute_book  # noqa: E402


def notebook(path: Path, *sources: str) -> Path:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def run(paths: list[Path], cache: Path, limit: float = 240.0, workers: int = 2) -> tuple[int, str]:
    out = io.StringIO()
    rc = execute_book.execute_book(paths, cache, workers, cell_timeout=60, notebook_limit=limit, out=out)
    return rc, out.getvalue()


def cached_outputs(cache: Path, path: Path) -> list[str]:
    from jupyter_cache import get_cache

    _, nb = get_cache(str(cache)).merge_match_into_notebook(nbformat.read(path, as_version=4))
    return ["".join(o.get("text", "")) for c in nb.cells for o in c.get("outputs", [])]


def test_notebooks_run_side_by_side_into_the_cache_in_their_own_folder(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    first = notebook(tmp_path / "a" / "first.ipynb", "x = 6 * 7", "print(x)")
    second = notebook(tmp_path / "second.ipynb", "import os", "print(os.path.basename(os.getcwd()))")
    cache = tmp_path / "cache"
    rc, log = run([first, second], cache)
    assert rc == 0, log
    assert cached_outputs(cache, first) == ["42\n"]
    assert cached_outputs(cache, second) == [f"{tmp_path.name}\n"]  # the kernel ran in its folder
    assert "2 notebook(s)" in log and "0 failed" in log
    rc, log = run([first, second], cache)  # a second run finds both and executes nothing
    assert rc == 0 and log.count(" cached") == 2 and "notebook(s) in" not in log


def test_myst_nb_takes_them_from_the_cache_without_running_them(tmp_path: Path) -> None:
    from myst_nb.core.config import NbParserConfig
    from myst_nb.core.execute import create_client

    path = notebook(tmp_path / "nb.ipynb", "import time; print(time.time())")
    cache = tmp_path / "cache"
    assert run([path], cache, workers=1)[0] == 0
    [printed] = cached_outputs(cache, path)
    before = time.time()
    config = NbParserConfig(execution_mode="cache", execution_cache_path=str(cache))
    with create_client(nbformat.read(path, as_version=4), str(path), config,
                       logging.getLogger("test")) as client:
        meta, nb = client.exec_metadata, client.notebook
    assert meta["succeeded"] and meta["mtime"] < before       # from the cache, not run now
    assert nb.cells[0].outputs[0]["text"] == printed           # the very output executed above
    assert float(printed) < before


def test_a_failing_notebook_is_named_reported_and_not_cached(tmp_path: Path) -> None:
    good = notebook(tmp_path / "good.ipynb", "print(1)")
    bad = notebook(tmp_path / "bad.ipynb", "print(1)", "raise ValueError('the third cell breaks')")
    cache = tmp_path / "cache"
    rc, log = run([good, bad], cache)
    assert rc == 1
    assert "bad.ipynb: FAILED" in log and "the third cell breaks" in log
    assert "1 failed" in log
    assert cached_outputs(cache, good) == ["1\n"]
    with pytest.raises(KeyError):
        cached_outputs(cache, bad)


def test_a_notebook_over_its_time_limit_fails(tmp_path: Path) -> None:
    slow = notebook(tmp_path / "slow.ipynb", "import time; time.sleep(0.5)")
    rc, log = run([slow], tmp_path / "cache", limit=0.2, workers=1)
    assert rc == 1 and "OVER the limit of 0 s per notebook" in log


def test_expected_seconds_come_from_the_committed_cell_timestamps(tmp_path: Path) -> None:
    def timed(name: str, seconds: float) -> Path:
        path = notebook(tmp_path / name, "pass")
        nb = nbformat.read(path, as_version=4)
        nb.cells[0].metadata["execution"] = {
            "iopub.status.busy": "2026-11-30T05:31:00.000000Z",
            "iopub.status.idle": f"2026-11-30T05:31:{seconds:09.6f}Z"}
        nbformat.write(nb, path)
        return path

    assert execute_book.expected_seconds(timed("t.ipynb", 12.5)) == pytest.approx(12.5)
    assert execute_book.expected_seconds(notebook(tmp_path / "u.ipynb", "pass")) == 0.0


def test_every_notebook_of_the_book_is_executed() -> None:
    assert set(execute_book.toc_notebooks()) == set((ROOT / "book").glob("*.ipynb"))
    import yaml

    cfg = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    assert execute_book.limits() == (cfg["execute"]["timeout"], cfg["sphinx"]["config"]["nb_notebook_time_limit"])


def test_bad_worker_count_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        execute_book.main(["-j", "0"])
    assert exc.value.code == 2
    assert "-j/--workers: must be at least 1" in capsys.readouterr().err
