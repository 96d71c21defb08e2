"""The embedded default experiment: arithmetic word problems where chain of thought pays off.

`data/arith/` holds the generated files (see `llm_core.experiment.build`); `make_prompt` builds the
chain-of-thought ("cot"), direct-answer ("direct") or neutral (the bare problem, "neutral") prompt of a
problem, `extract_answer` scores a model's response. `TRAIN_BOOK` and `PARAPHRASE_BOOK` are the disjoint
template pools of the training files and of the paraphrase held-out set.
"""
from __future__ import annotations

from pathlib import Path

from .answers import ANSWER_TEMPLATE, extract_answer, is_step_by_step, split_reasoning
from .arithmetic import (
    COT_CUE,
    DIRECT_CUE,
    MODES,
    PARAPHRASE_BOOK,
    TRAIN_BOOK,
    Phrasebook,
    Problem,
    make_instruction,
    make_prompt,
    random_problem,
    solution,
)

# Repository data folder: <repo>/data/arith (llm_core/experiment/__init__.py -> parents[2] is the repo).
DATA_DIR = Path(__file__).resolve().parents[2] / "data" / "arith"


def default_paths(root: str | Path | None = None) -> dict[str, Path]:
    """Paths of the experiment's files under `root` (default `DATA_DIR`)."""
    base = Path(root) if root is not None else DATA_DIR
    return {
        "pretrain": base / "pretrain.txt",
        "instructions": base / "instructions.json",
        "preferences": base / "preferences.json",
        "eval": base / "eval.json",
        "eval_paraphrase": base / "eval_paraphrase.json",
        "tokenizer": base / "tokenizer",
        "manifest": base / "MANIFEST.json",
    }


__all__ = [
    "ANSWER_TEMPLATE",
    "COT_CUE",
    "DATA_DIR",
    "DIRECT_CUE",
    "MODES",
    "PARAPHRASE_BOOK",
    "Phrasebook",
    "Problem",
    "TRAIN_BOOK",
    "default_paths",
    "extract_answer",
    "is_step_by_step",
    "make_instruction",
    "make_prompt",
    "random_problem",
    "solution",
    "split_reasoning",
]
