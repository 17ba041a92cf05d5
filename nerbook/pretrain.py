"""Self-supervised pretraining: masked and causal language modelling (chapter "Self-supervised pretraining").

Raw text labels itself. Two ways to turn a sentence into a prediction problem:

- **masked language modelling** (BERT): hide about 15% of the tokens and predict them from
  both sides. :func:`mask_tokens` is BERT's rule written out: choose each ordinary token with
  probability 0.15 (never ``[CLS]``, ``[SEP]``, ``[PAD]``), then replace a chosen token by
  ``[MASK]`` 80% of the time, by a random token 10% of the time, and leave it as is 10% of the
  time; the label is the original token on chosen positions and ``-100`` everywhere else.
- **causal language modelling** (GPT): predict every token from the ones before it. The
  labels are the inputs themselves (``-100`` on padding); the model compares the logits at
  position ``t`` with the label at ``t + 1`` (:func:`shift_for_causal_lm`).

The rest is what the chapter needs to run both on a CPU: collators that pad and label a
batch, tiny models (:func:`tiny_mlm`, :func:`tiny_gpt`), a short training loop
(:func:`pretrain`), greedy and temperature sampling (:func:`continue_ids`, :func:`generate`), top-k fills of
``[MASK]`` (:func:`fill_mask`), and :func:`token_classifier_from`, which puts a new
token-classification head on a pretrained encoder.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from nerbook.align import IGNORE_INDEX

MLM_PROBABILITY = 0.15
MASK_FRACTION = 0.8    # of the chosen tokens: replaced by [MASK]
RANDOM_FRACTION = 0.1  # of the chosen tokens: replaced by a random token (the rest: unchanged)


# --- masked language modelling -------------------------------------------------------------


def mask_tokens(input_ids: torch.Tensor, *, mask_token_id: int, vocab_size: int,
                special_ids: Sequence[int], mlm_probability: float = MLM_PROBABILITY,
                mask_fraction: float = MASK_FRACTION, random_fraction: float = RANDOM_FRACTION,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking rule: returns ``(inputs, labels)`` for a batch of token ids.

    Each token that is not special (``special_ids``: ``[CLS]``, ``[SEP]``, ``[PAD]``, ...) is
    chosen with probability ``mlm_probability``. A chosen token becomes ``[MASK]`` with
    probability ``mask_fraction``, a token drawn uniformly from the vocabulary with probability
    ``random_fraction``, and stays itself otherwise. ``labels`` holds the original id on chosen
    positions and ``-100`` (ignored by the loss) on all others. ``input_ids`` is not modified.

    The draws come from ``generator`` in a fixed order: the choice (``rand``), the uniform that
    decides what a chosen token becomes (``rand``), then the random tokens (``randint``). The
    chapter's hand-written rule draws in the same order and is checked to give the same result.
    """
    if not 0 <= mlm_probability <= 1 or mask_fraction + random_fraction > 1:
        raise ValueError("need 0 <= mlm_probability <= 1 and mask_fraction + random_fraction <= 1")
    special = torch.isin(input_ids, torch.as_tensor(list(special_ids), dtype=input_ids.dtype))
    chosen = (torch.rand(input_ids.shape, generator=generator) < mlm_probability) & ~special
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    u = torch.rand(input_ids.shape, generator=generator)  # one draw decides what a chosen token becomes
    to_mask = chosen & (u < mask_fraction)
    to_random = chosen & (u >= mask_fraction) & (u < mask_fraction + random_fraction)
    random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator, dtype=input_ids.dtype)
    inputs = input_ids.clone()
    inputs[to_mask] = mask_token_id
    inputs[to_random] = random_ids[to_random]
    return inputs, labels


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad lists of ids to the longest: ``(input_ids, attention_mask)``."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, s in enumerate(sequences):
        ids[i, :len(s)] = torch.as_tensor(list(s), dtype=torch.long)
        mask[i, :len(s)] = 1
    return ids, mask


@dataclass
class MLMCollator:
    """Pads a list of token-id lists and masks it with :func:`mask_tokens` (seeded)."""

    tokenizer: object
    mlm_probability: float = MLM_PROBABILITY
    seed: int = 0
    generator: torch.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.tokenizer.mask_token_id is None:
            raise ValueError("masked language modelling needs a tokenizer with a mask token")
        self.generator = torch.Generator().manual_seed(self.seed)

    def __call__(self, sequences: Sequence[Sequence[int]]) -> dict[str, torch.Tensor]:
        tok = self.tokenizer
        ids, attention = pad_batch(sequences, tok.pad_token_id)
        inputs, labels = mask_tokens(ids, mask_token_id=tok.mask_token_id, vocab_size=len(tok),
                                     special_ids=tok.all_special_ids,
                                     mlm_probability=self.mlm_probability, generator=self.generator)
        return {"input_ids": inputs, "attention_mask": attention, "labels": labels}


# --- causal language modelling -------------------------------------------------------------


def causal_lm_labels(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The labels of a causal LM are its inputs, with ``-100`` on padding (not shifted)."""
    return input_ids.masked_fill(attention_mask == 0, IGNORE_INDEX)


def shift_for_causal_lm(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pair the logits at position ``t`` with the label at ``t + 1``: the last position has no
    next token and the first token is never predicted. Returns ``(logits, labels)``, one
    position shorter."""
    return logits[:, :-1, :], labels[:, 1:]


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy: shift, then ignore ``-100`` (what GPT-2's ``loss`` does)."""
    z, y = shift_for_causal_lm(logits, labels)
    return F.cross_entropy(z.reshape(-1, z.shape[-1]), y.reshape(-1), ignore_index=IGNORE_INDEX)


@dataclass
class CausalCollator:
    """Pads a list of token-id lists; labels = inputs with ``-100`` on padding."""

    tokenizer: object

    def __call__(self, sequences: Sequence[Sequence[int]]) -> dict[str, torch.Tensor]:
        ids, attention = pad_batch(sequences, self.tokenizer.pad_token_id)
        return {"input_ids": ids, "attention_mask": attention, "labels": causal_lm_labels(ids, attention)}


# --- data and tiny models ------------------------------------------------------------------


def encode_corpus(tokenizer, sentences: Sequence[Sequence[str]], max_length: int = 64) -> list[list[int]]:
    """Pre-split sentences -> token ids with the tokenizer's special tokens, cut at ``max_length``."""
    enc = tokenizer([list(s) for s in sentences], is_split_into_words=True, truncation=True,
                    max_length=max_length)
    return [list(ids) for ids in enc["input_ids"]]


def tiny_mlm(tokenizer, seed: int = 0, hidden: int = 128, layers: int = 2, heads: int = 4,
             intermediate: int = 256, max_position: int = 128, dropout: float = 0.1):
    """A tiny ``BertForMaskedLM`` (random weights, seeded) for ``tokenizer``'s vocabulary."""
    from transformers import BertForMaskedLM

    from nerbook.model import tiny_config

    cfg = tiny_config(len(tokenizer), hidden=hidden, layers=layers, heads=heads,
                      intermediate=intermediate, max_position=max_position,
                      pad_token_id=tokenizer.pad_token_id, hidden_dropout_prob=dropout,
                      attention_probs_dropout_prob=dropout)
    torch.manual_seed(seed)
    return BertForMaskedLM(cfg)


def tiny_gpt(tokenizer, seed: int = 0, hidden: int = 128, layers: int = 2, heads: int = 4,
             intermediate: int = 256, max_position: int = 128, dropout: float = 0.1):
    """A tiny ``GPT2LMHeadModel`` (random weights, seeded); ``[CLS]`` starts and ``[SEP]`` ends
    a text, as in the sequences :func:`encode_corpus` makes. Marked ``nerbook_tiny`` as
    :func:`~nerbook.model.tiny_config` is: :func:`nerbook.train.train` trains its word embeddings."""
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(vocab_size=len(tokenizer), n_positions=max_position, n_embd=hidden,
                     n_layer=layers, n_head=heads, n_inner=intermediate, resid_pdrop=dropout,
                     embd_pdrop=dropout, attn_pdrop=dropout,
                     bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
                     pad_token_id=tokenizer.pad_token_id, nerbook_tiny=True)
    torch.manual_seed(seed)
    return GPT2LMHeadModel(cfg)


# --- the training loop ---------------------------------------------------------------------


@dataclass
class PretrainConfig:
    """A short pretraining run: ``steps`` random batches of ``batch_size`` sequences."""

    steps: int = 300
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    seed: int = 0
    log_every: int = 10


@dataclass
class PretrainResult:
    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)  # mean training loss since the last log
    seconds: float = 0.0


def pretrain(model, corpus: Sequence[Sequence[int]], collator, cfg: PretrainConfig | None = None) -> PretrainResult:
    """Train ``model`` (any model that returns ``.loss`` given ``labels``) on ``corpus``.

    Each step draws ``batch_size`` sequences at random (seeded), lets ``collator`` build the
    batch (padding, masking or causal labels), and takes one AdamW step with the learning-rate
    schedule and weight-decay groups of :mod:`nerbook.train`.
    """
    from nerbook.train import linear_warmup_decay, param_groups

    cfg = cfg or PretrainConfig()
    rng = random.Random(cfg.seed)
    torch.manual_seed(cfg.seed)  # dropout masks
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr)
    scheduler = linear_warmup_decay(optimizer, int(cfg.warmup_ratio * cfg.steps), cfg.steps)
    result = PretrainResult()
    model.train()
    total, count = 0.0, 0
    t0 = time.perf_counter()
    for step in range(1, cfg.steps + 1):
        batch = collator([corpus[i] for i in rng.sample(range(len(corpus)), cfg.batch_size)])
        loss = model(**batch).loss
        loss.backward()
        if cfg.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        total += loss.item()
        count += 1
        if step % cfg.log_every == 0 or step == cfg.steps:
            result.steps.append(step)
            result.losses.append(total / count)
            total, count = 0.0, 0
    result.seconds = time.perf_counter() - t0
    model.eval()
    return result


# --- using a pretrained model --------------------------------------------------------------


@torch.no_grad()
def continue_ids(model, ids: Sequence[int], stop_id: int, max_new_tokens: int = 40, temperature: float = 0.0,
                 top_k: int | None = None, generator: torch.Generator | None = None) -> list[int]:
    """The decoding loop: the tokens a causal LM adds after ``ids``, one at a time, until it
    picks ``stop_id`` (not returned) or has added ``max_new_tokens``. Each step runs the model on
    the whole sequence so far and reads the logits at the last position.

    ``temperature=0``: greedy (the most probable next token). Otherwise sample from
    ``softmax(logits / temperature)``, restricted to the ``top_k`` most probable tokens if set.
    :func:`generate` and :func:`nerbook.instruct.answer` both decode with it.
    """
    model.eval()
    device = next(model.parameters()).device
    ids, new = list(ids), []
    for _ in range(max_new_tokens):
        logits = model(input_ids=torch.tensor([ids + new], device=device)).logits[0, -1].float().cpu()
        if temperature == 0:
            nxt = int(logits.argmax())
        else:
            z = logits / temperature
            if top_k is not None:
                kth = torch.topk(z, top_k).values[-1]
                z = z.masked_fill(z < kth, float("-inf"))
            nxt = int(torch.multinomial(torch.softmax(z, -1), 1, generator=generator))
        if nxt == stop_id:
            break
        new.append(nxt)
    return new


def generate(model, tokenizer, prompt: str = "", max_new_tokens: int = 40, temperature: float = 0.0,
             top_k: int | None = None, seed: int = 0) -> str:
    """Continue ``prompt`` with a causal LM until ``[SEP]`` (:func:`continue_ids`: greedy when
    ``temperature=0``, else seeded sampling); the prompt and its continuation as text."""
    ids = [tokenizer.cls_token_id] + tokenizer(prompt, add_special_tokens=False)["input_ids"]
    new = continue_ids(model, ids, tokenizer.sep_token_id, max_new_tokens, temperature, top_k,
                       torch.Generator().manual_seed(seed))
    return tokenizer.decode(ids[1:] + new)


@torch.no_grad()
def fill_mask(model, tokenizer, text: str, k: int = 5) -> list[list[tuple[str, float]]]:
    """The ``k`` most probable tokens (with probabilities) for each ``[MASK]`` in ``text``."""
    model.eval()
    enc = tokenizer(text, return_tensors="pt")
    probs = torch.softmax(model(**enc).logits[0], -1)
    out = []
    for pos in (enc["input_ids"][0] == tokenizer.mask_token_id).nonzero().flatten().tolist():
        p, idx = probs[pos].topk(k)
        out.append([(tokenizer.convert_ids_to_tokens(int(i)), round(float(q), 3)) for q, i in zip(p, idx)])
    return out


def token_classifier_from(model, tokenizer, schema, folder: str | Path, seed: int = 0):
    """Save a pretrained (masked-LM) BERT with its tokenizer to ``folder`` and load it back for
    token classification: the encoder keeps its weights, the LM head is dropped and a new
    classifier head is initialised from ``seed``. Returns ``(model, tokenizer)``."""
    from nerbook.model import load_model, quiet_transformers

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with quiet_transformers():
        model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return load_model(str(folder), schema, seed=seed)
