"""The training loop (chapter "The fine-tuning recipe", "Fine-tuning and evaluation").

One readable loop, top to bottom: windows with aligned labels, random batches packed into rows
without padding (length-grouped batches with dynamic padding for non-BERT models), pretrained
word embeddings kept as they are, AdamW with decoupled weight decay (none on biases and LayerNorm), linear
warm-up then decay, gradient clipping, mixed precision and gradient accumulation through
``accelerate`` (which also runs it on several GPUs under ``accelerate launch``), evaluation on
the dev set after every epoch, early stopping on dev entity F1, and the best checkpoint saved
as safetensors with its tokenizer and label names.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import datasets
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from nerbook.align import WindowConfig, continuation_labels, encode_windows
from nerbook.batching import (
    MODEL_INPUTS,
    LengthGroupedBatchSampler,
    PackingCollator,
    real_tokens,
    token_collator,
)
from nerbook.data import schema_of, tag_names
from nerbook.metrics import entity_scores, token_scores
from nerbook.model import save_checkpoint
from nerbook.notebook import seed_everything
from nerbook.predict import Tagger


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class TrainConfig:
    """Hyper-parameters of a run (chapter "The fine-tuning recipe" explains each)."""

    epochs: int = 3
    batch_size: int = 16
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    grad_accum: int = 1
    mixed_precision: str = "auto"  # "auto", "no", "bf16" or "fp16"
    max_length: int = 128
    stride: int = 32
    doc_context: bool = False
    group_by_length: bool = True
    patience: int | None = 2  # epochs without dev-F1 gain before stopping; None = never
    seed: int = 0
    eval_batch_size: int = 64
    log_every: int = 20
    fused: bool | None = None  # fused AdamW; None = where torch supports it
    freeze_encoder: bool = False  # train the classifier head only
    freeze_word_embeddings: bool | None = None  # keep them as pretrained; None = unless a tiny model
    progress: bool = True
    packing: bool = True  # pack random batches into rows (BERT models; else length grouping)
    label_all_subwords: bool = False  # later subwords learn I-X too (for taggers that read them all)


@dataclass
class TrainResult:
    """What a run returns: the history for plots and where the best model is."""

    history: dict = field(default_factory=lambda: {"steps": [], "epochs": []})
    best_f1: float = float("nan")
    best_epoch: int = -1
    stopped_early: bool = False
    out_dir: str | None = None
    model: torch.nn.Module | None = None
    train_seconds: float = 0.0
    trainable_parameters: int = 0  # the weights the optimiser updated


def resolve_precision(requested: str, device: str) -> str:
    """``auto`` -> bf16 where the hardware computes it natively (recent GPUs, AVX-512-BF16 or
    AMX CPUs), else fp16 on older GPUs, else full precision."""
    if requested != "auto":
        if requested not in ("no", "bf16", "fp16"):
            raise ValueError(f"mixed_precision must be auto, no, bf16 or fp16, got {requested!r}")
        return requested
    if device == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device == "cpu":
        cpu = torch.cpu
        native = getattr(cpu, "_is_avx512_bf16_supported", lambda: False)() or getattr(
            cpu, "_is_amx_tile_supported", lambda: False)()
        return "bf16" if native else "no"
    return "no"


def _reset_accelerate_precision(precision: str) -> None:
    """Let a second run in the same process use another precision: accelerate keeps its state
    (and its mixed precision) per process and refuses a change. The process group is kept."""
    from accelerate.state import AcceleratorState

    state = AcceleratorState._shared_state
    if state and state.get("_mixed_precision", precision) != precision:
        AcceleratorState._reset_state(reset_partial_state=False)


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices (weights, embeddings); leave vectors (biases, LayerNorm) undecayed."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def freeze_word_embeddings(model: torch.nn.Module, setting: bool | None = None) -> list[torch.nn.Parameter]:
    """Freeze ``model``'s input word embeddings as ``TrainConfig.freeze_word_embeddings`` says;
    return the parameters it froze (chapter "Making it fast").

    The table is half of MiniLM's weights: training it costs a full-size gradient and AdamW
    update every step for the few rows a batch uses, for no gain in dev F1. ``None`` freezes it
    unless the model is one of nerbook's tiny ones (``config.nerbook_tiny``: a small vocabulary
    learnt here), which train theirs.
    """
    embeddings = getattr(model, "get_input_embeddings", lambda: None)()
    if setting is None:
        setting = not getattr(getattr(model, "config", None), "nerbook_tiny", False)
    if not setting or embeddings is None:
        return []
    frozen = [p for p in embeddings.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    return frozen


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, device: str) -> torch.optim.Optimizer:
    """AdamW with decoupled weight decay; the fused kernel where torch has one for ``device``."""
    fused = cfg.fused if cfg.fused is not None else device in ("cpu", "cuda")
    return torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, fused=fused or None)


def linear_warmup_decay(optimizer: torch.optim.Optimizer, warmup: int, total: int, every: int = 1):
    """Learning rate rising linearly for ``warmup`` steps, then falling linearly to 0.

    ``every``: scheduler calls per optimizer step (accelerate calls a prepared scheduler once per
    process at every step, so that is the number of processes under ``accelerate launch``).
    """
    def factor(step: int) -> float:
        step //= every
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def evaluate(model, tokenizer, dataset: datasets.Dataset, cfg: TrainConfig | None = None,
             device: str | None = None, precision: str = "fp32", token_level: bool = False) -> dict:
    """Entity-level scores of ``model`` on a labelled dataset (on words, conlleval rules);
    with ``token_level``, the per-tag report too (under ``token_level``), for contrast."""
    cfg = cfg or TrainConfig()
    tagger = Tagger(model, tokenizer, cfg.max_length, cfg.stride, cfg.doc_context,
                    batch_size=cfg.eval_batch_size, device=device, precision=precision)
    pred, _ = tagger.predict_dataset(dataset)
    gold = tag_names(dataset)
    scores = entity_scores(gold, pred)
    if token_level:
        scores["token_level"] = token_scores(gold, pred)
    return scores


def _loader(windows: datasets.Dataset, tokenizer, cfg: TrainConfig,
            packer: PackingCollator | None = None) -> tuple[DataLoader, LengthGroupedBatchSampler]:
    """Random batches packed by ``packer`` (no padding), else length-grouped padded batches."""
    rows = windows.select_columns([c for c in MODEL_INPUTS if c in windows.column_names]).to_list()
    sampler = LengthGroupedBatchSampler([len(r["input_ids"]) for r in rows], cfg.batch_size,
                                        seed=cfg.seed, mega=50 if cfg.group_by_length and packer is None else 1,
                                        shuffle=True)
    return DataLoader(rows, batch_sampler=sampler, collate_fn=packer or token_collator(tokenizer)), sampler


def train(model, tokenizer, train_ds: datasets.Dataset, valid_ds: datasets.Dataset | None = None,
          cfg: TrainConfig | None = None, out_dir: str | Path | None = None,
          resume_from: str | Path | None = None) -> TrainResult:
    """Fine-tune ``model`` on ``train_ds``; evaluate on ``valid_ds`` after each epoch.

    With ``out_dir``, the best model (by dev entity F1) goes to ``out_dir/best`` and the state
    to resume from to ``out_dir/last``. Returns a :class:`TrainResult` whose ``model`` holds the
    best weights.
    """
    from accelerate import Accelerator

    cfg = cfg or TrainConfig()
    seed_everything(cfg.seed, deterministic=False)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    precision = resolve_precision(cfg.mixed_precision, device)
    _reset_accelerate_precision(precision)
    acc = Accelerator(mixed_precision=precision, gradient_accumulation_steps=cfg.grad_accum)
    device = acc.device.type

    if cfg.freeze_encoder:
        base = getattr(model, model.base_model_prefix, None)
        for p in (base.parameters() if base is not None else []):
            p.requires_grad_(False)

    frozen = freeze_word_embeddings(model, cfg.freeze_word_embeddings)

    window = WindowConfig(cfg.max_length, cfg.stride, cfg.doc_context)
    later = continuation_labels(schema_of(train_ds).names) if cfg.label_all_subwords else None
    windows = encode_windows(train_ds, tokenizer, window, later)
    packer = PackingCollator.for_model(model, tokenizer) if cfg.packing else None
    loader, _ = _loader(windows, tokenizer, cfg, packer)
    optimizer = make_optimizer(model, cfg, device)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    steps_per_epoch = math.ceil(len(loader) / acc.num_processes / cfg.grad_accum)
    total = steps_per_epoch * cfg.epochs
    scheduler = linear_warmup_decay(optimizer, int(cfg.warmup_ratio * total), total, every=acc.num_processes)
    model, optimizer, loader, scheduler = acc.prepare(model, optimizer, loader, scheduler)

    result = TrainResult(out_dir=str(out_dir) if out_dir else None, trainable_parameters=trainable)
    start_epoch, bad_epochs, best_state = 0, 0, None
    if resume_from is not None:
        start_epoch, bad_epochs = _load_state(Path(resume_from), acc.unwrap_model(model), optimizer,
                                              scheduler, result)
    out = Path(out_dir) if out_dir else None
    meta = {"max_length": cfg.max_length, "stride": cfg.stride, "doc_context": cfg.doc_context,
            "train_config": asdict(cfg)}

    step = steps_per_epoch * start_epoch
    t_start = time.perf_counter()
    for epoch in range(start_epoch, cfg.epochs):
        loader.set_epoch(epoch)  # the prepared loader keeps its own epoch count: set it, or a resume restarts at 0
        torch.manual_seed(cfg.seed + epoch)  # dropout masks: the same after a resume
        model.train()
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=acc.device)
        loss_count, real, computed = 0, torch.zeros((), device=acc.device, dtype=torch.long), 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not (cfg.progress and acc.is_main_process),
                   leave=False)
        for batch in bar:
            with acc.accumulate(model):
                loss = model(**batch).loss
                acc.backward(loss)
                if acc.sync_gradients:
                    if cfg.max_grad_norm:
                        acc.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            loss_sum += loss.detach()
            loss_count += 1
            real += real_tokens(batch, tokenizer.pad_token_id)
            computed += batch["input_ids"].numel()
            if acc.sync_gradients:
                step += 1
                if step % cfg.log_every == 0:  # one host sync every log_every steps
                    value = (loss_sum / loss_count).item()
                    _check_finite(value, step)
                    result.history["steps"].append({"step": step, "epoch": epoch + 1, "loss": value,
                                                    "lr": scheduler.get_last_lr()[0]})
                    bar.set_postfix(loss=f"{value:.4f}")
        train_loss = (loss_sum / max(1, loss_count)).item()
        _check_finite(train_loss, step)
        seconds = time.perf_counter() - t0
        record = {"epoch": epoch + 1, "step": step, "train_loss": train_loss, "seconds": seconds,
                  "real_tokens": int(real.item()), "computed_tokens": computed * acc.num_processes}
        unwrapped = acc.unwrap_model(model)
        if valid_ds is not None:
            scores = evaluate(unwrapped, tokenizer, valid_ds, cfg, device=device,
                              precision="fp32" if precision == "no" else precision)
            record.update(dev_f1=scores["overall"]["f1"], dev_precision=scores["overall"]["precision"],
                          dev_recall=scores["overall"]["recall"],
                          dev_per_type={k: v["f1"] for k, v in scores["per_type"].items()})
            improved = not (scores["overall"]["f1"] <= result.best_f1)  # first epoch: nan
            if improved:
                result.best_f1, result.best_epoch, bad_epochs = scores["overall"]["f1"], epoch + 1, 0
                if out is not None and acc.is_main_process:
                    save_checkpoint(unwrapped, tokenizer, out / "best", {**meta, "epoch": epoch + 1,
                                                                           "dev_f1": result.best_f1})
                elif out is None:
                    best_state = {k: v.detach().clone() for k, v in unwrapped.state_dict().items()}
            else:
                bad_epochs += 1
        result.history["epochs"].append(record)
        if out is not None and acc.is_main_process:
            _save_state(out / "last", unwrapped, tokenizer, optimizer, scheduler, epoch, bad_epochs, result, meta)
        if acc.is_main_process and cfg.progress:
            msg = f"epoch {epoch + 1}: train loss {train_loss:.4f}"
            if "dev_f1" in record:
                msg += f", dev entity F1 {record['dev_f1']:.4f}"
            print(msg + f" ({seconds:.1f} s)")
        if valid_ds is not None and cfg.patience is not None and bad_epochs >= cfg.patience:
            result.stopped_early = True
            if acc.is_main_process and cfg.progress:
                print(f"early stopping: no dev F1 gain for {bad_epochs} epochs; best was epoch {result.best_epoch}")
            break
    result.train_seconds = time.perf_counter() - t_start
    acc.wait_for_everyone()
    final = acc.unwrap_model(model, keep_fp32_wrapper=False)  # no autocast left: predicts like a reloaded checkpoint
    if out is not None and (out / "best").is_dir():
        from safetensors.torch import load_file

        final.load_state_dict(load_file(str(out / "best" / "model.safetensors")), strict=False)
    elif best_state is not None:
        final.load_state_dict(best_state)
    if valid_ds is None and out is not None and acc.is_main_process:
        save_checkpoint(final, tokenizer, out / "best", {**meta, "epoch": cfg.epochs})
    for p in frozen:  # hand the model back as it came
        p.requires_grad_(True)
    result.model = final
    return result


def _check_finite(value: float, step: int) -> None:
    if not math.isfinite(value):
        raise TrainingDiverged(f"the training loss is {value} at step {step}: training stopped. "
                               "Lower the learning rate, check the labels, or use bf16 instead of fp16.")


def _save_state(path: Path, model, tokenizer, optimizer, scheduler, epoch: int, bad_epochs: int,
                result: TrainResult, meta: dict) -> None:
    save_checkpoint(model, tokenizer, path, {**meta, "epoch": epoch + 1})
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "epoch": epoch, "bad_epochs": bad_epochs}, path / "train_state.pt")
    (path / "history.json").write_text(json.dumps({"history": result.history, "best_f1": result.best_f1,
                                                   "best_epoch": result.best_epoch}))


def _load_state(path: Path, model, optimizer, scheduler, result: TrainResult) -> tuple[int, int]:
    """Restore weights (safetensors) and optimizer/scheduler state (``weights_only`` load)."""
    from safetensors.torch import load_file

    if not (path / "train_state.pt").is_file():
        raise FileNotFoundError(f"{path}: no train_state.pt to resume from (use OUT/last)")
    model.load_state_dict(load_file(str(path / "model.safetensors")), strict=False)
    state = torch.load(path / "train_state.pt", map_location="cpu", weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    saved = json.loads((path / "history.json").read_text())
    result.history, result.best_f1, result.best_epoch = saved["history"], saved["best_f1"], saved["best_epoch"]
    return state["epoch"] + 1, state["bad_epochs"]
