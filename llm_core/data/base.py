"""What every dataset here shares: tensors per example, a vocabulary check, a seeded train/val split.

Examples are stored as small dicts of 1-D long tensors (built once, at load time, so a bad record fails
before training starts rather than at step 10,000).
"""
from __future__ import annotations

import copy
from typing import Any

import torch

from ..errors import DataError

IGNORE_INDEX = -100  # label value cross_entropy(ignore_index=-100) skips: prompt tokens and padding


def check_ids_in_vocab(ids: torch.Tensor, vocab_size: int, where: str) -> None:
    """DataError if an id in `ids` is negative or >= vocab_size (-100 labels are allowed)."""
    if vocab_size < 1:
        raise DataError(f"{where}: vocab_size must be >= 1, got {vocab_size}")
    ids = ids[ids != IGNORE_INDEX]
    if ids.numel() == 0:
        return
    bad = (ids < 0) | (ids >= vocab_size)
    if bad.any():
        value = int(ids[bad.nonzero()[0, 0]])
        raise DataError(
            f"{where}: token id {value} is outside the model's vocabulary (vocab_size {vocab_size}); "
            "the tokenizer and the model do not match"
        )


class ExampleDataset(torch.utils.data.Dataset):
    """A list of examples (dicts of 1-D long tensors) read from `source` (a file name or "<records>")."""

    def __init__(
        self,
        examples: list[dict[str, torch.Tensor]],
        source: str,
        records: list[dict[str, Any]],
        locations: list[str],
    ) -> None:
        self.examples = examples
        self.source = source
        self.records = records  # the validated input records, parallel to `examples` (prompts for eval)
        self.locations = locations  # "file: entry 3" / "file: line 4" per example, for error messages

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.examples[index]

    def check_vocab(self, vocab_size: int) -> None:
        """DataError naming the source and entry if a token id is >= vocab_size."""
        for i, example in enumerate(self.examples):
            for field, ids in example.items():
                check_ids_in_vocab(ids, vocab_size, f"{self.locations[i]}: {field}")

    def subset(self, indices: list[int]) -> "ExampleDataset":
        """A dataset of the same class holding only `indices` (examples are shared, not copied)."""
        view = copy.copy(self)
        view.examples = [self.examples[i] for i in indices]
        view.records = [self.records[i] for i in indices]
        view.locations = [self.locations[i] for i in indices]
        return view

    def split(self, val_fraction: float, seed: int) -> tuple["ExampleDataset", "ExampleDataset"]:
        return train_val_split(self, val_fraction, seed)

    @property
    def num_tokens(self) -> int:
        """Input tokens over all examples (both sequences for preference pairs)."""
        return sum(int(ids.numel()) for ex in self.examples for k, ids in ex.items() if k.endswith("input_ids"))


def train_val_split(dataset: ExampleDataset, val_fraction: float, seed: int) -> tuple[ExampleDataset, ExampleDataset]:
    """Random disjoint (train, val) subsets; the same seed gives the same split on every machine.

    The permutation comes from an owned torch.Generator, so the global RNG (model init, dropout) is
    untouched. Both parts keep file order, which keeps evaluation output easy to compare across runs.
    """
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"{dataset.source}: val_fraction must be in (0, 1), got {val_fraction}")
    n = len(dataset)
    n_val = round(n * val_fraction)
    if n_val < 1 or n_val >= n:
        raise DataError(
            f"{dataset.source}: val_fraction {val_fraction} of {n} entries leaves "
            f"{n - n_val} for training and {n_val} for validation; both need at least one"
        )
    generator = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=generator).tolist()
    return dataset.subset(sorted(perm[n_val:])), dataset.subset(sorted(perm[:n_val]))
