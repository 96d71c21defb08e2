"""What every dataset of examples shares: packed token columns, a vocabulary check, a seeded split.

Examples are tokenised once, at load time, so a bad record fails before training starts rather than at
step 10,000. Their tokens are packed into flat int32 columns (`packed.PackedSequences`), not kept as one
tensor per example: a 50 MB JSONL file then takes a few times its size in memory, not 30x. The records
themselves are not kept (they would cost more than the tokens); `records` reads them back from the file
on demand, for the few callers that need the text (evaluation prompts, tests).

A split or subset is a view: the same columns and an index tensor of the rows it holds.
"""
from __future__ import annotations

import copy
from typing import Any, Sequence

import torch

from ..errors import DataError
from .packed import PackedSequences
from .records import RecordStream

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
    """Examples read from `stream.source` (a file name or "<records>"), stored as packed token columns.

    Subclasses fill `columns` (name -> PackedSequences, one sequence per stored row) while reading, call
    `_finish(stream, numbers, records)` with each row's line / entry number (and the records, when they are
    kept), and turn a row into tensors in `_item`.
    """

    columns: dict[str, PackedSequences]
    # A stored sequence is this many tokens longer than the model input it makes (1 for prompt+response
    # sequences, whose input is seq[:-1]; 0 for prompts).
    input_offset = 1

    def _finish(self, stream: RecordStream, numbers: Sequence[int], records: list[dict[str, Any]] | None) -> None:
        for column in self.columns.values():
            column.freeze()
        self.source = stream.source
        self._stream = stream  # re-read for `records` when they were not kept
        self._numbers = torch.tensor(numbers, dtype=torch.long)  # (N,) line / entry number of each row
        self._records = records  # kept only when small or given in memory
        self._rows = torch.arange(len(numbers))  # (n,) the stored rows this view holds

    def __len__(self) -> int:
        return int(self._rows.numel())

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"example {index} out of range ({len(self)} examples)")
        return self._item(int(self._rows[index]))

    def _item(self, row: int) -> dict[str, Any]:
        raise NotImplementedError

    def location(self, index: int) -> str:
        """"file: entry 3" / "file: line 4" of example `index`, for error messages."""
        return self._stream.where(int(self._numbers[self._rows[index]]))

    @property
    def locations(self) -> list[str]:
        return [self.location(i) for i in range(len(self))]

    @property
    def records(self) -> list[dict[str, Any]]:
        """The validated input records of this view's examples, in order (read back from the file when
        they were not kept)."""
        if self._records is not None:
            return [self._records[int(row)] for row in self._rows]
        wanted = {int(self._numbers[row]): i for i, row in enumerate(self._rows.tolist())}
        out: list[dict[str, Any] | None] = [None] * len(wanted)
        for number, record in self._stream:  # reads the file again
            if number in wanted:
                out[wanted[number]] = record
        if any(r is None for r in out):
            raise DataError(f"{self.source}: changed since it was loaded (records are missing)")
        return out  # type: ignore[return-value]

    def lengths(self, column: str) -> torch.Tensor:
        """(n,) length of `column` in each example of this view."""
        offsets = self.columns[column].offsets
        return offsets[self._rows + 1] - offsets[self._rows]

    def check_vocab(self, vocab_size: int) -> None:
        """DataError naming the source and entry if a token id is outside the vocabulary."""
        if vocab_size < 1:
            raise DataError(f"{self.source}: vocab_size must be >= 1, got {vocab_size}")
        for name, column in self.columns.items():
            bad = ((column.flat < 0) | (column.flat >= vocab_size)).nonzero()
            if bad.numel():
                position = int(bad[0, 0])
                row = int(torch.searchsorted(column.offsets, position, right=True)) - 1
                where = self._stream.where(int(self._numbers[row]))
                field = self._field_name(name, row, position - int(column.offsets[row]))
                check_ids_in_vocab(column.seq(row), vocab_size, f"{where}: {field}")

    def _field_name(self, column: str, row: int, offset: int) -> str:
        """The record field that token `offset` of `column` in stored row `row` came from."""
        return column

    def subset(self, indices: list[int]) -> "ExampleDataset":
        """A dataset of the same class holding only `indices` (the columns are shared, not copied)."""
        view = copy.copy(self)
        view._rows = self._rows[torch.as_tensor(indices, dtype=torch.long)]
        return view

    def split(self, val_fraction: float, seed: int) -> tuple["ExampleDataset", "ExampleDataset"]:
        return train_val_split(self, val_fraction, seed)

    @property
    def num_tokens(self) -> int:
        """Input tokens over all examples (both sequences for preference pairs)."""
        return sum(int(self.lengths(name).sum()) - self.input_offset * len(self) for name in self.columns)


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
