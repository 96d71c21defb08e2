"""Per-stage starting values: `TrainConfig()`'s own defaults are the pretraining recipe of the default
experiment; finetuning stages start from an already trained model and want fewer, gentler steps. The
recipes themselves live with their stages in the registry (`stages.STAGES`).

`stage_config(stage, adapter=..., **overrides)` is the one place the CLI (`workbench train --set stage=sft`,
`workbench dpo`) and the TUI's run panel get a stage's defaults from.
"""
from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from .config import TrainConfig
from .stages import STAGES, stage_names


def stage_recipe(stage: str, adapter: str = "none") -> dict[str, Any]:
    """The TrainConfig keys a stage changes from the pretraining defaults (adapter learning rates included)."""
    spec = STAGES.get(stage)
    if spec is None:
        raise ConfigError(f"TrainConfig.stage: must be {stage_names()}, got {stage!r}")
    return {**spec.recipe, "stage": stage, **(spec.adapter_lr if adapter != "none" else {})}


def stage_config(stage: str = "pretrain", adapter: str = "none", **overrides: Any) -> TrainConfig:
    """A validated TrainConfig: the defaults, then the stage's recipe, then `overrides` (any TrainConfig key)."""
    values = {**stage_recipe(stage, adapter), "adapter": adapter, **overrides}
    return TrainConfig.from_dict(values, where=f"{stage} recipe")


def dpo_config(init_from: str, data: str = "arith", adapter: str = "none", **overrides: Any) -> TrainConfig:
    """A validated `TrainConfig` for DPO from `init_from`: the DPO recipe (+ the adapter learning rates),
    then `overrides` (any TrainConfig key, e.g. beta=0.2, max_steps=100)."""
    return stage_config("dpo", adapter=adapter, init_from=init_from, data=data, **overrides)
