"""The stage registry: every training stage (pretraining, instruction finetuning, DPO) is one line here.

A stage names its objective (the `Objective` factory that turns a `TrainConfig` and the starting model
into what the Trainer minimises), the kind of dataset it reads, the file of the embedded default experiment
it trains on, and its recipe: the TrainConfig values it changes from the pretraining defaults (which ARE
the pretraining recipe, in `config.py`). Adding a stage (RL, distillation, ...) is one Objective module plus
one `STAGES` line; the Trainer, the CLI and the TUI's run panel read everything else from here.

Objectives are named by import path and imported when a run of that stage starts: the registry imports no
stage code, so `llm_core.training` never depends on `llm_core.dpo` at import time (and `llm_core.dpo` may
import the registry for its recipe without a cycle).

Recipe numbers were measured on the embedded default experiment (README, "Default experiment"). LoRA/DoRA
start from a zero update and train few parameters, so they take a higher learning rate than full finetuning
(Hu et al., 2021 used 2e-4..1e-3 where full finetuning used ~1e-5..1e-4).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

# "auto": by the data itself (distillation runs on text windows and on instruction data alike): the
# default experiment's file of the stage, else a .txt (or .txt.gz) file is text and a .json/.jsonl file instructions.
DatasetKind = Literal["text", "instruction", "preference", "prompts", "auto"]

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

# DPO: TrainConfig's defaults are a pretraining recipe (1800 steps at lr 3e-3), far too aggressive for
# preference tuning, which starts from a finetuned model and should stay close to it. DPO papers use learning
# rates 10-100x below SFT (Rafailov et al. used 1e-6 on 2.8B-6.9B models with beta 0.1; beta's default is
# TrainConfig's); a small CPU model tolerates more.
# Measured on the default experiment from the SFT checkpoint (README, "DPO"): 60 steps at 5e-6 with the SFT
# term raise held-out reward accuracy to 88% and leave chain-of-thought accuracy at 99%. Longer or faster
# runs (300 steps at 2e-5: 98% reward accuracy) cut CoT accuracy to 4.5-58%: the rejected solutions carry
# their slip through otherwise valid arithmetic, and pushing those tokens down unlearns the arithmetic.
DPO_RECIPE: dict[str, Any] = {
    "max_steps": 60,
    "batch_size": 8,
    "peak_lr": 5e-6,
    "min_lr": 5e-7,
    "warmup_fraction": 0.1,
    "weight_decay": 0.0,  # regularising towards 0 fights the implicit pull towards the reference
    "dpo_sft_weight": 1.0,  # + the chosen responses' NLL (Pang et al., 2024, arXiv:2404.19733): keeps them likely
    "eval_every": 20,
    "eval_batches": 8,
    "checkpoint_every": 60,
}
DPO_ADAPTER_LR: dict[str, Any] = {"peak_lr": 1e-4, "min_lr": 1e-5}


@dataclass(frozen=True)
class StageSpec:
    objective: str  # "package.module:factory", factory(config, model) -> Objective
    dataset: DatasetKind  # text windows, instruction examples, or preference pairs
    experiment_file: str  # the default experiment's file for this stage (llm_core.experiment.default_paths)
    recipe: dict[str, Any] = field(default_factory=dict)  # TrainConfig keys changed from the defaults
    adapter_lr: dict[str, Any] = field(default_factory=dict)  # ... and with LoRA/DoRA on top of that
    # "package.module:factory", factory(config, **trainer_kwargs) -> Trainer, for a stage that has work to do
    # before its Trainer exists (trace distillation: the teacher writes the training file first); None: Trainer.
    trainer: str | None = None

    def make_objective(self, config: Any, model: Any) -> Any:
        module, _, name = self.objective.partition(":")
        factory: Callable[[Any, Any], Any] = getattr(importlib.import_module(module), name)
        return factory(config, model)


# RL (GRPO) from a pretrained (or SFT) checkpoint: batch_size prompts x group_size completions a step.
# Measured on the default experiment (README, "Reinforcement learning"): pure RL from the pretrained
# checkpoint on neutral prompts with accuracy + format rewards takes neutral-prompt greedy accuracy from
# 3.0% to 96.5% in 100 steps (9.7 min on 2 cores) and 99.0% in 150: it learns to work problems out unasked.
RL_RECIPE: dict[str, Any] = {
    "max_steps": 150,
    "batch_size": 8,
    "peak_lr": 1e-4,
    "min_lr": 1e-5,
    "warmup_fraction": 0.05,
    "weight_decay": 0.0,
    "eval_every": 50,
    "checkpoint_every": 50,
}
RL_ADAPTER_LR: dict[str, Any] = {"peak_lr": 1e-3, "min_lr": 1e-4}

# Distillation (llm_core.distill): a small student from scratch, trained like a pretraining run (the defaults'
# 1500 steps at 3e-3) on the teacher's logits as well as the labels; the student shape is the quarter-size
# preset unless --student / model= says otherwise. kd_temperature / kd_alpha keep TrainConfig's defaults.
DISTILL_RECIPE: dict[str, Any] = {"model": "tiny-student"}

LM = "llm_core.training.objectives:language_modeling"
STAGES: dict[str, StageSpec] = {
    "pretrain": StageSpec(LM, "text", "pretrain"),
    "sft": StageSpec(LM, "instruction", "instructions", SFT_RECIPE, SFT_ADAPTER_LR),
    "dpo": StageSpec("llm_core.dpo.objective:make_dpo_objective", "preference", "preferences",
                     DPO_RECIPE, DPO_ADAPTER_LR),
    "rl": StageSpec("llm_core.rl.objective:make_grpo_objective", "prompts", "instructions", RL_RECIPE, RL_ADAPTER_LR),
    "distill": StageSpec("llm_core.distill.objective:make_distill_objective", "auto", "pretrain", DISTILL_RECIPE,
                         SFT_ADAPTER_LR, trainer="llm_core.distill.traces:distill_trainer"),
}


def build_trainer(config: Any, **trainer_kwargs: Any) -> Any:
    """The Trainer of a new run of `config`, built the way its stage needs (`StageSpec.trainer`): what the
    CLI, the TUI and scripts call, so every stage starts the same from each of them."""
    from .trainer import Trainer

    spec = STAGES[config.stage]
    if spec.trainer is None:
        return Trainer(config, **trainer_kwargs)
    module, _, name = spec.trainer.partition(":")
    return getattr(importlib.import_module(module), name)(config, **trainer_kwargs)


def dataset_kind(stage: str, data: str) -> DatasetKind:
    """The dataset kind a run of `stage` on `data` reads (resolves "auto"; see DatasetKind)."""
    spec = STAGES[stage]
    if spec.dataset != "auto":
        return spec.dataset
    first = data.split(",")[0].strip().lower()
    if data == "arith":
        return "text" if spec.experiment_file == "pretrain" else "instruction"
    return "text" if first.endswith((".txt", ".txt.gz")) else "instruction"


def stage_names() -> str:
    """"pretrain, sft or dpo": the registered stages, for error messages."""
    names = list(STAGES)
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
