"""What a Trainer starts from: its model, tokenizer and data, either built from a `TrainConfig` (a fresh run,
or one starting `init_from` a checkpoint) or read back from a run folder to resume it exactly."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..data import collate_lm
from ..errors import CheckpointError, ConfigError
from ..io import read_json_object
from ..model import GPT
from ..tokenizer import Tokenizer, load_tokenizer
from . import checkpoint as ckpt
from .builders import build_datasets, build_model, build_tokenizer, model_from_configs
from .config import MODEL_CONFIG_KEY, TrainConfig
from .loading import TOKENIZER_DIR, load_checkpoint
from .runs import CONFIG_FILE


@dataclass
class RunParts:
    model: GPT
    tokenizer: Tokenizer | None  # None only for a given model + data: then no samples, no tokenizer/ folder
    train_data: Any
    val_data: Any
    collate_fn: Callable


def build_run_parts(config: TrainConfig, model: GPT | None = None, tokenizer: Tokenizer | None = None,
                    train_data: Any = None, val_data: Any = None, collate_fn: Callable | None = None) -> RunParts:
    """The given parts, and the missing ones built from `config` (from `init_from` when it is set)."""
    init = load_checkpoint(config.init_from) if model is None and config.init_from else None
    if tokenizer is None and (model is None or train_data is None):  # needed to build either
        tokenizer = build_tokenizer(config, init.tokenizer if init else None)
    if model is None:
        model = build_model(config, tokenizer, init.model if init else None)
    if train_data is None:
        train_data, built_val, built_collate = build_datasets(config, tokenizer, model.config.context_length)
        val_data = val_data if val_data is not None else built_val
        collate_fn = collate_fn or built_collate
    if collate_fn is None:
        pad_id = tokenizer.eot_id if tokenizer is not None else 0
        collate_fn = lambda items: collate_lm(items, pad_id)  # noqa: E731
    return RunParts(model, tokenizer, train_data, val_data, collate_fn)


def load_for_resume(run_dir: Path, **overrides: Any) -> tuple[TrainConfig, GPT, Tokenizer, Path]:
    """(config with `overrides`, model with the latest valid checkpoint's weights, tokenizer, that step dir)."""
    config_file = run_dir / CONFIG_FILE
    config = TrainConfig.from_file(config_file)
    if overrides:
        config = config.with_overrides(**overrides)
    model_config = read_json_object(config_file, ConfigError).get(MODEL_CONFIG_KEY)
    if not isinstance(model_config, dict):
        raise ConfigError(f"{config_file}: no {MODEL_CONFIG_KEY}")
    step_dir = ckpt.latest_checkpoint(run_dir)
    if step_dir is None:
        raise CheckpointError(f"{run_dir}: no valid checkpoint to resume from")
    tokenizer = load_tokenizer(run_dir / TOKENIZER_DIR)
    model = model_from_configs(model_config, config)
    ckpt.load_weights(model, step_dir)
    return config, model, tokenizer, step_dir
