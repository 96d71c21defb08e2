"""Collating variable-length examples into padded (B, L) batches.

Right padding: inputs are padded with `pad_id` (the tokenizer's end-of-text id: any valid id works,
because a causal model's earlier positions never attend to later ones) and labels with -100, so padded
positions add nothing to the loss. Preference batches pad chosen and rejected to ONE common length, so
DPO can run both in a single forward pass as a (2B, L) batch (Rafailov et al., 2023, use the same trick).
"""
from __future__ import annotations

from typing import Sequence

import torch

from .base import IGNORE_INDEX


def pad_stack(rows: Sequence[torch.Tensor], length: int, value: int) -> torch.Tensor:
    """Stack 1-D tensors into (B, length), right-padded with `value`."""
    out = torch.full((len(rows), length), value, dtype=torch.long)  # (B, L)
    for i, row in enumerate(rows):
        out[i, : row.numel()] = row
    return out


def collate_lm(items: Sequence[dict[str, torch.Tensor]], pad_id: int) -> dict[str, torch.Tensor]:
    """{"input_ids": (B, L), "labels": (B, L)} with L the longest example in the batch."""
    if not items:
        raise ValueError("collate_lm: empty batch")
    length = max(item["input_ids"].numel() for item in items)
    return {
        "input_ids": pad_stack([it["input_ids"] for it in items], length, pad_id),
        "labels": pad_stack([it["labels"] for it in items], length, IGNORE_INDEX),
    }


PREFERENCE_KEYS = ("chosen_input_ids", "chosen_labels", "rejected_input_ids", "rejected_labels")


def collate_preference(items: Sequence[dict[str, torch.Tensor]], pad_id: int) -> dict[str, torch.Tensor]:
    """Chosen and rejected tensors, all (B, L) with L the longest chosen OR rejected sequence.

    `torch.cat([b["chosen_input_ids"], b["rejected_input_ids"]])` is then a valid (2B, L) batch.
    """
    if not items:
        raise ValueError("collate_preference: empty batch")
    length = max(max(it["chosen_input_ids"].numel(), it["rejected_input_ids"].numel()) for it in items)
    batch = {}
    for key in PREFERENCE_KEYS:
        value = IGNORE_INDEX if key.endswith("labels") else pad_id
        batch[key] = pad_stack([it[key] for it in items], length, value)
    return batch
