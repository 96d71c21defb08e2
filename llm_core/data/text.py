"""Pretraining data: a token stream cut into fixed-length windows for next-token prediction.

The corpus is tokenized once into one long stream. Window i starts at i * stride and covers T =
context_length tokens; its labels are the same span shifted one token right (Radford et al., 2018/2019:
"predict the next token"). stride == T gives non-overlapping windows; a smaller stride overlaps them
(more, correlated examples).

Train and validation are contiguous pieces of the stream (the last `val_fraction` of tokens is
validation), so no validation token ever appears inside a training window, as it would if windows were
shuffled into the two splits. Documents are joined with the end-of-text id inserted BY ID (the
tokenizer never makes it from text), so a corpus containing the literal string "<|endoftext|>" can't
forge a boundary.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from ..errors import ConfigError, DataError
from ..io import read_text_file
from .base import check_ids_in_vocab


def check_window(context_length: int, stride: int | None) -> None:
    for name, value in (("context_length", context_length), ("stride", stride)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"{name}: must be an integer >= 1, got {value!r}")


class TextDataset(torch.utils.data.Dataset):
    """Windows over `ids` (1-D): item i = {"input_ids": ids[s:s+T], "labels": ids[s+1:s+T+1]}, s = i*stride."""

    def __init__(
        self, ids: torch.Tensor, context_length: int, stride: int | None = None, source: str = "<tokens>"
    ) -> None:
        check_window(context_length, stride)
        ids = torch.as_tensor(ids, dtype=torch.long).reshape(-1)
        if ids.numel() < context_length + 1:
            raise DataError(
                f"{source}: {ids.numel()} tokens is shorter than one window "
                f"(context_length {context_length} + 1 = {context_length + 1} tokens); "
                "use more text or a smaller context_length"
            )
        self.ids = ids
        self.context_length = context_length
        self.stride = stride or context_length
        self.source = source

    def __len__(self) -> int:
        # Start s is valid while s + T + 1 <= N (the last window needs one extra token for its label).
        return (self.ids.numel() - self.context_length - 1) // self.stride + 1

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"window {index} out of range ({len(self)} windows)")
        start = (index % len(self)) * self.stride
        window = self.ids[start : start + self.context_length + 1]  # (T + 1,)
        return {"input_ids": window[:-1], "labels": window[1:]}

    @property
    def num_tokens(self) -> int:
        return int(self.ids.numel())

    def check_vocab(self, vocab_size: int) -> None:
        """DataError if a token id is >= vocab_size (tokenizer and model disagree)."""
        check_ids_in_vocab(self.ids, vocab_size, self.source)

    @classmethod
    def from_files(
        cls,
        paths: str | Path | Sequence[str | Path],
        tokenizer: Any,
        context_length: int,
        stride: int | None = None,
        separator: str | None = None,
        val_fraction: float = 0.1,
        vocab_size: int | None = None,
    ) -> tuple["TextDataset", "TextDataset | None"]:
        """(train, val) from UTF-8 text files; val is None when val_fraction is 0.

        Each file is a document; with `separator` each file is further split on that exact string.
        Documents are encoded as ordinary text and joined with `tokenizer.eot_id`.
        """
        if isinstance(paths, (str, Path)):
            paths = [paths]
        paths = [Path(p) for p in paths]
        if not paths:
            raise DataError("no text files given")
        if not 0.0 <= val_fraction < 1.0:
            raise ConfigError(f"val_fraction: must be in [0, 1), got {val_fraction}")
        if separator == "":
            raise ConfigError("separator: must not be the empty string")
        check_window(context_length, stride)
        source = ", ".join(str(p) for p in paths)
        ids = torch.tensor(encode_documents(paths, tokenizer, separator), dtype=torch.long)
        cls(ids, context_length, stride, source=source)  # the whole corpus must hold one window
        n_val = round(ids.numel() * val_fraction)
        n_train = ids.numel() - n_val
        train = cls._piece(ids[:n_train], context_length, stride, source, "training", val_fraction)
        val = None
        if n_val > 0:
            val = cls._piece(ids[n_train:], context_length, stride, source, "validation", val_fraction)
        if vocab_size is not None:
            train.check_vocab(vocab_size)
            if val is not None:
                val.check_vocab(vocab_size)
        return train, val

    @classmethod
    def _piece(
        cls, ids: torch.Tensor, context_length: int, stride: int | None, source: str, part: str, val_fraction: float
    ) -> "TextDataset":
        try:
            return cls(ids, context_length, stride, source=source)
        except DataError:
            raise DataError(
                f"{source}: the {part} split has {ids.numel()} tokens (val_fraction {val_fraction}), shorter "
                f"than one window (context_length {context_length} + 1 = {context_length + 1} tokens); "
                "use more text, a smaller context_length or another val_fraction"
            ) from None



def encode_documents(paths: Sequence[Path], tokenizer: Any, separator: str | None = None) -> list[int]:
    """One token stream: every file (and, with `separator`, every piece of it) is a document; documents
    are encoded as ordinary text and joined by the end-of-text id. Empty documents are skipped so a
    leading or trailing separator adds no stray boundary."""
    ids: list[int] = []
    for path in paths:
        text = read_text_file(path)
        documents = text.split(separator) if separator is not None else [text]
        for document in documents:
            if not document:
                continue
            if ids:
                ids.append(tokenizer.eot_id)
            ids.extend(tokenizer.encode(document))
    return ids
