"""The training loop (chapter "The fine-tuning recipe", "Fine-tuning and evaluation").

One readable loop for every task (what differs between tasks comes from a :mod:`nerbook.tasks`
object; named-entity recognition by default), top to bottom: windows with aligned labels, random
batches packed into rows without padding (length-grouped batches with dynamic padding for non-BERT models), pretrained
word embeddings kept as they are, AdamW with decoupled weight decay (none on biases and LayerNorm), linear
warm-up then decay, gradient clipping, mixed precision and gradient accumulation through
``accelerate`` (which also runs it on several GPUs under ``accelerate launch``), evaluation on
the dev set after every epoch, early stopping on dev entity F1, and the best checkpoint saved
as safetensors with its tokenizer and label names. Optionally: adversarial training in embedding
space (FGM or PGD, :mod:`nerbook.adversarial`), layer-wise learning-rate decay
(:mod:`nerbook.layerwise`), the weights averaged over the last steps (:mod:`nerbook.averaging`).
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import datasets
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from nerbook.adversarial import Adversary
from nerbook.averaging import WeightAverage
from nerbook.batching import (
    MODEL_INPUTS,
    LengthGroupedBatchSampler,
    PackingCollator,
    real_tokens,
    token_collator,
)
from nerbook.checkpoint import BestCheckpoint, load_state, save_state
from nerbook.layerwise import layer_decay_groups
from nerbook.model import count_parameters
from nerbook.runtime import pick_device, resolve_precision, scoring_precision, seed_everything
from nerbook.switches import set_attention, set_dropout
from nerbook.tasks import Task, TokenTagging, check_label_smoothing, tagging_loss


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
    adversarial: str | None = None  # "fgm" or "pgd": adversarial training in embedding space
    adv_eps: float = 0.1  # L2 size per labelled token's embedding (the CoNLL sweep's best, records/adversarial-*)
    adv_steps: int = 3  # PGD's steps (FGM takes one)
    dropout: float | None = None  # every dropout layer's rate during training; None = the model's own (0.1 in BERT)
    attention_dropout: float | None = None  # the attention weights' dropout alone (BERT-style models); None = as above
    attention: str | None = None  # attention kernel while training, "eager" or "sdpa"; None = the model's own
    label_smoothing: float = 0.0  # share of each labelled token's target spread over all labels (NER only)
    layer_decay: float | None = None  # each layer down from the head trains at this times the rate above it
    average_from: float | None = None  # share of the steps after which the weights are averaged (the model kept)


@dataclass
class TrainResult:
    """What a run returns: the history for plots and where the best model is."""

    history: dict = field(default_factory=lambda: {"steps": [], "epochs": []})
    best_f1: float = float("nan")  # the best main dev score: entity F1 (NER), macro-F1 (classification)
    best_epoch: int = -1
    stopped_early: bool = False
    out_dir: str | None = None
    model: torch.nn.Module | None = None
    train_seconds: float = 0.0
    trainable_parameters: int = 0  # the weights the optimiser updated


def make_accelerator(cfg: TrainConfig):
    """An ``accelerate.Accelerator`` with ``cfg``'s precision (``auto`` resolved for this machine)
    and gradient accumulation.

    accelerate keeps one state per process and refuses a second precision in it; a second run in the
    same process (a notebook comparing fp32 with bf16) needs it reset, which has no public call: this
    uses ``AcceleratorState._reset_state`` and fails loudly if a release removes it (``test_train``).
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, is_initialized

    precision = resolve_precision(cfg.mixed_precision, pick_device())
    if is_initialized() and AcceleratorState().mixed_precision != precision:
        reset = getattr(AcceleratorState, "_reset_state", None)
        if reset is None:
            import accelerate

            raise RuntimeError(f"accelerate {accelerate.__version__} has no AcceleratorState._reset_state: "
                               f"cannot switch this process to mixed_precision={precision!r}; start a new process")
        reset(reset_partial_state=False)  # the process group is kept
    return Accelerator(mixed_precision=precision, gradient_accumulation_steps=cfg.grad_accum)


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


def run_settings(model: torch.nn.Module, cfg: TrainConfig):
    """Freeze the word embeddings (:func:`freeze_word_embeddings`), set every dropout layer
    (``cfg.dropout``, :func:`~nerbook.switches.set_dropout`), then the attention weights' dropout
    (``cfg.attention_dropout``) and the attention kernel (``cfg.attention``,
    :func:`~nerbook.switches.set_attention`) for a run; return the function that hands the model back
    as it came (chapter "Making it fast")."""
    frozen = freeze_word_embeddings(model, cfg.freeze_word_embeddings)
    dropout_before = set_dropout(model, cfg.dropout) if cfg.dropout is not None else None
    attention_dropout_before = (set_dropout(model, cfg.attention_dropout, attention_only=True)
                                if cfg.attention_dropout is not None else None)
    attention_before = set_attention(model, cfg.attention) if cfg.attention is not None else None

    def hand_back() -> None:
        for p in frozen:
            p.requires_grad_(True)
        if attention_before is not None:
            set_attention(model, attention_before)
        for before in (attention_dropout_before, dropout_before):
            if before is not None:
                set_dropout(model, before)

    return hand_back


def freeze_encoder(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """Freeze the pretrained body (``model.<base_model_prefix>``), so that only the head trains;
    return the parameters it froze (chapter "The fine-tuning recipe")."""
    frozen = [p for p in getattr(model, model.base_model_prefix).parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    return frozen


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, device: str) -> torch.optim.Optimizer:
    """AdamW with decoupled weight decay (and ``cfg.layer_decay``'s rate per layer,
    :func:`~nerbook.layerwise.layer_decay_groups`); the fused kernel where torch has one for ``device``."""
    fused = cfg.fused if cfg.fused is not None else device in ("cpu", "cuda")
    groups = (param_groups(model, cfg.weight_decay) if cfg.layer_decay is None
              else layer_decay_groups(model, cfg.weight_decay, cfg.lr, cfg.layer_decay))
    return torch.optim.AdamW(groups, lr=cfg.lr, fused=fused or None)


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
    return TokenTagging().evaluate(model, tokenizer, dataset, cfg or TrainConfig(), device, precision, token_level)


def make_loader(windows: datasets.Dataset, tokenizer, cfg: TrainConfig,
                collate=None) -> tuple[DataLoader, LengthGroupedBatchSampler]:
    """The training batches of :func:`train`: random batches packed into rows when ``collate``
    is a :class:`~nerbook.batching.PackingCollator` (no padding), else length-grouped batches
    padded to their longest row by ``collate`` (default: :func:`~nerbook.batching.token_collator`).
    Returns the loader and its sampler (call ``sampler.set_epoch(e)`` for epoch ``e``'s order)."""
    rows = windows.select_columns([c for c in MODEL_INPUTS if c in windows.column_names]).to_list()
    packed = isinstance(collate, PackingCollator)
    sampler = LengthGroupedBatchSampler([len(r["input_ids"]) for r in rows], cfg.batch_size,
                                        seed=cfg.seed, mega=50 if cfg.group_by_length and not packed else 1,
                                        shuffle=True)
    return DataLoader(rows, batch_sampler=sampler, collate_fn=collate or token_collator(tokenizer)), sampler


def train(model, tokenizer, train_ds: datasets.Dataset, valid_ds: datasets.Dataset | None = None,
          cfg: TrainConfig | None = None, out_dir: str | Path | None = None,
          resume_from: str | Path | None = None, task: Task | None = None) -> TrainResult:
    """Fine-tune ``model`` on ``train_ds`` for ``task`` (default: :class:`~nerbook.tasks.TokenTagging`,
    NER); evaluate on ``valid_ds`` after each epoch. With ``out_dir``, the best model (by the task's
    main dev score) goes to ``out_dir/best`` and the state to resume from to ``out_dir/last``.
    Returns a :class:`TrainResult` whose ``model`` holds the best weights."""
    cfg, task = cfg or TrainConfig(), task or TokenTagging()
    check_settings(cfg, task)
    seed_everything(cfg.seed, deterministic=False)
    acc = make_accelerator(cfg)
    device, precision = acc.device.type, acc.mixed_precision
    if cfg.freeze_encoder:  # train the classifier head only (it stays so)
        freeze_encoder(model)
    hand_back = run_settings(model, cfg)  # frozen word embeddings, dropout: undone at the end

    loader, _ = make_loader(task.features(train_ds, tokenizer, cfg), tokenizer, cfg, task.collator(model, tokenizer, cfg))
    optimizer = make_optimizer(model, cfg, device)
    result = TrainResult(out_dir=str(out_dir) if out_dir else None,
                         trainable_parameters=count_parameters(model, trainable_only=True))
    steps_per_epoch = math.ceil(len(loader) / acc.num_processes / cfg.grad_accum)
    total = steps_per_epoch * cfg.epochs
    scheduler = linear_warmup_decay(optimizer, int(cfg.warmup_ratio * total), total, every=acc.num_processes)
    model, optimizer, loader, scheduler = acc.prepare(model, optimizer, loader, scheduler)
    average = None if cfg.average_from is None else WeightAverage(model, int(cfg.average_from * total))

    start_epoch, bad_epochs = (0, 0) if resume_from is None else load_state(
        Path(resume_from), acc.unwrap_model(model), optimizer, scheduler, result, average)
    out = Path(out_dir) if out_dir else None
    meta = {"task": task.name, "max_length": cfg.max_length, "stride": cfg.stride, "doc_context": cfg.doc_context,
            "train_config": asdict(cfg)}
    best = BestCheckpoint(out / "best" if out else None, tokenizer, meta, acc.is_main_process)
    step = steps_per_epoch * start_epoch
    t_start = time.perf_counter()
    for epoch in range(start_epoch, cfg.epochs):
        record = train_epoch(acc, model, loader, optimizer, scheduler, cfg, epoch, step, result.history,
                             tokenizer.pad_token_id, average)
        step = record["step"]
        unwrapped = acc.unwrap_model(model)
        if valid_ds is not None:  # once averaging has begun, the epoch's model is the average
            with average.applied() if average else nullcontext():
                improved = evaluate_and_save(unwrapped, tokenizer, valid_ds, cfg, precision, record, result, best, task)
            bad_epochs = 0 if improved else bad_epochs + 1
        result.history["epochs"].append(record)
        if out is not None and acc.is_main_process:
            save_state(out / "last", unwrapped, tokenizer, optimizer, scheduler, epoch, bad_epochs, result, meta,
                       average)
        if acc.is_main_process and cfg.progress:
            print(epoch_summary(record, result, bad_epochs, cfg.patience, task.metric))
        if valid_ds is not None and cfg.patience is not None and bad_epochs >= cfg.patience:
            result.stopped_early = True
            break
    result.train_seconds = time.perf_counter() - t_start
    acc.wait_for_everyone()
    result.model = acc.unwrap_model(model, keep_fp32_wrapper=False)  # no autocast left: predicts like a reloaded checkpoint
    keep_final(result.model, best, average, valid_ds is not None, cfg.epochs)
    hand_back()
    return result


def check_settings(cfg: TrainConfig, task: Task) -> None:
    """``ValueError`` for a setting ``train`` cannot honour (label smoothing, ``average_from``)."""
    check_label_smoothing(cfg, task)
    if cfg.average_from is not None and not 0 <= cfg.average_from < 1:
        raise ValueError(f"average_from must be in [0, 1), not {cfg.average_from}")


def keep_final(model, best: BestCheckpoint, average: WeightAverage | None, has_dev: bool, epochs: int) -> None:
    """Put the run's model into ``model``: the best epoch's by the dev score or, with no dev set, the
    last epoch's (the weight average, with ``average``), then saved to ``best``'s folder if it has one."""
    if has_dev:
        best.restore(model)
        return
    if average is not None:
        average.load_into()
    if best.path is not None:
        best.save(model, epochs, None)


def train_epoch(acc, model, loader, optimizer, scheduler, cfg: TrainConfig, epoch: int, step: int,
                history: dict, pad_id: int | None, average: WeightAverage | None = None) -> dict:
    """One pass over the training batches (prepared by ``acc``): forward, backward, clip, step.

    Folds the weights into ``average`` after each optimizer step; logs the mean loss every ``cfg.log_every``
    steps into ``history["steps"]``; returns the epoch's record: mean loss, seconds, tokens, step reached.
    """
    loader.set_epoch(epoch)  # the prepared loader keeps its own epoch count: set it, or a resume restarts at 0
    torch.manual_seed(cfg.seed + epoch)  # dropout masks: the same after a resume
    model.train()
    t0 = time.perf_counter()
    loss_sum = torch.zeros((), device=acc.device)
    real = torch.zeros((), device=acc.device, dtype=torch.long)
    batches, computed = 0, 0
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False,
               disable=not (cfg.progress and acc.is_main_process))
    adversary = Adversary(cfg.adversarial, cfg.adv_eps, cfg.adv_steps) if cfg.adversarial else None
    for batch in bar:
        with acc.accumulate(model):
            with adversary.clean_pass(model) if adversary else nullcontext():
                loss = tagging_loss(model, batch, cfg.label_smoothing) if cfg.label_smoothing else model(**batch).loss
                acc.backward(loss)
            if adversary:  # FGM or PGD: add the gradients of the loss at the worst nearby input
                adversary.attack(model, batch, acc.backward, acc.no_sync)
            if acc.sync_gradients and cfg.max_grad_norm:
                acc.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        loss_sum += loss.detach()
        batches += 1
        real += real_tokens(batch, pad_id)
        computed += batch["input_ids"].numel()
        if acc.sync_gradients:
            step += 1
            if average is not None:
                average.update(step)
            if step % cfg.log_every == 0:  # one host sync every log_every steps
                value = (loss_sum / batches).item()
                _check_finite(value, step)
                history["steps"].append({"step": step, "epoch": epoch + 1, "loss": value,
                                         "lr": scheduler.get_last_lr()[0]})
                bar.set_postfix(loss=f"{value:.4f}")
    train_loss = (loss_sum / max(1, batches)).item()
    _check_finite(train_loss, step)
    return {"epoch": epoch + 1, "step": step, "train_loss": train_loss, "seconds": time.perf_counter() - t0,
            "real_tokens": int(real.item()), "computed_tokens": computed * acc.num_processes}


def evaluate_and_save(model, tokenizer, valid_ds: datasets.Dataset, cfg: TrainConfig, precision: str,
                      record: dict, result: TrainResult, best: BestCheckpoint, task: Task | None = None) -> bool:
    """Score the dev set into ``record`` (``task.score``, NER by default); on a new best main
    score (``dev_f1``), note it in ``result`` and save the weights to ``best``. Returns whether
    it improved."""
    device = next(model.parameters()).device.type
    scores = (task or TokenTagging()).score(model, tokenizer, valid_ds, cfg, device, scoring_precision(precision, device))
    record.update(scores)
    if scores["dev_f1"] <= result.best_f1:  # False while best_f1 is nan: the first epoch improves
        return False
    result.best_f1, result.best_epoch = scores["dev_f1"], record["epoch"]
    best.save(model, record["epoch"], scores["dev_f1"])
    return True


def epoch_summary(record: dict, result: TrainResult, bad_epochs: int = 0, patience: int | None = None,
                  metric: str = TokenTagging.metric) -> str:
    """The line printed after each epoch (and the early stop, when it comes)."""
    msg = f"epoch {record['epoch']}: train loss {record['train_loss']:.4f}"
    if "dev_f1" in record:
        msg += f", {metric} {record['dev_f1']:.4f}"
    msg += f" ({record['seconds']:.1f} s)"
    if "dev_f1" in record and patience is not None and bad_epochs >= patience:
        msg += f"\nearly stopping: no dev F1 gain for {bad_epochs} epochs; best was epoch {result.best_epoch}"
    return msg


def _check_finite(value: float, step: int) -> None:
    if not math.isfinite(value):
        raise TrainingDiverged(f"the training loss is {value} at step {step}: training stopped. "
                               "Lower the learning rate, check the labels, or use bf16 instead of fp16.")
