"""The training state of a run, saved after every epoch to ``OUT/last`` so that ``nerbook train
--resume OUT/last`` continues it (chapter "Fine-tuning and evaluation").

``OUT/last`` is a full checkpoint (:func:`nerbook.model.save_checkpoint`: weights, tokenizer,
``nerbook.json``) plus ``train_state.pt`` (optimizer, scheduler, epoch, early-stopping count;
tensors only, read with ``weights_only``) and ``history.json`` (the epochs so far, the best F1).
The folder is written all at once (:func:`nerbook.model.atomic_folder`): a kill while saving
leaves the previous one whole. Every file that cannot be read is a :class:`ModelLoadError` (or
``FileNotFoundError``) naming it. :class:`BestCheckpoint` keeps the run's best weights so far
(``OUT/best``, or a copy in memory).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import torch

from nerbook.model import ModelLoadError, atomic_folder, save_checkpoint, write_checkpoint

STATE_FILE, HISTORY_FILE = "train_state.pt", "history.json"


def save_state(path: Path, model, tokenizer, optimizer, scheduler, epoch: int, bad_epochs: int,
               result, meta: dict, average=None) -> None:
    """Write the state after ``epoch`` (0-based) of a run whose :class:`~nerbook.train.TrainResult`
    is ``result`` to ``path`` (with the weight average, :class:`~nerbook.averaging.WeightAverage`, if
    any), replacing the previous one only once it is complete."""
    with atomic_folder(path) as tmp:
        write_checkpoint(model, tokenizer, tmp, {**meta, "epoch": epoch + 1})
        state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                 "epoch": epoch, "bad_epochs": bad_epochs}
        torch.save(state if average is None else {**state, "average": average.state_dict()}, tmp / STATE_FILE)
        (tmp / HISTORY_FILE).write_text(json.dumps({"history": result.history, "best_f1": result.best_f1,
                                                    "best_epoch": result.best_epoch}))


class BestCheckpoint:
    """Where the best weights so far live: ``path`` (a checkpoint folder) when given, else a copy
    in memory. Only the main process (``write``) saves; every process can restore."""

    def __init__(self, path: Path | None, tokenizer, meta: dict, write: bool = True) -> None:
        self.path, self.tokenizer, self.meta, self.write = path, tokenizer, meta, write
        self.state: dict | None = None

    def save(self, model, epoch: int, dev_f1: float | None) -> None:
        if self.path is None:
            self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        elif self.write:
            extra = {"epoch": epoch} if dev_f1 is None else {"epoch": epoch, "dev_f1": dev_f1}
            save_checkpoint(model, self.tokenizer, self.path, {**self.meta, **extra})

    def restore(self, model) -> None:
        """Load the best weights into ``model`` (those of an earlier run too, after a resume)."""
        if self.path is not None and (self.path / "model.safetensors").is_file():
            from safetensors.torch import load_file

            model.load_state_dict(load_file(str(self.path / "model.safetensors")), strict=False)
        elif self.state is not None:
            model.load_state_dict(self.state)


def check_state_folder(path: str | Path) -> Path:
    """``path`` as a folder to resume from, or ``FileNotFoundError`` naming what is missing."""
    path = Path(path)
    for name in (STATE_FILE, HISTORY_FILE, "model.safetensors"):
        if not (path / name).is_file():
            raise FileNotFoundError(f"{path / name}: missing; resume from the OUT/last folder of a run")
    return path


def load_state(path: str | Path, model, optimizer, scheduler, result, average=None) -> tuple[int, int]:
    """Restore weights (safetensors), optimizer, scheduler and ``average`` (a ``weights_only``
    load) and the history into ``result``; return the epoch to start from and the early-stopping count."""
    from safetensors.torch import load_file

    path = check_state_folder(path)
    with _reading(path / "model.safetensors"):
        model.load_state_dict(load_file(str(path / "model.safetensors")), strict=False)
    with _reading(path / STATE_FILE):
        state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if average is not None and "average" in state:
            average.load_state_dict(state["average"])
        epoch, bad_epochs = int(state["epoch"]), int(state["bad_epochs"])
    with _reading(path / HISTORY_FILE):
        saved = json.loads((path / HISTORY_FILE).read_text(encoding="utf-8"))
        result.history, result.best_f1, result.best_epoch = saved["history"], saved["best_f1"], saved["best_epoch"]
        if len(result.history["epochs"]) != epoch + 1:
            raise ValueError(f"{len(result.history['epochs'])} epochs recorded, {STATE_FILE} is after epoch {epoch + 1}")
    return epoch + 1, bad_epochs


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Turn any error while reading ``path`` into one :class:`ModelLoadError` naming it."""
    try:
        yield
    except ModelLoadError:
        raise
    except Exception as e:  # truncated, not a pickle, wrong keys, another model's optimizer
        first = str(e).strip().splitlines()[0] if str(e).strip() else "unreadable"
        if "weights_only" in first:  # torch's advice to load it unsafely: not ours to give
            first = "not a tensors-only pickle"
        raise ModelLoadError(f"{path}: cannot resume from it ({type(e).__name__}: {first}); "
                             "it is truncated, damaged or not from nerbook train") from None
