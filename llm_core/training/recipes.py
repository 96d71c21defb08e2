"""Per-stage starting values: `TrainConfig()`'s own defaults are the pretraining recipe of the default
experiment; finetuning stages start from an already trained model and want fewer, gentler steps.

`stage_config(stage, adapter=..., **overrides)` is the one place the CLI (`workbench train --set stage=sft`,
`workbench dpo`) and the TUI's run panel get a stage's defaults from. The numbers were measured on the
embedded default experiment (README, "Default experiment"); LoRA/DoRA start from a zero update and train
few parameters, so they take a higher learning rate than full finetuning (Hu et al., 2021 used 2e-4..1e-3
where full finetuning used ~1e-5..1e-4).
"""
from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from .config import TrainConfig

SFT_RECIPE: dict[str, Any] = {
    "max_steps": 400,
    "batch_size": 16,
    "peak_lr": 1e-3,
    "min_lr": 1e-4,
    "warmup_fraction": 0.05,
    "eval_every": 100,
    "checkpoint_every": 200,
}
SFT_ADAPTER_LR: dict[str, Any] = {"peak_lr": 3e-3, "min_lr": 3e-4}


def stage_recipe(stage: str, adapter: str = "none") -> dict[str, Any]:
    """The TrainConfig keys a stage changes from the pretraining defaults (adapter learning rates included)."""
    if stage == "pretrain":
        return {"stage": "pretrain"}
    if stage == "sft":
        return {"stage": "sft", **SFT_RECIPE, **(SFT_ADAPTER_LR if adapter != "none" else {})}
    if stage == "dpo":
        from ..dpo.recipe import ADAPTER_LR, DPO_RECIPE

        return {**DPO_RECIPE, **(ADAPTER_LR if adapter != "none" else {})}
    raise ConfigError(f"TrainConfig.stage: must be pretrain, sft or dpo, got {stage!r}")


def stage_config(stage: str = "pretrain", adapter: str = "none", **overrides: Any) -> TrainConfig:
    """A validated TrainConfig: the defaults, then the stage's recipe, then `overrides` (any TrainConfig key)."""
    values = {**stage_recipe(stage, adapter), "adapter": adapter, **overrides}
    return TrainConfig.from_dict(values, where=f"{stage} recipe")
