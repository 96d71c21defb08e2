"""What a Trainer starts from: its model, tokenizer and data, either built from a `TrainConfig` (a fresh run,
or one starting `init_from` a checkpoint) or read back from a run folder to resume it exactly.

Resuming never hides a problem and never deletes: a newer checkpoint that fails verification is named in a
one-line warning and moved aside (so its step is written afresh), checkpoints newer than a chosen older one
are moved aside too (they belong to the abandoned branch), and a run that died before its first
checkpoint starts again from step 0 with its saved config."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..data import collate_lm
from ..errors import CheckpointError, ConfigError
from ..io import read_json_object
from ..model import GPT
from ..tokenizer import Tokenizer, load_tokenizer
from . import checkpoint as ckpt
from .builders import build_datasets, build_model, build_tokenizer, model_from_configs, with_adapter_settings
from .config import MODEL_CONFIG_KEY, TrainConfig
from .loading import TOKENIZER_DIR, load_checkpoint
from .runs import CONFIG_FILE


@dataclass
class RunParts:
    config: TrainConfig  # as given, or with the adapter settings that `init_adapters` loaded
    model: GPT
    tokenizer: Tokenizer | None  # None only for a given model + data: then no samples, no tokenizer/ folder
    train_data: Any
    val_data: Any
    collate_fn: Callable


def build_run_parts(config: TrainConfig, model: GPT | None = None, tokenizer: Tokenizer | None = None,
                    train_data: Any = None, val_data: Any = None, collate_fn: Callable | None = None,
                    check_model: Callable[[GPT], None] | None = None) -> RunParts:
    """The given parts, and the missing ones built from `config` (from `init_from` when it is set).
    `check_model(model)` runs before any data is read (the memory check: refuse early, cheaply)."""
    init = load_checkpoint(config.init_from) if model is None and config.init_from else None
    if tokenizer is None and (model is None or train_data is None):  # needed to build either
        tokenizer = build_tokenizer(config, init.tokenizer if init else None)
    if model is None:
        model = build_model(config, tokenizer, init.model if init else None)
        if config.init_adapters:
            config = with_adapter_settings(config, model)
    if check_model is not None:
        check_model(model)
    if train_data is None:
        train_data, built_val, built_collate = build_datasets(config, tokenizer, model.config.context_length)
        val_data = val_data if val_data is not None else built_val
        collate_fn = collate_fn or built_collate
    if collate_fn is None:
        pad_id = tokenizer.eot_id if tokenizer is not None else 0
        collate_fn = lambda items: collate_lm(items, pad_id)  # noqa: E731
    return RunParts(config, model, tokenizer, train_data, val_data, collate_fn)


def resume_target(path: str | Path) -> tuple[Path, Path | None]:
    """(run folder, the chosen step folder or None for the latest) of `--resume RUN` or
    `--resume RUN/checkpoints/step-N`. Refuses a path that is neither, before anything is created."""
    path = Path(path)
    if path.parent.name == ckpt.CHECKPOINTS and path.name.startswith("step-"):
        if not path.is_dir():
            raise CheckpointError(f"{path}: no such checkpoint")
        return path.parent.parent, path
    if not (path / CONFIG_FILE).is_file():
        what = "no such run folder" if not path.exists() else f"not a run folder ({CONFIG_FILE}: file not found)"
        raise ConfigError(f"{path}: {what}")
    return path, None


@dataclass
class ResumePlan:
    config: TrainConfig
    model: GPT | None  # None: no checkpoint yet, build it afresh from the config (step 0)
    tokenizer: Tokenizer | None
    step_dir: Path | None  # the checkpoint to restore, None for step 0
    notices: list[str] = field(default_factory=list)


def load_for_resume(run_dir: Path, chosen: Path | None = None, **overrides: Any) -> ResumePlan:
    """The config (with `overrides`), model, tokenizer and checkpoint to resume `run_dir` from: `chosen`, or
    the newest that verifies. Call it holding the run's lock: it moves folders aside (see the module doc)."""
    config_file = run_dir / CONFIG_FILE
    config = TrainConfig.from_file(config_file)
    if overrides:
        config = config.with_overrides(**overrides)
    model_config = read_json_object(config_file, ConfigError).get(MODEL_CONFIG_KEY)
    if not isinstance(model_config, dict):
        raise ConfigError(f"{config_file}: no {MODEL_CONFIG_KEY}")
    notices: list[str] = []
    if chosen is not None:
        ckpt.read_manifest(chosen)  # the one asked for must verify: one line naming the bad file
        step_dir = chosen
        for newer in ckpt.list_checkpoints(run_dir):
            if ckpt.checkpoint_step(newer) > ckpt.checkpoint_step(chosen):
                moved = ckpt.set_aside(newer, ckpt.SUPERSEDED_PREFIX)
                notices.append(f"{newer.name} is newer than {chosen.name}: moved to {moved.name}, not deleted")
    else:
        step_dir, skipped = ckpt.scan_checkpoints(run_dir)
        if step_dir is None and skipped:
            raise CheckpointError(f"{run_dir}: no valid checkpoint to resume from ({len(skipped)} failed "
                                  f"verification, e.g. {skipped[0][1]})")
        for bad, why in skipped:
            moved = ckpt.quarantine(bad)
            target = f"resuming from {step_dir.name}" if step_dir is not None else "starting from step 0"
            notices.append(f"skipped checkpoint {bad.name} ({why}); moved it to {moved.name}, {target}")
    if step_dir is None:  # killed before its first checkpoint: the saved config, from step 0
        tokenizer = load_tokenizer(run_dir / TOKENIZER_DIR) if (run_dir / TOKENIZER_DIR).is_dir() else None
        return ResumePlan(config, None, tokenizer, None, notices)
    tokenizer = load_tokenizer(run_dir / TOKENIZER_DIR)
    model = model_from_configs(model_config, config)
    ckpt.load_weights(model, step_dir)
    return ResumePlan(config, model, tokenizer, step_dir, notices)
