"""The embedded default experiment: arithmetic word problems where chain of thought pays off.

`data/arith/` holds the generated files (see `llm_core.experiment.build`); `make_prompt` builds the
chain-of-thought or direct-answer prompt of a problem, `extract_answer` scores a model's response.
"""
from __future__ import annotations

from pathlib import Path

from .answers import ANSWER_TEMPLATE, extract_answer, split_reasoning
from .arithmetic import COT_CUE, DIRECT_CUE, Problem, make_instruction, make_prompt, random_problem, solution

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
        "tokenizer": base / "tokenizer",
        "manifest": base / "MANIFEST.json",
    }


__all__ = [
    "ANSWER_TEMPLATE",
    "COT_CUE",
    "DATA_DIR",
    "DIRECT_CUE",
    "Problem",
    "default_paths",
    "extract_answer",
    "make_instruction",
    "make_prompt",
    "random_problem",
    "solution",
    "split_reasoning",
]
