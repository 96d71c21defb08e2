"""Training: config, learning-rate schedule, objectives, the Trainer loop, checkpoints, run folders."""
from .checkpoint import latest_checkpoint
from .config import TrainConfig
from .loading import LoadedCheckpoint, load_checkpoint
from .objectives import LanguageModelingObjective
from .recipes import stage_config, stage_recipe
from .runs import RunInfo, list_runs, read_metrics
from .schedule import lr_at, planned_schedule
from .trainer import Trainer

__all__ = [
    "LanguageModelingObjective",
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
