"""Turning a `TrainConfig` into the objects a run needs: tokenizer, model, datasets, objective.

Kept apart from the loop so that `Trainer`, `load_checkpoint` and the UI build things the same way.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn

from ..errors import ConfigError, DataError
from ..model import GPT, GPTConfig
from ..tokenizer import Tokenizer, load_tokenizer
from ..data import PreferenceDataset
from .config import TrainConfig
from .objectives import Objective
from .stages import STAGES, dataset_kind

DEFAULT_EXPERIMENT = "arith"


def is_default_experiment(config: TrainConfig) -> bool:
    return config.data == DEFAULT_EXPERIMENT


def default_experiment_file(kind: str) -> Path:
    """A file of the embedded default experiment, with a hint when the data has not been generated."""
    from ..experiment import default_paths

    path = default_paths()[kind]
    if not path.exists():
        raise ConfigError(
            f"TrainConfig.data: the default experiment's {path.name} is missing in {path.parent} "
            "(the install is incomplete: reinstall llm-workbench, or write the files with "
            "`workbench data generate --out DIR` and train with --set data=DIR/<file>)"
        )
    return path


def data_paths(config: TrainConfig) -> list[Path]:
    """The training file(s): the default experiment's file for the stage, or the comma-separated paths."""
    if is_default_experiment(config):
        paths = [default_experiment_file(STAGES[config.stage].experiment_file)]
    else:
        paths = [Path(p.strip()) for p in config.data.split(",") if p.strip()]
    for p in paths:
        if not p.is_file():
            raise ConfigError(f"TrainConfig.data: {str(p)!r} is not a file")
    return paths


def build_tokenizer(config: TrainConfig, init_tokenizer: Tokenizer | None = None) -> Tokenizer:
    """`tokenizer="auto"`: the init checkpoint's tokenizer, else the default experiment's BPE, else GPT-2."""
    if config.tokenizer != "auto":
        return load_tokenizer(config.tokenizer)
    if init_tokenizer is not None:
        return init_tokenizer
    if is_default_experiment(config):
        return load_tokenizer(default_experiment_file("tokenizer"))
    return load_tokenizer("gpt2")


def model_config_for(config: TrainConfig, vocab_size: int) -> GPTConfig:
    """The GPTConfig of a fresh model: the preset, with non-zero overrides and the tokenizer's vocabulary."""
    overrides: dict[str, Any] = {"vocab_size": vocab_size, "dropout": config.dropout}
    for name in ("d_model", "n_layers", "n_heads", "context_length"):
        if getattr(config, name):
            overrides[name] = getattr(config, name)
    if config.moe_experts:
        overrides.update(
            moe_experts=config.moe_experts,
            moe_top_k=config.moe_top_k,
            moe_aux_weight=config.moe_aux_weight,
            moe_z_weight=config.moe_z_weight,
        )
    return GPTConfig.preset(config.model, **overrides)


def apply_adapters(model: GPT, config: TrainConfig, generator: torch.Generator | None = None) -> GPT:
    if config.adapter == "none":
        return model
    from ..adapters import add_adapters

    return add_adapters(
        model, kind=config.adapter, rank=config.lora_rank, alpha=config.lora_alpha,
        targets=config.adapter_targets, generator=generator,
    )


def build_model(config: TrainConfig, tokenizer: Tokenizer, init_model: GPT | None = None) -> GPT:
    """A fresh seeded model (or `init_model`, upcycled to MoE if asked), with adapters if configured."""
    generator = torch.Generator().manual_seed(config.seed)
    if init_model is not None:
        model = init_model
        if getattr(model, "adapter_config", None) is not None:
            from ..adapters import merge_adapters

            model = merge_adapters(model)  # start the new stage from the adapted weights
        if model.config.vocab_size < tokenizer.n_vocab:
            raise ConfigError(
                f"TrainConfig.init_from: the checkpoint's vocabulary ({model.config.vocab_size}) is smaller "
                f"than the tokenizer's ({tokenizer.n_vocab})"
            )
        if config.moe_experts and not model.config.moe_experts:
            from ..moe import upcycle_to_moe

            model = upcycle_to_moe(model, config.moe_experts, config.moe_top_k, generator=generator)
        # MoE loss weights are training settings: take this run's values.
        if model.config.moe_experts:
            model.config = dataclasses.replace(
                model.config, moe_aux_weight=config.moe_aux_weight, moe_z_weight=config.moe_z_weight
            )
    else:
        model = GPT(model_config_for(config, tokenizer.n_vocab))
        model.reset_parameters(generator=generator)
    if config.init_adapters:
        return load_init_adapters(model, config)
    return apply_adapters(model, config, generator)


def load_init_adapters(model: GPT, config: TrainConfig) -> GPT:
    """`model` with the PEFT adapters of `config.init_adapters`, trained on from there. Their dropout is
    TrainConfig's (none), as for adapters a resume rebuilds with `apply_adapters`."""
    from ..adapters import load_peft_adapters

    load_peft_adapters(model, config.init_adapters, dropout=0.0)
    kind = model.adapter_config.kind
    if kind != config.adapter:
        raise ConfigError(
            f"TrainConfig.adapter: {config.adapter!r}, but init_adapters {config.init_adapters} holds {kind} adapters",
            field="adapter",
        )
    return model


def with_adapter_settings(config: TrainConfig, model: GPT) -> TrainConfig:
    """`config` with the rank, alpha and targets of the adapters `init_adapters` gave `model`, so that the
    run's config.json rebuilds the same modules on resume."""
    adapters = model.adapter_config
    return config.with_overrides(lora_rank=adapters.rank, lora_alpha=adapters.alpha, adapter_targets=adapters.targets)


def model_from_configs(model_config: dict[str, Any], config: TrainConfig) -> GPT:
    """The model architecture recorded in a run / checkpoint (weights are loaded afterwards)."""
    try:
        gpt_config = GPTConfig(**model_config)
    except TypeError as exc:
        raise ConfigError(f"model_config: {exc}") from None
    return apply_adapters(GPT(gpt_config), config)


def build_datasets(
    config: TrainConfig, tokenizer: Tokenizer, context_length: int
) -> tuple[Any, Any | None, Callable]:
    """(train, val or None, collate_fn) for the stage, from `config.data` / `config.val_data`."""
    from .. import data as D

    paths = data_paths(config)
    val_paths = [Path(config.val_data)] if config.val_data else None
    if val_paths and not val_paths[0].is_file():
        raise ConfigError(f"TrainConfig.val_data: {config.val_data!r} is not a file")
    pad_id = tokenizer.eot_id
    kind = dataset_kind(config.stage, config.data)
    if kind == "text":
        stride = config.stride or context_length
        separator = config.separator
        if separator is None and is_default_experiment(config):
            from ..experiment.build import DOCUMENT_SEPARATOR

            separator = DOCUMENT_SEPARATOR
        train, val = D.TextDataset.from_files(
            paths, tokenizer, context_length=context_length, stride=stride, separator=separator,
            val_fraction=0.0 if val_paths else config.val_fraction, vocab_size=tokenizer.n_vocab,
        )
        if val_paths:
            val, _ = D.TextDataset.from_files(val_paths, tokenizer, context_length=context_length,
                                              stride=context_length, separator=separator, val_fraction=0.0)
        collate = lambda items: D.collate_lm(items, pad_id)  # noqa: E731
    elif kind == "instruction":
        train, val = _records(D.InstructionDataset, paths, val_paths, tokenizer, context_length, config)
        collate = lambda items: D.collate_lm(items, pad_id)  # noqa: E731
    elif kind == "prompts":
        train, val = _records(D.PromptDataset, paths, val_paths, tokenizer, context_length, config)
        collate = D.collate_prompts
    else:
        train, val = _records(D.PreferenceDataset, paths, val_paths, tokenizer, context_length, config)
        collate = lambda items: D.collate_preference(items, pad_id)  # noqa: E731
    if len(train) == 0:
        raise DataError(f"{paths[0]}: no training examples (file too short for context_length={context_length}?)")
    if val is not None and len(val) == 0:
        val = None
    return train, val, collate


def _records(cls: Any, paths: list[Path], val_paths: list[Path] | None, tokenizer: Tokenizer,
             context_length: int, config: TrainConfig) -> tuple[Any, Any | None]:
    """Instruction / preference examples (prompt + response cut to the context), split or with a val file."""
    if len(paths) != 1:
        raise ConfigError(f"TrainConfig.data: stage {config.stage!r} takes one JSON/JSONL file, got {len(paths)}")
    options: dict[str, Any] = {"max_length": context_length, "vocab_size": tokenizer.n_vocab}
    if cls is PreferenceDataset:
        options["drop_identical"] = config.drop_identical_pairs
    if cls.__name__ == "PromptDataset":
        options["prompt_mode"] = config.rl_prompt
    dataset = cls(paths[0], tokenizer, **options)
    if val_paths:
        return dataset, cls(val_paths[0], tokenizer, **options)
    if config.val_fraction == 0:
        return dataset, None
    return dataset.split(config.val_fraction, config.seed)


def build_objective(config: TrainConfig, model: nn.Module) -> Objective:
    """The stage's objective, from the registry (`stages.STAGES`)."""
    return STAGES[config.stage].make_objective(config, model)
