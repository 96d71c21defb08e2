"""Datasets for LLM Workbench: records loading, pretraining windows, instruction / preference examples,
padding collators and the resumable seeded batch iterator.

Every example holds `input_ids` and `labels` of equal length; labels[t] is the target for position t
(the sequence shifted by one) and -100 marks positions excluded from the loss.
"""
from .base import IGNORE_INDEX, ExampleDataset, train_val_split
from .batching import BatchIterator, evaluation_batches
from .collate import collate_lm, collate_preference
from .instruction import InstructionDataset
from .preference import PreferenceDataset
from .prompts import PromptDataset, collate_prompts
from .records import load_records, validate_records
from .text import TextDataset

__all__ = [
    "PromptDataset", "collate_prompts",
    "IGNORE_INDEX",
    "ExampleDataset",
    "train_val_split",
    "BatchIterator",
    "evaluation_batches",
    "collate_lm",
    "collate_preference",
    "InstructionDataset",
    "PreferenceDataset",
    "load_records",
    "validate_records",
    "TextDataset",
]
