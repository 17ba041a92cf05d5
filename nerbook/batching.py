"""Dynamic padding and length-grouped batches (chapter "NER data and labels", "Making it fast").

Padding every sentence to 128 tokens makes the model compute mostly padding. Two fixes:
pad each batch only to its longest member (``DataCollatorForTokenClassification``), and put
sentences of similar length in the same batch (:class:`LengthGroupedBatchSampler`), so that
the longest member is not much longer than the rest. Or pack a random batch into a few rows
with block-diagonal attention (:class:`PackingCollator`): no padding and no length bias.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

from torch.utils.data import Sampler
from transformers import DataCollatorForTokenClassification

from nerbook.align import IGNORE_INDEX

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "labels")


def token_collator(tokenizer, pad_to_multiple_of: int | None = None) -> DataCollatorForTokenClassification:
    """Pads ``input_ids``/``attention_mask`` with the pad token and ``labels`` with ``-100``."""
    return DataCollatorForTokenClassification(
        tokenizer, padding="longest", pad_to_multiple_of=pad_to_multiple_of,
        label_pad_token_id=IGNORE_INDEX, return_tensors="pt")


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Batches of indices whose lengths are close, in a random but seeded order.

    Shuffle, cut into mega-batches of ``mega * batch_size``, sort each mega-batch by length,
    cut it into batches, then shuffle the batches (the scheme of Hugging Face's
    ``LengthGroupedSampler``). Each epoch (``set_epoch``) gives another order.
    ``shuffle=False`` sorts everything by length (for evaluation).
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int = 0, mega: int = 50,
                 shuffle: bool = True, drop_last: bool = False) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.mega = mega
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self) -> list[list[int]]:
        n, bs = len(self.lengths), self.batch_size
        if not self.shuffle:
            order = sorted(range(n), key=lambda i: -self.lengths[i])
            out = [order[i:i + bs] for i in range(0, n, bs)]
        else:
            rng = random.Random(self.seed + self.epoch)
            order = list(range(n))
            rng.shuffle(order)
            size = self.mega * bs
            out = []
            for m in range(0, n, size):
                group = sorted(order[m:m + size], key=lambda i: -self.lengths[i])
                out += [group[i:i + bs] for i in range(0, len(group), bs)]
            rng.shuffle(out)
        if self.drop_last:
            out = [b for b in out if len(b) == bs]
        return out

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.batches()

    def __len__(self) -> int:
        n = len(self.lengths)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)


def padded_tokens(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> int:
    """Tokens the model computes for these batches, padding included (batch size x longest)."""
    return sum(len(b) * max(lengths[i] for i in b) for b in batches if b)


#: Model types whose embeddings number positions 0, 1, 2, ... and whose attention accepts a 4D
#: mask, so that a packed row computes exactly what separate padded rows would.
PACKABLE_MODEL_TYPES = ("bert",)


class PackingCollator:
    """Packs a batch of windows into as few rows as possible (chapter "Making it fast").

    Each row holds several windows one after the other, each with its own positions (0, 1, ...)
    and an attention mask that is block-diagonal, so a window only sees itself: the model
    computes exactly what it would on separate padded rows, without the padding. The batch
    stays a random sample of windows (no length grouping needed, hence no length bias), and
    the rows are filled evenly to about ``max(row_length, longest window)`` tokens. Short rows
    keep the attention matrices (and their dropout) small: on a CPU, rows of 64 measured 6%
    slower per step than length-grouped padded batches, rows of 128 15%.
    """

    def __init__(self, tokenizer, row_length: int = 64, float_mask: bool = False) -> None:
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.row_length = row_length
        self.float_mask = float_mask  # additive mask for "eager" attention; boolean for sdpa

    @classmethod
    def for_model(cls, model, tokenizer, row_length: int = 64) -> PackingCollator | None:
        """A collator for ``model``, or None where packing would not be exact."""
        cfg = getattr(model, "config", None)
        impl = getattr(cfg, "_attn_implementation", None) or "eager"
        if getattr(cfg, "model_type", None) not in PACKABLE_MODEL_TYPES or impl not in ("sdpa", "eager"):
            return None
        return cls(tokenizer, row_length, float_mask=impl == "eager")

    def __call__(self, rows: Sequence[dict]) -> dict:
        import torch

        lengths = [len(r["input_ids"]) for r in rows]
        n_rows = max(1, -(-sum(lengths) // max(self.row_length, max(lengths))))
        members: list[list[int]] = [[] for _ in range(n_rows)]
        fill = [0] * n_rows
        for i in sorted(range(len(rows)), key=lambda i: -lengths[i]):  # longest first, into the emptiest row
            r = min(range(n_rows), key=fill.__getitem__)
            members[r].append(i)
            fill[r] += lengths[i]
        width = max(fill)
        ids = torch.full((n_rows, width), self.pad_id, dtype=torch.long)
        labels = torch.full((n_rows, width), IGNORE_INDEX, dtype=torch.long)
        positions = torch.zeros((n_rows, width), dtype=torch.long)
        segment = torch.full((n_rows, width), -1, dtype=torch.long)
        for r, row in enumerate(members):
            start = 0
            for k, i in enumerate(row):
                n = lengths[i]
                ids[r, start:start + n] = torch.tensor(rows[i]["input_ids"])
                if "labels" in rows[i]:
                    labels[r, start:start + n] = torch.tensor(rows[i]["labels"])
                positions[r, start:start + n] = torch.arange(n)
                segment[r, start:start + n] = k
                start += n
        mask = (segment[:, :, None] == segment[:, None, :]) & (segment[:, :, None] >= 0)
        mask |= torch.eye(width, dtype=torch.bool)  # padding attends to itself: no empty softmax row
        mask = mask[:, None]  # (rows, 1 head, query, key)
        if self.float_mask:
            mask = torch.zeros(mask.shape).masked_fill_(~mask, torch.finfo(torch.float32).min)
        batch = {"input_ids": ids, "attention_mask": mask, "position_ids": positions}
        if "labels" in rows[0]:
            batch["labels"] = labels
        return batch


def real_tokens(batch: dict, pad_id: int | None):
    """Non-padding tokens of a batch (a tensor): from the 2D attention mask, or, for a packed
    batch (4D mask), the tokens that are not the pad token."""
    mask = batch.get("attention_mask")
    if mask is not None and mask.dim() == 2:
        return mask.sum()
    return (batch["input_ids"] != (pad_id if pad_id is not None else 0)).sum()
