"""Dynamic padding and length-grouped batches (chapter "NER data and labels", "Making it fast").

Padding every sentence to 128 tokens makes the model compute mostly padding. Two fixes:
pad each batch only to its longest member (``DataCollatorForTokenClassification``), and put
sentences of similar length in the same batch (:class:`LengthGroupedBatchSampler`), so that
the longest member is not much longer than the rest.
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
