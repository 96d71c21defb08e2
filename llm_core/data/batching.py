"""A resumable, seeded, DDP-aware batch iterator.

Epoch e visits the examples in the order of a permutation drawn from a torch.Generator seeded with a
mix of (seed, e). Nothing else is random, so the iterator's whole state is the pair (epoch, index of
the next batch within the epoch): a checkpoint stores two integers and a resumed run sees exactly the
batches the uninterrupted run would have seen, with no skipped and no repeated examples.

For distributed data parallel training each rank takes every world_size-th element of the epoch's
permutation (as torch's DistributedSampler does). Global step b then covers one contiguous chunk of
batch_size * world_size permutation entries, split disjointly over the ranks.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterator, Sequence

import torch

from ..errors import CheckpointError, ConfigError, DataError

Collate = Callable[[Sequence[Any]], Any]
_MASK64 = (1 << 64) - 1


def epoch_seed(seed: int, epoch: int) -> int:
    """A well-mixed 63-bit generator seed for (seed, epoch) (SplitMix64 finaliser), so neighbouring
    seeds and epochs give unrelated permutations."""
    x = (seed * 0x9E3779B97F4A7C15 + epoch + 1) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return (x ^ (x >> 31)) >> 1


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name}: must be an integer >= {minimum}, got {value!r}")


class BatchIterator:
    """Infinite iterator of collated batches over epochs; `state_dict()` / `load_state_dict()` resume it."""

    def __init__(
        self,
        dataset: Any,
        batch_size: int,
        collate_fn: Collate,
        seed: int,
        shuffle: bool = True,
        drop_last: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        _check_int("batch_size", batch_size, 1)
        _check_int("world_size", world_size, 1)
        _check_int("seed", seed, 0)
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
            raise ConfigError(f"rank: must be in 0..{world_size - 1}, got {rank!r}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.collate_fn = collate_fn
        self.seed = seed
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.rank = rank
        self.world_size = world_size
        self.num_examples = len(dataset)
        source = getattr(dataset, "source", type(dataset).__name__)
        global_batch = batch_size * world_size
        if drop_last:
            self.batches_per_epoch = self.num_examples // global_batch
            if self.batches_per_epoch == 0:
                raise DataError(
                    f"{source}: {self.num_examples} examples are fewer than one batch "
                    f"(batch_size {batch_size} x world_size {world_size} = {global_batch}); "
                    "lower batch_size or add data"
                )
        else:
            if self.num_examples == 0:
                raise DataError(f"{source}: no examples")
            self.per_rank = math.ceil(self.num_examples / world_size)
            self.batches_per_epoch = math.ceil(self.per_rank / batch_size)
        self._epoch = 0
        self._index = 0  # batches of self._epoch already yielded
        self._shard_epoch = -1
        self._shard: list[int] = []

    @property
    def epoch(self) -> int:
        """Epoch of the most recently yielded batch (0 before the first)."""
        return self._epoch

    @property
    def progress(self) -> float:
        """Epochs completed as a float, e.g. 2.5 = halfway through the third epoch."""
        return self._epoch + self._index / self.batches_per_epoch

    def epoch_indices(self, epoch: int) -> list[int]:
        """This rank's example indices for `epoch`, in visiting order."""
        n = self.num_examples
        if self.shuffle:
            generator = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
            order = torch.randperm(n, generator=generator)
        else:
            order = torch.arange(n)
        if self.drop_last:
            order = order[: self.batches_per_epoch * self.batch_size * self.world_size]
        else:
            # Every rank must run the same number of steps (DDP all-reduces each step): pad the order by
            # wrapping around to a multiple of world_size, repeating a few examples once.
            total = self.per_rank * self.world_size
            order = order.repeat(math.ceil(total / n))[:total]
        return order[self.rank :: self.world_size].tolist()

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        if self._index >= self.batches_per_epoch:
            self._epoch += 1
            self._index = 0
        if self._shard_epoch != self._epoch:
            self._shard = self.epoch_indices(self._epoch)
            self._shard_epoch = self._epoch
        start = self._index * self.batch_size
        indices = self._shard[start : start + self.batch_size]
        self._index += 1
        return self.collate_fn([self.dataset[i] for i in indices])

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self._epoch, "index": self._index}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue at the batch after the one `state` was saved at."""
        if not isinstance(state, dict) or set(state) != {"epoch", "index"}:
            raise CheckpointError(f"data position: expected {{'epoch', 'index'}}, got {state!r}")
        epoch, index = state["epoch"], state["index"]
        for name, value in (("epoch", epoch), ("index", index)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise CheckpointError(f"data position: {name} must be an integer >= 0, got {value!r}")
        if index > self.batches_per_epoch:
            raise CheckpointError(
                f"data position: index {index} exceeds the {self.batches_per_epoch} batches per epoch "
                "(did the dataset or batch_size change?)"
            )
        self._epoch, self._index = epoch, index


def evaluation_batches(
    dataset: Any, batch_size: int, collate_fn: Collate, max_batches: int | None = None
) -> Iterator[Any]:
    """Batches over the dataset in order (no shuffling, last batch may be short): the same every call."""
    _check_int("batch_size", batch_size, 1)
    if max_batches is not None:
        _check_int("max_batches", max_batches, 1)
    n_batches = math.ceil(len(dataset) / batch_size)
    if max_batches is not None:
        n_batches = min(n_batches, max_batches)
    for b in range(n_batches):
        items = [dataset[i] for i in range(b * batch_size, min((b + 1) * batch_size, len(dataset)))]
        yield collate_fn(items)
