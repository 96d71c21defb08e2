"""BatchIterator: exact resume (also at epoch boundaries), DDP shards, determinism; evaluation_batches."""
from __future__ import annotations

import pytest
import torch

from llm_core.data import BatchIterator, TextDataset, collate_lm, evaluation_batches
from llm_core.errors import CheckpointError, ConfigError, DataError


class Numbers(torch.utils.data.Dataset):
    """Item i is just i, so batches show which examples they hold."""

    source = "numbers"

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


def as_list(items: list[int]) -> list[int]:
    return list(items)


def take(it: BatchIterator, k: int) -> list[list[int]]:
    return [next(it) for _ in range(k)]


def test_each_epoch_is_a_permutation_and_epochs_differ() -> None:
    it = BatchIterator(Numbers(12), batch_size=4, collate_fn=as_list, seed=0)
    assert it.batches_per_epoch == 3
    epoch0 = sum(take(it, 3), [])
    assert it.epoch == 0
    epoch1 = sum(take(it, 3), [])
    assert it.epoch == 1
    assert sorted(epoch0) == sorted(epoch1) == list(range(12))
    assert epoch0 != epoch1 and epoch0 != list(range(12))


def test_drop_last_drops_the_remainder() -> None:
    it = BatchIterator(Numbers(10), batch_size=4, collate_fn=as_list, seed=1)
    assert it.batches_per_epoch == 2
    seen = sum(take(it, 2), [])
    assert len(seen) == len(set(seen)) == 8
    keep = BatchIterator(Numbers(10), batch_size=4, collate_fn=as_list, seed=1, drop_last=False)
    assert keep.batches_per_epoch == 3
    batches = take(keep, 3)
    assert [len(b) for b in batches] == [4, 4, 2] and sorted(sum(batches, [])) == list(range(10))


def test_determinism_by_seed() -> None:
    a = take(BatchIterator(Numbers(20), 5, as_list, seed=7), 12)
    b = take(BatchIterator(Numbers(20), 5, as_list, seed=7), 12)
    c = take(BatchIterator(Numbers(20), 5, as_list, seed=8), 12)
    assert a == b and a != c


def test_global_rng_is_untouched() -> None:
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    take(BatchIterator(Numbers(20), 5, as_list, seed=7), 6)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("stop", [1, 2, 3, 4, 6, 7])  # 3 and 6 are epoch boundaries (3 batches per epoch)
def test_resume_equals_uninterrupted(stop: int) -> None:
    total = 10
    reference = take(BatchIterator(Numbers(13), 4, as_list, seed=5), total)
    first = BatchIterator(Numbers(13), 4, as_list, seed=5)
    before = take(first, stop)
    state = first.state_dict()
    assert set(state) == {"epoch", "index"}
    resumed = BatchIterator(Numbers(13), 4, as_list, seed=5)
    resumed.load_state_dict(dict(state))
    assert before + take(resumed, total - stop) == reference


def test_state_at_epoch_boundary() -> None:
    it = BatchIterator(Numbers(8), 4, as_list, seed=0)
    take(it, 2)
    assert it.state_dict() == {"epoch": 0, "index": 2} and it.progress == 1.0
    take(it, 1)
    assert it.state_dict() == {"epoch": 1, "index": 1} and it.epoch == 1


def test_bad_state_rejected() -> None:
    it = BatchIterator(Numbers(8), 4, as_list, seed=0)
    with pytest.raises(CheckpointError, match="index 5 exceeds the 2 batches"):
        it.load_state_dict({"epoch": 0, "index": 5})
    with pytest.raises(CheckpointError, match="epoch"):
        it.load_state_dict({"epoch": -1, "index": 0})


@pytest.mark.parametrize("n, drop_last", [(24, True), (29, True), (24, False)])
def test_ddp_shards_disjoint_and_covering(n: int, drop_last: bool) -> None:
    world, bs = 3, 4
    iters = [BatchIterator(Numbers(n), bs, as_list, seed=2, drop_last=drop_last, rank=r, world_size=world)
             for r in range(world)]
    steps = iters[0].batches_per_epoch
    assert all(it.batches_per_epoch == steps for it in iters)
    for _ in range(2):  # two epochs
        shards = [sum(take(it, steps), []) for it in iters]
        flat = sum(shards, [])
        assert len(flat) == len(set(flat))  # disjoint
        usable = (n // (bs * world)) * bs * world if drop_last else n
        assert len(flat) == usable
        if usable == n:
            assert sorted(flat) == list(range(n))  # covering
    # Global step b covers the same examples a single process with batch size bs*world would see.
    single = BatchIterator(Numbers(n), bs * world, as_list, seed=2, drop_last=drop_last)
    ranks = [BatchIterator(Numbers(n), bs, as_list, seed=2, drop_last=drop_last, rank=r, world_size=world)
             for r in range(world)]
    for _ in range(steps):
        assert sorted(next(single)) == sorted(sum((next(r) for r in ranks), []))


def test_ddp_uneven_pads_to_equal_steps() -> None:
    iters = [BatchIterator(Numbers(10), 2, as_list, seed=0, drop_last=False, rank=r, world_size=3) for r in range(3)]
    shards = [sum(take(it, it.batches_per_epoch), []) for it in iters]
    assert [len(s) for s in shards] == [4, 4, 4]  # ceil(10 / 3) = 4 each: two examples repeat once
    assert set(sum(shards, [])) == set(range(10))


def test_too_few_examples_for_one_batch() -> None:
    with pytest.raises(DataError, match=r"numbers: 5 examples are fewer than one batch \(batch_size 4 x world_size 2"):
        BatchIterator(Numbers(5), 4, as_list, seed=0, world_size=2)
    with pytest.raises(ConfigError, match="rank"):
        BatchIterator(Numbers(5), 1, as_list, seed=0, rank=2, world_size=2)


def test_no_shuffle_is_in_order() -> None:
    it = BatchIterator(Numbers(6), 2, as_list, seed=0, shuffle=False)
    assert take(it, 4) == [[0, 1], [2, 3], [4, 5], [0, 1]]


def test_evaluation_batches_deterministic_and_capped() -> None:
    batches = list(evaluation_batches(Numbers(7), 3, as_list))
    assert batches == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(evaluation_batches(Numbers(7), 3, as_list, max_batches=2)) == batches[:2]
    ds = TextDataset(torch.arange(50), context_length=8)
    a = [b["input_ids"] for b in evaluation_batches(ds, 2, lambda items: collate_lm(items, pad_id=0))]
    assert torch.equal(a[0][1], torch.arange(8, 16)) and len(a) == 3


def test_with_real_collate() -> None:
    ds = TextDataset(torch.arange(100), context_length=4)
    it = BatchIterator(ds, 3, lambda items: collate_lm(items, pad_id=0), seed=0)
    batch = next(it)
    assert batch["input_ids"].shape == (3, 4) and torch.equal(batch["labels"], batch["input_ids"] + 1)
