"""nerbook.batching: length-grouped batches (every index once, or full batches only), padding cost."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from nerbook.batching import LengthGroupedBatchSampler, PackingCollator, padded_tokens

LENGTHS = [(i * 37) % 100 + 1 for i in range(1000)]  # 1000 windows of 1..100 tokens


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("mega", [50, 3])
def test_every_index_once_without_drop_last(shuffle, mega):
    """1000 = 62 * 16 + 8: 62 full batches and one of 8, every index exactly once, each epoch."""
    s = LengthGroupedBatchSampler(LENGTHS, 16, seed=1, mega=mega, shuffle=shuffle)
    for epoch in range(3):
        s.set_epoch(epoch)
        batches = list(s)
        assert len(batches) == len(s) == 63
        assert Counter(len(b) for b in batches) == {16: 62, 8: 1}
        assert sorted(i for b in batches for i in b) == list(range(1000))


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("mega", [50, 3])
def test_drop_last_drops_only_the_remainder(shuffle, mega):
    """With drop_last: 62 batches of exactly 16, no index twice, exactly 1000 - 62 * 16 = 8 left
    out; with shuffling, another 8 in another epoch."""
    s = LengthGroupedBatchSampler(LENGTHS, 16, seed=1, mega=mega, shuffle=shuffle, drop_last=True)
    dropped = []
    for epoch in range(3):
        s.set_epoch(epoch)
        batches = list(s)
        assert len(batches) == len(s) == 62
        assert all(len(b) == 16 for b in batches)
        seen = [i for b in batches for i in b]
        assert len(set(seen)) == len(seen) == 992
        dropped.append(set(range(1000)) - set(seen))
        assert len(dropped[-1]) == 8
    if shuffle:
        assert dropped[0] != dropped[1] != dropped[2]
    else:  # sorted by length, longest first: the 8 shortest are left out, every epoch
        assert dropped[0] == dropped[1] == set(sorted(range(1000), key=lambda i: -LENGTHS[i])[992:])


def test_drop_last_edge_cases():
    exact = LengthGroupedBatchSampler([5] * 32, 16, drop_last=True)
    assert len(exact) == len(list(exact)) == 2  # nothing to drop
    short = LengthGroupedBatchSampler([5] * 15, 16, drop_last=True)
    assert len(short) == 0 and list(short) == []  # fewer than one batch: nothing
    assert [len(b) for b in LengthGroupedBatchSampler([5] * 15, 16)] == [15]
    with pytest.raises(ValueError, match="batch_size"):
        LengthGroupedBatchSampler([5], 0)


def test_epochs_reorder_and_seed_reproduces():
    a = LengthGroupedBatchSampler(LENGTHS, 16, seed=3)
    b = LengthGroupedBatchSampler(LENGTHS, 16, seed=3)
    first = list(a)
    a.set_epoch(1)
    b.set_epoch(1)
    assert list(a) == list(b) != first
    a.set_epoch(0)
    assert list(a) == first
    assert list(LengthGroupedBatchSampler(LENGTHS, 16, seed=4)) != first


def test_batches_are_length_grouped_within_a_mega_batch():
    """With mega=50, a batch is 16 neighbours in one length-sorted mega-batch: in the first of
    800 windows (about 8 per length) it spans 2-3 lengths, in the last of 200 about 8 (measured
    for seed 3: mean spread 2.98, max 9). Random batches (mega=1) span most lengths (mean 88)."""

    def spreads(batches):
        return [max(LENGTHS[i] for i in b) - min(LENGTHS[i] for i in b) for b in batches]

    grouped = spreads(LengthGroupedBatchSampler(LENGTHS, 16, seed=3))
    assert sum(grouped) / len(grouped) < 4 and max(grouped) <= 12
    shuffled = spreads(LengthGroupedBatchSampler(LENGTHS, 16, seed=3, mega=1))
    assert sum(shuffled) / len(shuffled) > 60


def test_padded_tokens_by_hand():
    lengths = [3, 7, 2, 5, 5]
    # batch (0, 1): 2 * 7 = 14; batch (2,): 1 * 2 = 2; batch (3, 4): 2 * 5 = 10; empty: 0
    assert padded_tokens(lengths, [[0, 1], [2], [3, 4], []]) == 26
    assert padded_tokens(lengths, [[0, 1, 2, 3, 4]]) == 35


def test_packing_collator_blocks_by_hand():
    class Tok:
        pad_token_id = 0

    rows = [{"input_ids": [11, 12, 13], "labels": [-100, 1, -100]},
            {"input_ids": [21, 22], "labels": [-100, -100]},
            {"input_ids": [31, 32, 33, 34], "labels": [-100, 2, 3, -100]}]
    batch = PackingCollator(Tok(), row_length=6)(rows)
    # 9 tokens, rows of 6 -> 2 rows; longest first into the emptiest row: [34-row], [13-row, 22-row]
    assert batch["input_ids"].tolist() == [[31, 32, 33, 34, 0], [11, 12, 13, 21, 22]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 0], [0, 1, 2, 0, 1]]
    assert batch["labels"].tolist() == [[-100, 2, 3, -100, -100], [-100, 1, -100, -100, -100]]
    mask = batch["attention_mask"][:, 0]
    block = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 0, 0], [1, 1, 1, 0, 0], [0, 0, 0, 1, 1], [0, 0, 0, 1, 1]],
                         dtype=torch.bool)
    first = torch.zeros(5, 5, dtype=torch.bool)
    first[:4, :4] = True
    first[4, 4] = True  # padding attends to itself only
    assert torch.equal(mask[0], first) and torch.equal(mask[1], block)
