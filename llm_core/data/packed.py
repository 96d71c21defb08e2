"""Variable-length token sequences packed into one flat int32 array with offsets.

A list of 100k small tensors costs far more than its tokens: every tensor object carries a few hundred
bytes of bookkeeping, and int64 doubles the payload. Packing all sequences of a column end to end in one
int32 buffer, with an (N + 1,) offsets array marking where each starts, stores a token in 4 bytes and an
example in 8 more, whatever the count. Sequences are appended to a growable `array('i')` while a file is
read (no Python list of ints ever holds the whole column), then frozen into torch tensors that share
its memory.
"""
from __future__ import annotations

from array import array
from typing import Sequence

import torch

INT32_MAX = 2**31 - 1


class PackedSequences:
    """Append-only while building; after `freeze()`, `seq(i)` is the i-th sequence as a 1-D long tensor."""

    def __init__(self) -> None:
        self._values = array("i")
        self._offsets = array("q", [0])
        self.flat: torch.Tensor | None = None  # (total,) int32 once frozen
        self.offsets: torch.Tensor | None = None  # (N + 1,) int64 once frozen

    def append(self, ids: Sequence[int]) -> None:
        if self.flat is not None:
            raise RuntimeError("PackedSequences: append after freeze")
        self._values.extend(ids)  # OverflowError for ids outside int32: no tokenizer comes near 2**31
        self._offsets.append(len(self._values))

    def freeze(self) -> "PackedSequences":
        """Turn the growable buffers into tensors (zero-copy views of the same memory)."""
        if self.flat is None:
            # torch.frombuffer warns on an empty buffer and cannot view one; an empty column is legal.
            self.flat = torch.frombuffer(self._values, dtype=torch.int32) if self._values else torch.zeros(0, dtype=torch.int32)
            self.offsets = torch.frombuffer(self._offsets, dtype=torch.int64)
        return self

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def seq(self, index: int) -> torch.Tensor:
        start, end = self._offsets[index], self._offsets[index + 1]
        return self.flat[start:end].long()  # (L,) int64: what embeddings and cross_entropy take
