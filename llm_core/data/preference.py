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

from pathlib import Path
from typing import Any, Iterable

import torch

from ..errors import DataError
from ..formatting import encode_example
from .base import ExampleDataset
from .instruction import check_max_length, field_message, shift_and_mask
from .records import located_records

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
        located, source = located_records(path_or_records, PREFERENCE_FIELDS, OPTIONAL_FIELDS)
        examples: list[dict[str, torch.Tensor]] = []
        kept: list[tuple[str, dict[str, Any]]] = []
        self.dropped = 0  # pairs skipped by drop_identical
        for where, record in located:
            example = self._build(where, record, tokenizer, max_length)
            if example is None:
                if not drop_identical:
                    raise DataError(
                        f"{where}: fields 'chosen' and 'rejected' are identical (within max_length "
                        f"{max_length}), so the pair expresses no preference; fix it, or skip such pairs with "
                        "--set drop_identical_pairs=true"
                    )
                self.dropped += 1
                continue
            examples.append(example)
            kept.append((where, record))
        if not examples:
            raise DataError(f"{source}: no entries left after dropping {self.dropped} identical pairs")
        super().__init__(examples, source, [r for _, r in kept], [w for w, _ in kept])
        self.max_length = max_length
        if vocab_size is not None:
            self.check_vocab(vocab_size)

    @staticmethod
    def _build(
        where: str, record: dict[str, Any], tokenizer: Any, max_length: int
    ) -> dict[str, torch.Tensor] | None:
        """The example's tensors, or None when chosen and rejected are the same."""
        if record["chosen"] == record["rejected"]:
            return None
        example: dict[str, torch.Tensor] = {}
        for field in ("chosen", "rejected"):
            try:
                prompt_ids, response_ids = encode_example(
                    tokenizer, record["instruction"], record.get("input") or "", record[field]
                )
            except DataError as exc:
                raise DataError(f"{where}: {field_message(exc)}") from None
            pair = shift_and_mask(prompt_ids, response_ids, max_length)
            if pair is None:
                raise DataError(
                    f"{where}: field {field!r} is cut away entirely: the prompt alone is {len(prompt_ids)} "
                    f"tokens and max_length is {max_length}; raise max_length or shorten the instruction/input"
                )
            example[f"{field}_input_ids"], example[f"{field}_labels"] = pair
        if torch.equal(example["chosen_input_ids"], example["rejected_input_ids"]) and torch.equal(
            example["chosen_labels"], example["rejected_labels"]
        ):
            return None  # the responses differ only after the max_length cut
        return example
