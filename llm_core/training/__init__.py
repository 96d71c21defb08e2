"""Training: config, the stage registry, learning-rate schedule, objectives, the Trainer loop, checkpoints,
run folders and their events."""
from .checkpoint import latest_checkpoint
from .config import TrainConfig
from .loading import LoadedCheckpoint, load_checkpoint
from .events import RunHistory
from .objectives import LanguageModelingObjective, Objective
from .recipes import dpo_config, stage_config, stage_recipe
from .runs import RunInfo, list_runs, read_metrics
from .schedule import lr_at, planned_schedule
from .stages import STAGES, StageSpec, build_trainer
from .trainer import Trainer

__all__ = [
    "LanguageModelingObjective",
    "Objective",
    "RunHistory",
    "STAGES", "build_trainer",
    "StageSpec",
    "dpo_config",
    "LoadedCheckpoint",
    "RunInfo",
    "TrainConfig",
    "Trainer",
    "latest_checkpoint",
    "list_runs",
    "load_checkpoint",
    "lr_at",
    "planned_schedule",
    "read_metrics",
    "stage_config",
    "stage_recipe",
]
