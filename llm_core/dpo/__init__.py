"""Direct Preference Optimization (Rafailov et al., 2023, arXiv:2305.18290).

- `loss`: `sequence_logprobs` (response tokens only) and `dpo_loss` (sigmoid / conservative / IPO)
- `objective`: `DPOObjective` / `make_dpo_objective` for the Trainer (frozen-copy or adapters-off
  reference, one concatenated forward), `evaluate_dpo`
- `recipe`: `DPO_RECIPE`, `dpo_config(init_from, ...)` (a TrainConfig with DPO-sized defaults)
- `monitor`: `CollapseMonitor` (collapse alarms) and `attach_collapse_alarms(trainer)`
"""
from .loss import dpo_loss, sequence_logprobs
from .monitor import CollapseMonitor, attach_collapse_alarms
from .objective import DPOObjective, evaluate_dpo, frozen_copy, make_dpo_objective
from .recipe import DPO_RECIPE, dpo_config

__all__ = [
    "dpo_loss",
    "sequence_logprobs",
    "DPOObjective",
    "make_dpo_objective",
    "evaluate_dpo",
    "frozen_copy",
    "CollapseMonitor",
    "attach_collapse_alarms",
    "DPO_RECIPE",
    "dpo_config",
]
