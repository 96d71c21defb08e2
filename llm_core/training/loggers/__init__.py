"""Experiment trackers: the run's step and eval scalars, the ones metrics.jsonl holds, also sent to a CSV
file, TensorBoard or Weights & Biases (`TrainConfig(loggers=("csv", "tensorboard"))`,
`--set loggers=csv,tensorboard,wandb`).

- `base`: the `Logger` protocol, `RunStart`, and `scalars` (what "the same scalars" means)
- `registry`: `LOGGERS` by name, `register_logger`, `build_loggers` and the `LoggerSet` the Trainer feeds
- `csv_logger`, `tensorboard_logger`, `wandb_logger`: the three built-in trackers
"""
from .base import SCALAR_EVENTS, Logger, RunStart, scalars
from .registry import (LOGGERS, LoggerSet, LoggerSpec, build_loggers, check_logger_names, register_logger,
                       require_packages)

__all__ = ["LOGGERS", "Logger", "LoggerSet", "LoggerSpec", "RunStart", "SCALAR_EVENTS", "build_loggers",
           "check_logger_names", "register_logger", "require_packages", "scalars"]
