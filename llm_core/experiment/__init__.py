"""The embedded default experiment: arithmetic word problems where chain of thought pays off.

`llm_core/experiment/data/arith/` holds the generated files (see `llm_core.experiment.build`); `make_prompt` builds the
chain-of-thought ("cot"), direct-answer ("direct") or neutral (the bare problem, "neutral") prompt of a
problem, `extract_answer` scores a model's response. `TRAIN_BOOK` and `PARAPHRASE_BOOK` are the disjoint
template pools of the training files and of the paraphrase held-out set.
"""
from __future__ import annotations

from importlib import resources
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

# The shipped files are package data of llm_core.experiment, found through importlib.resources so that a
# wheel install finds them as an editable checkout does. Installs are unpacked folders (pip never installs a
# wheel zipped), so the Traversable is a real directory.
DATA_DIR = Path(str(resources.files(__name__).joinpath("data", "arith")))


def default_paths(root: str | Path | None = None) -> dict[str, Path]:
    """Paths of the experiment's files under `root` (default `DATA_DIR`)."""
    base = Path(root) if root is not None else DATA_DIR
    return {
        "pretrain": base / "pretrain.txt.gz",
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
