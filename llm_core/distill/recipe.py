"""`distill_config`: a validated TrainConfig for the distill stage from a teacher and a student (a preset
name or a checkpoint), shared by `workbench distill`, the benchmark and Python users.

A preset student with no explicit `tokenizer` gets the teacher's (its run's tokenizer/ folder): student and
teacher must share the vocabulary id by id, and a fresh student has no tokenizer of its own to defend. A
checkpoint student keeps its own, and a mismatch is refused when the run is built.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..model import PRESETS
from ..training.loading import TOKENIZER_DIR, resolve_step_dir, run_dir_of
from ..training.recipes import stage_config


def distill_config(teacher: str, student: str = "tiny-student", mode: str = "logits", adapter: str = "none",
                   **overrides: Any) -> Any:
    """The distill recipe, then the teacher / student / mode, then `overrides` (any TrainConfig key; explicit
    width and depth: d_model=..., n_layers=..., n_heads=...)."""
    values: dict[str, Any] = {"teacher": teacher, "distill_mode": mode}
    if student in PRESETS:
        values["model"] = student
        values.setdefault("tokenizer", str(run_dir_of(resolve_step_dir(teacher)) / TOKENIZER_DIR))
    elif Path(student).exists():
        values["init_from"] = student
    else:
        raise ConfigError(f"student: {student!r} is neither a model preset ({', '.join(PRESETS)}) nor a checkpoint",
                          field="model")
    values.update(overrides)
    return stage_config("distill", adapter=adapter, **values)
