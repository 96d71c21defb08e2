"""Preference data for Direct Preference Optimization (Rafailov et al., 2023, "Direct Preference
Optimization: Your Language Model is Secretly a Reward Model").

Each record has `instruction`, optional `input`, and two responses, `chosen` (preferred) and `rejected`.
Both are built like instruction examples (`llm_core.formatting.encode_example`, shifted by one, prompt
labels -100), so the DPO loss sums log-probabilities over response tokens only.

A pair whose two responses are identical (as text, or as ids once cut to `max_length`) carries no
preference: its DPO gradient is exactly zero, and it usually marks a data bug, so it is an error. Some
public files contain a few such pairs; `drop_identical=True` skips them and counts them in `dropped`.
"""
from __future__ import annotations

from array import array
from pathlib import Path
from typing import Any, Iterable

import torch

from ..errors import DataError
from ..formatting import encode_example
from .base import ExampleDataset
from .instruction import check_max_length, cut_sequence, field_message, inputs_and_labels
from .packed import PackedSequences
from .records import RecordStream

PREFERENCE_FIELDS = {"instruction": str, "chosen": str, "rejected": str}
OPTIONAL_FIELDS = {"input": str}


class PreferenceDataset(ExampleDataset):
    """Items: chosen_input_ids, chosen_labels, rejected_input_ids, rejected_labels (1-D long tensors)."""

    def __init__(
        self,
        path_or_records: str | Path | Iterable[dict[str, Any]],
        tokenizer: Any,
        max_length: int,
        vocab_size: int | None = None,
        drop_identical: bool = False,
    ) -> None:
        check_max_length(max_length)
        stream = RecordStream(path_or_records, PREFERENCE_FIELDS, OPTIONAL_FIELDS)
        self.columns = {"chosen": PackedSequences(), "rejected": PackedSequences()}
        prompt_lengths, numbers = array("i"), []
        kept = None if stream.path is not None else []
        self.dropped = 0  # pairs skipped by drop_identical
        for number, record in stream:
            where = stream.where(number)
            pair = self._build(where, record, tokenizer, max_length)
            if pair is None:
                if not drop_identical:
                    raise DataError(
                        f"{where}: fields 'chosen' and 'rejected' are identical (within max_length "
                        f"{max_length}), so the pair expresses no preference; fix it, or skip such pairs with "
                        "--set drop_identical_pairs=true"
                    )
                self.dropped += 1
                continue
            prompt_length, chosen, rejected = pair
            self.columns["chosen"].append(chosen)
            self.columns["rejected"].append(rejected)
            prompt_lengths.append(prompt_length)
            numbers.append(number)
            if kept is not None:
                kept.append(record)
        if not numbers:
            raise DataError(f"{stream.source}: no entries left after dropping {self.dropped} identical pairs")
        self._finish(stream, numbers, kept)
        self.prompt_lengths = torch.frombuffer(prompt_lengths, dtype=torch.int32)  # (N,)
        self.max_length = max_length
        if vocab_size is not None:
            self.check_vocab(vocab_size)

    @staticmethod
    def _build(
        where: str, record: dict[str, Any], tokenizer: Any, max_length: int
    ) -> tuple[int, list[int], list[int]] | None:
        """(prompt length, chosen sequence, rejected sequence), or None when chosen and rejected are the same."""
        if record["chosen"] == record["rejected"]:
            return None
        sequences, prompt_length = {}, 0
        for field in ("chosen", "rejected"):
            try:
                prompt_ids, response_ids = encode_example(
                    tokenizer, record["instruction"], record.get("input") or "", record[field]
                )
            except DataError as exc:
                raise DataError(f"{where}: {field_message(exc)}") from None
            seq = cut_sequence(prompt_ids, response_ids, max_length)
            if seq is None:
                raise DataError(
                    f"{where}: field {field!r} is cut away entirely: the prompt alone is {len(prompt_ids)} "
                    f"tokens and max_length is {max_length}; raise max_length or shorten the instruction/input"
                )
            sequences[field], prompt_length = seq, len(prompt_ids)
        if sequences["chosen"] == sequences["rejected"]:
            return None  # the responses differ only after the max_length cut
        return prompt_length, sequences["chosen"], sequences["rejected"]

    def _field_name(self, column: str, row: int, offset: int) -> str:
        return column if offset >= int(self.prompt_lengths[row]) else "instruction/input"

    def _item(self, row: int) -> dict[str, torch.Tensor]:
        item: dict[str, torch.Tensor] = {}
        for field in ("chosen", "rejected"):
            seq = self.columns[field].seq(row)
            item[f"{field}_input_ids"], item[f"{field}_labels"] = inputs_and_labels(seq, int(self.prompt_lengths[row]))
        return item
