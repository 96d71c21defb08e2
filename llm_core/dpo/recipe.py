"""Default DPO settings: `TrainConfig`'s defaults are a pretraining recipe (1500 steps at lr 3e-3), far too
aggressive for preference tuning, which starts from a finetuned model and should stay close to it.

DPO papers use learning rates 10-100x below SFT (Rafailov et al. used 1e-6 on 2.8B-6.9B models with
beta 0.1); a small CPU model tolerates more. LoRA/DoRA train few parameters starting from a zero update,
so they get a higher rate than full finetuning.
"""
from __future__ import annotations

from typing import Any

DPO_RECIPE: dict[str, Any] = {
    "stage": "dpo",
    "beta": 0.1,
    "max_steps": 300,
    "batch_size": 8,
    "peak_lr": 2e-5,  # at 1e-4 a 3-layer SFT model's chosen log-prob fell from -93 to -300 nats in 60 steps
    "min_lr": 2e-6,
    "warmup_fraction": 0.1,
    "weight_decay": 0.0,  # regularising towards 0 fights the implicit pull towards the reference
    "eval_every": 50,
    "eval_batches": 8,
    "checkpoint_every": 100,
}
ADAPTER_LR = {"peak_lr": 1e-4, "min_lr": 1e-5}


def dpo_config(init_from: str, data: str = "arith", adapter: str = "none", **overrides: Any) -> Any:
    """A validated `TrainConfig` for DPO from `init_from`: `DPO_RECIPE` (+ the adapter learning rates),
    then `overrides` (any TrainConfig key, e.g. beta=0.2, max_steps=100)."""
    from ..training.recipes import stage_config

    return stage_config("dpo", adapter=adapter, init_from=init_from, data=data, **overrides)
