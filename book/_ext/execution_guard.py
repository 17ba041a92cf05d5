"""Fail the book build when a notebook took too long to execute, and print every notebook's time.

A cell that hangs is already stopped by ``execute.timeout`` in ``_config.yml`` (nbclient raises
``CellTimeoutError`` with the cell's source, and the build fails). This extension guards the rest
of a notebook's run, the kernel's start and shutdown included: when a notebook's execution took
longer than ``nb_notebook_time_limit`` seconds (``sphinx: config:`` in ``_config.yml``), it
emits a warning naming the notebook, so the build (run with ``-W``) fails instead of succeeding
slowly. The same limits guard the test suite (``tests/conftest.py`` reads them from
``_config.yml``).

After all pages are read it prints one line per executed notebook: its time, and whether it
ran in this build or came from the execution cache (``_build/.jupyter_cache``).
"""

from __future__ import annotations

from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)


def execution_times(env) -> dict[str, dict]:
    """``{docname: myst-nb's execution record}`` for every page that is a notebook."""
    from myst_nb.sphinx_ import NbMetadataCollector

    data = NbMetadataCollector.get_doc_data(env)
    return {doc: d["exec_data"] for doc, d in sorted(data.items()) if d.get("exec_data")}


def check_execution_times(app: Sphinx, env) -> None:
    limit = float(app.config.nb_notebook_time_limit)
    times = execution_times(env)
    if not times:
        return
    logger.info("notebook execution times (limit %.0f s per notebook):", limit)
    for doc, rec in times.items():
        runtime = rec.get("runtime")
        where = "cached" if rec.get("method") == "cache" and rec.get("mtime", 0) < app.env_start else "ran"
        logger.info("  %-28s %8s  (%s)", doc, "-" if runtime is None else f"{runtime:.1f} s", where)
        if runtime is not None and runtime > limit:
            logger.warning(
                "%s: executing this notebook took %.0f s, over the limit of %.0f s per notebook "
                "(nb_notebook_time_limit in _config.yml): a stalled kernel, or a chapter grown too "
                "slow. Clear _build/.jupyter_cache and rebuild to re-measure.",
                env.doc2path(doc), runtime, limit, type="nerbook", subtype="exec_time",
            )


def record_start(app: Sphinx) -> None:
    import time

    app.env_start = time.time()


def setup(app: Sphinx) -> dict:
    app.add_config_value("nb_notebook_time_limit", 240, "env", types=[int, float])
    app.connect("builder-inited", record_start)
    app.connect("env-updated", check_execution_times)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
