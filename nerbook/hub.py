"""The local Hugging Face hub cache: whether we are offline, where the cache is, what it holds.

Used by :func:`nerbook.data.load_hub` and :func:`nerbook.model.resolve_model_path`, so that
the ``full`` profile (chapters "NER data and labels", "Fine-tuning and evaluation") also runs
offline once a first online run has filled the cache.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path


def _env_true(var: str) -> bool:
    return os.environ.get(var, "0").strip().lower() not in ("0", "", "false", "no", "off")


def hub_offline(datasets_too: bool = False) -> bool:
    """Whether ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``; with ``datasets_too``, also
    ``HF_DATASETS_OFFLINE``) is set now."""
    return _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE") or (
        datasets_too and _env_true("HF_DATASETS_OFFLINE"))


def hub_cache_dir() -> str:
    """The hub cache folder: ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else huggingface_hub's.

    Read from the environment at each call (huggingface_hub reads it once, at import).
    """
    from huggingface_hub import constants

    if os.environ.get("HF_HUB_CACHE"):
        return os.path.expanduser(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return os.path.join(os.path.expanduser(os.environ["HF_HOME"]), "hub")
    return constants.HF_HUB_CACHE


def cached_snapshot(repo_id: str, repo_type: str = "model", revision: str | None = None,
                    needed: Sequence[str] | None = None) -> Path | None:
    """The folder of ``repo_id`` at ``revision`` (default ``main``) in the local hub cache, or None.

    Asks huggingface_hub (``snapshot_download`` with ``local_files_only``), so it finds what
    ``from_pretrained``/``load_dataset`` downloaded before, and never touches the network.
    ``needed`` (glob patterns) are the files that must be there where the cache knows the
    repository's file list; other files of the repository may be missing, as they are after
    ``from_pretrained``, which fetches only some of them.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        folder = snapshot_download(repo_id, repo_type=repo_type, revision=revision,
                                   cache_dir=hub_cache_dir(), local_files_only=True,
                                   allow_patterns=list(needed) if needed else None)
    except (LocalEntryNotFoundError, HFValidationError):  # includes IncompleteSnapshotError
        return None
    return Path(folder)
