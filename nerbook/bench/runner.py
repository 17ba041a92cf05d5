"""Running benchmark contenders in fresh processes (chapter "Making it fast").

A run's peak memory is only its own in a process of its own. Forking each run from a server
that has imported the heavy libraries once keeps the start of a run to a fraction of a second.
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Callable

# imported once by the fork server, so that a run starts in a fraction of a second
_PRELOAD = ["nerbook.bench", "nerbook.train", "nerbook.predict", "nerbook.model",
            "nerbook.synthetic", "transformers", "transformers.modeling_utils",
            "transformers.models.auto.modeling_auto", "transformers.models.auto.tokenization_auto",
            "transformers.models.bert.modeling_bert", "transformers.data.data_collator",
            "accelerate", "accelerate.accelerator", "datasets", "seqeval.metrics", "sklearn.metrics",
            "safetensors.torch"]


def _child(conn, fn: Callable, args: tuple) -> None:
    os.dup2(2, 1)  # the Trainer prints its logs: keep stdout for the JSON report
    try:
        result = ("ok", fn(*args))
    except BaseException:  # report everything, including KeyboardInterrupt, to the parent
        result = ("error", traceback.format_exc())
    conn.send(result)
    conn.close()


class Runner:
    """Runs module-level functions in fresh processes forked from a server that imported the
    heavy libraries once (``isolate=True``), or in this process (``isolate=False``, faster,
    but then memory peaks are not each run's own)."""

    def __init__(self, isolate: bool = True, preload: tuple[str, ...] = ()) -> None:
        self.isolate = isolate
        self._ctx = None
        if isolate:
            import multiprocessing as mp

            method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
            self._ctx = mp.get_context(method)
            if method == "forkserver":
                self._ctx.set_forkserver_preload([*_PRELOAD, *preload])

    def __call__(self, fn: Callable, *args):
        """``fn(*args)``, in a fresh process when isolating (``fn`` must be a module-level
        function, which the child process imports by name)."""
        name = f"{fn.__module__}.{fn.__qualname__}"
        if not self.isolate:
            with contextlib.redirect_stdout(sys.stderr):
                return fn(*args)
        recv, send = self._ctx.Pipe(duplex=False)
        proc = self._ctx.Process(target=_child, args=(send, fn, args))
        proc.start()
        send.close()
        try:
            status, value = recv.recv()
        except EOFError:
            proc.join()
            raise RuntimeError(f"benchmark process for {name}{args[:1]} died (exit code {proc.exitcode})") from None
        proc.join()
        if status != "ok":
            raise RuntimeError(f"benchmark run {name}{args[:1]} failed:\n{value}")
        return value


def set_threads(threads: int | None) -> None:
    """``torch.set_num_threads(threads)``; None keeps torch's default."""
    if threads:
        import torch

        torch.set_num_threads(threads)
