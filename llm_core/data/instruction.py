"""Instruction finetuning data (supervised finetuning, SFT) in the Alpaca format.

Each record has `instruction`, optional `input` and `output`. `llm_core.formatting.encode_example` builds
the prompt and response ids (response ending in the end-of-text id); the example is their concatenation,
cut to `max_length + 1` tokens and shifted by one: input_ids = seq[:-1], labels = seq[1:].

With `mask_prompt` (the default) the labels of prompt tokens are -100, so the loss is the response's
alone: the model learns to answer, not to reproduce the fixed template. (Ouyang et al., 2022, "Training
language models to follow instructions with human feedback", train on completions only; Shi et al., 2024,
"Instruction Tuning With Loss Over Instructions", study when masking helps.)
"""
from __future__ import annotations

from array import array
from pathlib import Path
from typing import Any, Iterable

import torch

from ..errors import ConfigError, DataError
from ..formatting import encode_example
from .base import IGNORE_INDEX, ExampleDataset
from .packed import PackedSequences
from .records import RecordStream

INSTRUCTION_FIELDS = {"instruction": str, "output": str}
OPTIONAL_FIELDS = {"input": str}


def cut_sequence(prompt_ids: list[int], response_ids: list[int], max_length: int) -> list[int] | None:
    """prompt+response cut to max_length+1 tokens (the model sees max_length of them); None if no
    response token survives the cut (the example would teach nothing)."""
    seq = (prompt_ids + response_ids)[: max_length + 1]
    return seq if len(seq) > len(prompt_ids) else None


def inputs_and_labels(seq: torch.Tensor, prompt_length: int, mask_prompt: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids (T,), labels (T,)) of a cut sequence (T + 1,): input_ids = seq[:-1], labels = seq[1:]."""
    input_ids, labels = seq[:-1], seq[1:].clone()  # labels[t] is the token after position t
    if mask_prompt:
        # labels[t] = seq[t+1] is a prompt token while t+1 < prompt_length: mask those prompt_length-1 targets.
        labels[: max(prompt_length - 1, 0)] = IGNORE_INDEX
    return input_ids, labels


def shift_and_mask(
    prompt_ids: list[int], response_ids: list[int], max_length: int, mask_prompt: bool = True
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(input_ids, labels) of prompt+response cut to max_length+1 tokens; None if no response token is left."""
    seq = cut_sequence(prompt_ids, response_ids, max_length)
    if seq is None:
        return None
    return inputs_and_labels(torch.tensor(seq, dtype=torch.long), len(prompt_ids), mask_prompt)


def field_message(exc: DataError) -> str:
    """formatting's "instruction: must not be empty" as "field 'instruction' must not be empty"."""
    field, sep, rest = str(exc).partition(": ")
    return f"field {field!r} {rest}" if sep else str(exc)


def check_max_length(max_length: int) -> None:
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
        raise ConfigError(f"max_length: must be an integer >= 1, got {max_length!r}")


class InstructionDataset(ExampleDataset):
    """Alpaca-style (instruction, input, output) examples; items are {"input_ids", "labels"} long tensors."""

    def __init__(
        self,
        path_or_records: str | Path | Iterable[dict[str, Any]],
        tokenizer: Any,
        max_length: int,
        mask_prompt: bool = True,
        vocab_size: int | None = None,
    ) -> None:
        check_max_length(max_length)
        stream = RecordStream(path_or_records, INSTRUCTION_FIELDS, OPTIONAL_FIELDS)
        self.columns = {"sequence": PackedSequences()}
        prompt_lengths, numbers = array("i"), []
        kept = None if stream.path is not None else []  # records given in memory are the caller's already
        for number, record in stream:
            where = stream.where(number)
            try:
                prompt_ids, response_ids = encode_example(
                    tokenizer, record["instruction"], record.get("input") or "", record["output"]
                )
            except DataError as exc:
                raise DataError(f"{where}: {field_message(exc)}") from None
            seq = cut_sequence(prompt_ids, response_ids, max_length)
            if seq is None:
                raise DataError(
                    f"{where}: field 'output' is cut away entirely: the prompt alone is {len(prompt_ids)} "
                    f"tokens and max_length is {max_length}; raise max_length or shorten the instruction/input"
                )
            self.columns["sequence"].append(seq)
            prompt_lengths.append(len(prompt_ids))
            numbers.append(number)
            if kept is not None:
                kept.append(record)
        self._finish(stream, numbers, kept)
        self.prompt_lengths = torch.frombuffer(prompt_lengths, dtype=torch.int32)  # (N,)
        self.max_length = max_length
        self.mask_prompt = mask_prompt
        if vocab_size is not None:
            self.check_vocab(vocab_size)

    def _field_name(self, column: str, row: int, offset: int) -> str:
        return "output" if offset >= int(self.prompt_lengths[row]) else "instruction/input"

    def _item(self, row: int) -> dict[str, torch.Tensor]:
        input_ids, labels = inputs_and_labels(
            self.columns["sequence"].seq(row), int(self.prompt_lengths[row]), self.mask_prompt
        )
        return {"input_ids": input_ids, "labels": labels}
