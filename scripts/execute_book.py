"""Execute the book's notebooks side by side, into the cache that `jupyter-book build` reads.

`jupyter-book build` (myst-nb, ``execute_notebooks: cache``) runs the notebooks one after
another. A chapter keeps about one core busy, so on a 2-core machine two chapters run side by
side in a little over the time of one. This script does the executing before the build: each
notebook of ``_toc.yml`` whose code is not in ``_build/.jupyter_cache`` yet is executed in one
of ``-j`` worker processes, exactly as myst-nb would (kernel started in the notebook's folder,
``execute.timeout`` seconds per cell from ``_config.yml``, no errors allowed), and stored in the
cache under the same key (jupyter-cache's hash of the code cells). The build then finds every
notebook in the cache and only renders; its execution-time report (book/_ext/execution_guard.py)
shows the times measured here, against the same per-notebook limit.

    python scripts/execute_book.py            # 2 workers (NERBOOK_BOOK_WORKERS), every notebook
    python scripts/execute_book.py -j 1 book/lora.ipynb

Exit status 1 when a notebook fails (its name, the cell and the traceback are printed; it is not
cached, so the build would run it again and fail the same way) or runs over its time limit.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def toc_notebooks(root: Path = ROOT) -> list[Path]:
    """The notebooks listed in ``_toc.yml``, in reading order."""
    import yaml

    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))
    files: list[str] = []

    def walk(node) -> None:
        if isinstance(node, dict):
            if "file" in node:
                files.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    files.append(toc["root"])
    walk(toc.get("parts", toc.get("chapters", [])))
    return [root / f"{f}.ipynb" for f in files if (root / f"{f}.ipynb").is_file()]


def limits(root: Path = ROOT) -> tuple[float, float]:
    """``(seconds per cell, seconds per notebook)``: the build's own limits, from ``_config.yml``."""
    import yaml

    cfg = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8"))
    return float(cfg["execute"]["timeout"]), float(cfg["sphinx"]["config"]["nb_notebook_time_limit"])


def expected_seconds(path: Path) -> float:
    """How long the notebook took when its committed outputs were made (cell timestamps), or 0."""
    import json
    from datetime import datetime

    stamps = []
    for cell in json.loads(path.read_text(encoding="utf-8")).get("cells", []):
        ex = cell.get("metadata", {}).get("execution", {})
        stamps += [datetime.fromisoformat(v.replace("Z", "+00:00")) for k, v in ex.items()
                   if k in ("iopub.status.busy", "iopub.status.idle")]
    return (max(stamps) - min(stamps)).total_seconds() if stamps else 0.0


def _execute(path: str, cell_timeout: float) -> tuple[str, float, str | None]:
    """Run one notebook in a fresh kernel (in a worker): ``(executed notebook as JSON, seconds, error)``."""
    import nbformat
    from jupyter_cache.executors.utils import single_nb_execution

    nb = nbformat.read(path, as_version=4)
    result = single_nb_execution(nb, cwd=str(Path(path).parent), timeout=cell_timeout,
                                 allow_errors=False, meta_override=True)
    return nbformat.writes(result.nb), result.time, result.exc_string


def execute_book(notebooks: list[Path], cache_dir: Path, workers: int,
                 cell_timeout: float, notebook_limit: float, out=sys.stdout) -> int:
    """Execute the notebooks not cached yet, ``workers`` at a time; cache the ones that pass."""
    import nbformat
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    cache = get_cache(str(cache_dir))
    todo = []
    for path in notebooks:
        try:
            cache.match_cache_notebook(nbformat.read(path, as_version=4))
            print(f"execute_book: {path.name:28s} cached", file=out)
        except KeyError:
            todo.append(path)
    # Longest first (as timed when the committed outputs were made), so that the last notebook
    # to finish is a short one and both workers stay busy to the end.
    todo.sort(key=expected_seconds, reverse=True)
    failed = 0
    start = time.perf_counter()
    # The cache's database is written here only, in this process; the workers just execute.
    with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
        jobs = {pool.submit(_execute, str(p), cell_timeout): p for p in todo}
        for job in as_completed(jobs):
            path = jobs[job]
            try:
                text, seconds, error = job.result()
            except Exception as exc:  # the kernel died, the file is unreadable, ...
                text, seconds, error = "", float("nan"), f"{type(exc).__name__}: {exc}"
            if error is not None:
                failed += 1
                print(f"execute_book: {path.name}: FAILED\n{error}", file=out)
                continue
            over = seconds > notebook_limit
            print(f"execute_book: {path.name:28s} {seconds:6.1f} s" + (
                f"  OVER the limit of {notebook_limit:.0f} s per notebook "
                "(nb_notebook_time_limit in _config.yml)" if over else ""), file=out, flush=True)
            failed += over
            record = cache.add_nb_to_project(str(path))
            cache.cache_notebook_bundle(
                CacheBundleIn(nbformat.reads(text, as_version=4), record.uri,
                              data={"execution_seconds": seconds}),
                check_validity=False, overwrite=True)
    if todo:
        print(f"execute_book: {len(todo)} notebook(s) in {time.perf_counter() - start:.0f} s "
              f"with {workers} worker(s); {failed} failed", file=out)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="notebooks to execute (default: every notebook in _toc.yml)")
    parser.add_argument("-j", "--workers", type=int,
                        default=int(os.environ.get("NERBOOK_BOOK_WORKERS", "2")),
                        help="notebooks executed at once (default: NERBOOK_BOOK_WORKERS or 2)")
    parser.add_argument("--cache", type=Path, default=ROOT / "_build" / ".jupyter_cache",
                        help="the jupyter-cache folder the build reads (default: _build/.jupyter_cache)")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error(f"argument -j/--workers: must be at least 1, got {args.workers}")
    notebooks = [p.resolve() for p in args.notebooks] or toc_notebooks()
    missing = [str(p) for p in notebooks if not p.is_file()]
    if missing:
        parser.error(f"no such notebook: {missing[0]}")
    cell_timeout, notebook_limit = limits()
    return execute_book(notebooks, args.cache, args.workers, cell_timeout, notebook_limit)


if __name__ == "__main__":
    sys.exit(main())
