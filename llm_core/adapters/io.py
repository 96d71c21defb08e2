"""Saving and loading adapters alone, on top of a base model.

An adapter file is tiny next to its base model (a few MB for gpt2-small at rank 8), so it is saved on its
own: `adapter.safetensors` holds only the adapter tensors (`blocks.0.attn.qkv.A`, `.B`, DoRA's `.m`) and
`adapter.json` the adapter config, the tensor shapes and a fingerprint of the base weights. Loading
refuses an adapter trained on a different base (hash) or model shape, because LoRA/DoRA updates are only
meaningful relative to the exact weights they were trained against.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from ..config import from_dict, to_dict
from ..errors import CheckpointError, ConfigError
from ..io import read_json_object
from .inject import AdapterConfig, add_adapters, adapter_layers, unmerged

FORMAT = "llm-workbench-adapter"
WEIGHTS_FILE = "adapter.safetensors"
CONFIG_FILE = "adapter.json"


def _paths(path: str | Path) -> tuple[Path, Path]:
    """`x.safetensors` -> (x.safetensors, x.json); anything else is a folder holding the two files."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return path, path.with_suffix(".json")
    return path / WEIGHTS_FILE, path / CONFIG_FILE


def _adapter_names(model: nn.Module) -> set[str]:
    return {f"{name}.{key}" for name, layer in adapter_layers(model).items() for key in layer.adapter_parameters()}


def base_model_hash(model: nn.Module) -> str:
    """sha256 over the base (non-adapter) weights: names, dtypes, shapes and bytes, in sorted name order.

    Merged adapters are unmerged for the duration, so the hash is the same in both modes and before/after
    adding adapters. Tied weights appear under each of their names (deterministic either way).
    """
    digest = hashlib.sha256()
    with unmerged(model):
        skip = _adapter_names(model)
        state = model.state_dict()
        for name in sorted(state):
            if name in skip:
                continue
            tensor = state[name].detach().to("cpu").contiguous()
            digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the adapter tensors, by full name."""
    return {
        f"{name}.{key}": p.detach()
        for name, layer in adapter_layers(model).items()
        for key, p in layer.adapter_parameters().items()
    }


def save_adapters(model: nn.Module, path: str | Path) -> Path:
    """Write the adapter tensors + JSON (config, base hash, shapes); returns the weights file path."""
    config = getattr(model, "adapter_config", None)
    if config is None:
        raise ConfigError("save_adapters: the model has no adapters (add_adapters first)")
    weights_path, json_path = _paths(path)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.to("cpu").contiguous() for k, v in adapter_state_dict(model).items()}
    save_file(tensors, str(weights_path))
    meta = {
        "format": FORMAT,
        "version": 1,
        "config": to_dict(config),
        "base_model_hash": base_model_hash(model),
        "shapes": {k: list(v.shape) for k, v in tensors.items()},
    }
    json_path.write_text(json.dumps(meta, indent=2) + "\n")
    return weights_path


def load_adapters(model: nn.Module, path: str | Path, generator: torch.Generator | None = None) -> nn.Module:
    """Load adapters saved by `save_adapters` into `model` (adding them first if it has none).

    Raises `CheckpointError` (one line) when the files are missing or corrupt, when the base weights differ
    from the ones the adapter was trained on, or when names/shapes/config do not match.
    """
    weights_path, json_path = _paths(path)
    for p in (weights_path, json_path):
        if not p.is_file():
            raise CheckpointError(f"{p}: adapter file not found")
    meta = read_json_object(json_path, CheckpointError, expected="a valid adapter config",
                            invalid="not a valid adapter config")
    try:
        config = from_dict(AdapterConfig, meta["config"], where=str(json_path))
        expected_hash, shapes = meta["base_model_hash"], meta["shapes"]
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{json_path}: not a valid adapter config ({exc})") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{json_path}: format is {meta.get('format')!r}, expected {FORMAT!r}")

    actual_hash = base_model_hash(model)
    if actual_hash != expected_hash:
        raise CheckpointError(
            f"{json_path}: adapter was trained on base model {expected_hash[:12]}, "
            f"this model is {actual_hash[:12]}"
        )
    current = getattr(model, "adapter_config", None)
    if current is None:
        try:
            add_adapters(model, generator=generator, **to_dict(config))
        except ConfigError as exc:
            raise CheckpointError(f"{json_path}: cannot rebuild adapters on this model ({exc})") from None
    elif to_dict(current) != to_dict(config):
        raise CheckpointError(
            f"{json_path}: adapter config {to_dict(config)} differs from the model's {to_dict(current)}"
        )

    try:
        tensors = load_file(str(weights_path))
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(f"{weights_path}: cannot read safetensors ({exc})") from None
    params = {
        f"{name}.{key}": p
        for name, layer in adapter_layers(model).items()
        for key, p in layer.adapter_parameters().items()
    }
    if set(tensors) != set(params) or set(shapes) != set(params):
        missing = sorted(set(params) - set(tensors))
        extra = sorted(set(tensors) - set(params))
        raise CheckpointError(
            f"{weights_path}: adapter tensors do not match the model "
            f"(missing {missing[:3]}, unexpected {extra[:3]})"
        )
    for name, param in params.items():
        if list(tensors[name].shape) != list(param.shape) or list(shapes[name]) != list(param.shape):
            raise CheckpointError(
                f"{weights_path}: {name} has shape {list(tensors[name].shape)}, "
                f"the model expects {list(param.shape)}"
            )
    with unmerged(model), torch.no_grad():
        for name, param in params.items():
            param.copy_(tensors[name])
    return model
