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

from pathlib import Path
from typing import Any, Iterable

import torch

from ..errors import ConfigError, DataError
from ..formatting import encode_example
from .base import IGNORE_INDEX, ExampleDataset
from .records import located_records

INSTRUCTION_FIELDS = {"instruction": str, "output": str}
OPTIONAL_FIELDS = {"input": str}


def shift_and_mask(
    prompt_ids: list[int], response_ids: list[int], max_length: int, mask_prompt: bool = True
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(input_ids (T,), labels (T,)) of prompt+response cut to max_length+1 tokens; None if no response
    token survives the cut (the example would teach nothing)."""
    seq = (prompt_ids + response_ids)[: max_length + 1]
    if len(seq) <= len(prompt_ids):
        return None
    seq_t = torch.tensor(seq, dtype=torch.long)
    input_ids, labels = seq_t[:-1], seq_t[1:].clone()  # labels[t] is the token after position t
    if mask_prompt:
        # labels[t] = seq[t+1] is a prompt token while t+1 < len(prompt): mask those len(prompt)-1 targets.
        labels[: max(len(prompt_ids) - 1, 0)] = IGNORE_INDEX
    return input_ids, labels


def field_message(exc: DataError) -> str:
    """formatting's "instruction: must not be empty" as "field 'instruction' must not be empty"."""
    field, sep, rest = str(exc).partition(": ")
    return f"field {field!r} {rest}" if sep else str(exc)


def check_max_length(max_length: int) -> None:
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
        raise ConfigError(f"max_length: must be an integer >= 1, got {max_length!r}")


class InstructionDataset(ExampleDataset):
    """Alpaca-style (instruction, input, output) examples as {"input_ids", "labels"} long tensors."""

    def __init__(
        self,
        path_or_records: str | Path | Iterable[dict[str, Any]],
        tokenizer: Any,
        max_length: int,
        mask_prompt: bool = True,
        vocab_size: int | None = None,
    ) -> None:
        check_max_length(max_length)
        located, source = located_records(path_or_records, INSTRUCTION_FIELDS, OPTIONAL_FIELDS)
        examples = []
        for where, record in located:
            try:
                prompt_ids, response_ids = encode_example(
                    tokenizer, record["instruction"], record.get("input") or "", record["output"]
                )
            except DataError as exc:
                raise DataError(f"{where}: {field_message(exc)}") from None
            pair = shift_and_mask(prompt_ids, response_ids, max_length, mask_prompt)
            if pair is None:
                raise DataError(
                    f"{where}: field 'output' is cut away entirely: the prompt alone is {len(prompt_ids)} "
                    f"tokens and max_length is {max_length}; raise max_length or shorten the instruction/input"
                )
            examples.append({"input_ids": pair[0], "labels": pair[1]})
        super().__init__(examples, source, [r for _, r in located], [w for w, _ in located])
        self.max_length = max_length
        self.mask_prompt = mask_prompt
        if vocab_size is not None:
            self.check_vocab(vocab_size)
