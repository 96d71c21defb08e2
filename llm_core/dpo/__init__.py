"""Direct Preference Optimization (Rafailov et al., 2023, arXiv:2305.18290).

- `loss`: `sequence_logprobs` (response tokens only) and `dpo_loss` (sigmoid / conservative / IPO)
- `objective`: `DPOObjective` / `make_dpo_objective` for the Trainer (frozen-copy or adapters-off
  reference, one concatenated forward), `evaluate_dpo`
- `monitor`: `CollapseMonitor` (collapse alarms; `DPOObjective.on_step` feeds it and emits the alarms)
- the recipe lives with the other stages' in `llm_core.training.stages` (re-exported here: `DPO_RECIPE`,
  `dpo_config(init_from, ...)`, a TrainConfig with DPO-sized defaults)
"""
from .loss import dpo_loss, sequence_logprobs
from .monitor import CollapseMonitor
from .objective import DPOObjective, evaluate_dpo, frozen_copy, make_dpo_objective
from ..training.recipes import dpo_config
from ..training.stages import DPO_RECIPE

__all__ = [
    "dpo_loss",
    "sequence_logprobs",
    "DPOObjective",
    "make_dpo_objective",
    "evaluate_dpo",
    "frozen_copy",
    "CollapseMonitor",
    "DPO_RECIPE",
    "dpo_config",
]
