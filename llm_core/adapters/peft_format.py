"""LoRA / DoRA adapters in the PEFT format: what Hugging Face `peft` writes and `PeftModel.from_pretrained` reads.

A PEFT adapter folder holds two files (peft's `PeftModel.save_pretrained` / `LoraConfig`):
- `adapter_config.json`: `peft_type` "LORA", `r`, `lora_alpha`, `target_modules`, `use_dora`, `fan_in_fan_out`,
  `lora_dropout`, `bias`, `task_type`, `base_model_name_or_path`, ...
- `adapter_model.safetensors`: per adapted module of transformers' `GPT2LMHeadModel`, under the
  `base_model.model.` prefix (e.g. `base_model.model.transformer.h.0.attn.c_attn.`):
  `lora_A.weight` (r, in), `lora_B.weight` (out, r) and, for DoRA, `lora_magnitude_vector` (out,).

How our layers (`layers.py`) map onto it:
- names: our `blocks.{i}.attn.qkv` is GPT-2's `transformer.h.{i}.attn.c_attn`, and so on (`hf._name_map`).
- layout: PEFT's `lora_A` / `lora_B` are `nn.Linear`s, so their weights are (r, in) / (out, r), the transposes
  of our A (in, r) / B (r, out). GPT-2's Conv1D stores its *base* weight as (in, out); PEFT handles that with
  `fan_in_fan_out=True` (which it forces for Conv1D anyway), and the adapter tensors are the same either way.
- scaling: PEFT multiplies by `lora_alpha / r` (or `lora_alpha / sqrt(r)` with `use_rslora`); ours is `scale`,
  so `lora_alpha = scale * r` on export (equal to `alpha` under our default `rank_scaled=True`), and an rsLoRA
  adapter is imported with our `alpha = lora_alpha * sqrt(r)`.
- DoRA: both normalise the direction `W0 + scale * (B A)` per output feature (peft's `get_weight_norm` transposes
  a fan_in_fan_out weight back to (out, in) and takes the norm over dim 1), both detach the norm, so the
  magnitude vector is our `m` unchanged.
A test loads our export with the real `peft` on a transformers GPT-2 and compares logits.

The safetensors metadata also records `llm_workbench.base_sha256`, a fingerprint of the base weights of the
adapted layers: loading refuses an adapter we exported onto different base weights (a LoRA update only means
something relative to the weights it was trained on). Adapters written by peft itself have no fingerprint.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import save_file

from ..config import to_dict
from ..errors import CheckpointError, ConfigError
from ..io import read_json_object, replace_atomic, write_atomic
from .inject import TARGET_GROUPS, AdapterConfig, adapter_layers, add_adapters, resolve_targets, unmerged
from .layers import LoRALinear

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
PREFIX = "base_model.model."
FINGERPRINT_KEY = "llm_workbench.base_sha256"
# PEFT options that change what the adapter computes and that our layers do not implement: each must be
# unset (null, false, empty) in an imported config.
_UNSUPPORTED = ("modules_to_save", "rank_pattern", "alpha_pattern", "layers_to_transform", "layer_replication",
                "target_parameters", "trainable_token_indices", "lora_bias", "use_qalora", "use_bdlora",
                "alora_invocation_tokens", "arrow_config", "megatron_config")
# Tensors peft saves besides the adapters when a target shares its weight with the embedding (a tied lm_head):
# copies of base weights, which the base model supplies.
_BASE_COPY_SUFFIX = ".base_layer.weight"


def _hf_modules(model: nn.Module) -> dict[str, str]:
    """Our Linear module name -> its GPT2LMHeadModel module name, for every layer PEFT could adapt."""
    from ..hf import _name_map

    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "n_layers"):
        raise ConfigError(f"PEFT adapters: {type(model).__name__} is not a GPT model")
    if config.moe_experts:
        raise ConfigError(
            f"PEFT adapters: a Mixture-of-Experts model (moe_experts={config.moe_experts}) has no GPT-2 module names"
        )
    names = {ours.removesuffix(".weight"): "transformer." + hf.removesuffix(".weight")
             for ours, (hf, transposed) in _name_map(config).items() if transposed}  # the four Conv1D per block
    names["lm_head"] = "lm_head"
    return names


def base_fingerprint(model: nn.Module, names: list[str]) -> str:
    """sha256 over the base weights W0 of the Linear layers `names` (in this order), whether or not they have
    adapters yet, merged or not: the same number before and after `add_adapters`."""
    modules = dict(model.named_modules())
    digest = hashlib.sha256()
    for name in names:
        module = modules[name]
        weight = module.base_weight() if isinstance(module, LoRALinear) else module.weight
        weight = weight.detach().to("cpu", torch.float32).contiguous()  # (out, in)
        digest.update(f"{name}|{tuple(weight.shape)}\n".encode())
        digest.update(weight.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _peft_targets(adapted: set[str], candidates: set[str]) -> list[str]:
    """The shortest `target_modules` list (module-name suffixes, peft's list matching) selecting exactly
    `adapted` among `candidates`: ["c_attn", "c_proj", "c_fc"] for attn+mlp, full names as the fallback."""
    for depth in (1, 2):
        suffixes = {".".join(name.split(".")[-depth:]) for name in adapted}
        if {c for c in candidates if _peft_matches(list(suffixes), c)} == adapted:
            return sorted(suffixes)
    return sorted(adapted)


def _peft_matches(targets: str | list[str], key: str) -> bool:
    """peft's `check_target_module_exists` rule: a string is a full regex match, a list matches by suffix."""
    if isinstance(targets, str):
        return re.fullmatch(targets, key) is not None
    return key in targets or any(key.endswith(f".{t}") for t in targets)


def _our_targets(model: nn.Module, names: list[str]) -> str:
    """`AdapterConfig.targets` selecting exactly `names`: group names when they do ("attn,mlp"), else the names."""
    wanted = set(names)
    for size in range(1, len(TARGET_GROUPS) + 1):
        for groups in itertools.combinations(TARGET_GROUPS, size):
            try:
                if set(resolve_targets(model, ",".join(groups))) == wanted:
                    return ",".join(groups)
            except ConfigError:  # a group this model lacks
                continue
    return ",".join(names)


def save_peft_adapters(model: nn.Module, folder: str | Path, base_model_name_or_path: str | None = None) -> Path:
    """Write `model`'s LoRA/DoRA adapters as a PEFT folder (adapter_config.json + adapter_model.safetensors)
    that `peft.PeftModel.from_pretrained(GPT2LMHeadModel.from_pretrained(base), folder)` loads; return it.
    `base_model_name_or_path` is recorded for peft's AutoPeftModel (e.g. the folder of `GPT.save_hf`)."""
    config: AdapterConfig | None = getattr(model, "adapter_config", None)
    layers = adapter_layers(model)
    if config is None or not layers:
        raise ConfigError("save_peft_adapters: the model has no adapters (add_adapters first)")
    hf_names = _hf_modules(model)
    unknown = sorted(set(layers) - set(hf_names))
    if unknown:
        raise ConfigError(f"save_peft_adapters: adapter layer {unknown[0]!r} has no GPT-2 equivalent")
    names = sorted(layers, key=lambda n: hf_names[n])
    tensors: dict[str, torch.Tensor] = {}
    for name in names:
        layer, key = layers[name], PREFIX + hf_names[name]
        # safetensors refuses views and shared storage: every tensor gets its own contiguous copy.
        tensors[f"{key}.lora_A.weight"] = layer.A.detach().T.to("cpu").contiguous().clone()  # (r, in)
        tensors[f"{key}.lora_B.weight"] = layer.B.detach().T.to("cpu").contiguous().clone()  # (out, r)
        if config.kind == "dora":
            tensors[f"{key}.lora_magnitude_vector"] = layer.m.detach().to("cpu").contiguous().clone()  # (out,)
    lora_alpha = layers[names[0]].scale * config.rank  # peft scales by lora_alpha / r
    peft_config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model_name_or_path,
        "r": config.rank,
        "lora_alpha": int(lora_alpha) if float(lora_alpha).is_integer() else lora_alpha,
        "lora_dropout": config.dropout,
        "target_modules": _peft_targets({hf_names[n] for n in names}, set(hf_names.values())),
        "use_dora": config.kind == "dora",
        "use_rslora": False,
        "fan_in_fan_out": True,  # GPT-2's Conv1D stores (in, out) weights
        "bias": "none",
        "init_lora_weights": True,
        "inference_mode": True,
    }
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    metadata = {"format": "pt", FINGERPRINT_KEY: base_fingerprint(model, names)}
    replace_atomic(folder / WEIGHTS_FILE, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
    text = json.dumps(peft_config, indent=2) + "\n"
    write_atomic(folder / CONFIG_FILE, text)
    return folder


def _read_config(path: Path) -> dict[str, Any]:
    """adapter_config.json, checked for what our LoRA/DoRA layers can compute (one-line errors naming the field)."""
    raw = read_json_object(path, CheckpointError)

    def fail(key: str, why: str) -> None:
        raise CheckpointError(f"{path}: {key} {raw.get(key)!r} {why}")

    if raw.get("peft_type") != "LORA":
        fail("peft_type", "is not supported (only LORA, which covers DoRA with use_dora)")
    if raw.get("task_type") not in (None, "CAUSAL_LM"):
        fail("task_type", "is not supported (only CAUSAL_LM)")
    r = raw.get("r")
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        fail("r", "must be a positive integer")
    alpha = raw.get("lora_alpha", 8)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
        fail("lora_alpha", "must be a number > 0")
    dropout = raw.get("lora_dropout", 0.0)
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        fail("lora_dropout", "must be in [0, 1)")
    for key in ("use_dora", "use_rslora", "fan_in_fan_out"):
        if not isinstance(raw.get(key, False), bool):
            fail(key, "must be true or false")
    if raw.get("bias", "none") != "none":
        fail("bias", "is not supported (only 'none': our adapters train no biases)")
    for key in _UNSUPPORTED:
        if raw.get(key):
            fail(key, "is not supported by llm_core's LoRA/DoRA layers (must be unset)")
    targets = raw.get("target_modules")
    if not (isinstance(targets, str) and targets) and not (
            isinstance(targets, list) and targets and all(isinstance(t, str) for t in targets)):
        fail("target_modules", "must be a non-empty list of module names or a regex string")
    exclude = raw.get("exclude_modules")
    if exclude is not None and not isinstance(exclude, (str, list)):
        fail("exclude_modules", "must be a list of module names or a regex string")
    return raw


def _read_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found")
    try:
        with safe_open(str(path), framework="pt") as handle:
            return {k: handle.get_tensor(k) for k in handle.keys()}, handle.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None


def load_peft_adapters(model: nn.Module, folder: str | Path, dropout: float | None = None) -> nn.Module:
    """Load a PEFT LoRA/DoRA adapter folder onto `model` (a `GPT` holding the base weights); return `model`.

    Adds the adapters first when the model has none (rank, scale, DoRA and the adapted layers from the
    folder; `dropout` overrides `lora_dropout`); a model that already has adapters must have the same ones,
    and gets their weights replaced. Raises `CheckpointError` (one line naming the file and the field or tensor)
    for missing files, configs our layers cannot compute, targets or shapes that do not fit this model, and
    an adapter exported from other base weights.
    """
    folder = Path(folder)
    config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    raw = _read_config(config_path)
    tensors, metadata = _read_tensors(weights_path)
    try:
        hf_names = _hf_modules(model)
    except ConfigError as exc:
        raise CheckpointError(f"{folder}: {exc}") from None
    ours_of = {hf: ours for ours, hf in hf_names.items()}
    rank, use_dora = raw["r"], raw.get("use_dora", False)

    # --- which modules: the tensors name them, target_modules must select exactly those -----------------
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        if key.endswith(_BASE_COPY_SUFFIX):
            continue
        match = re.fullmatch(re.escape(PREFIX) + r"(.+)\.(lora_A\.weight|lora_B\.weight|lora_magnitude_vector)", key)
        if match is None or match.group(1) not in ours_of:
            raise CheckpointError(f"{weights_path}: unexpected tensor {key!r} for LoRA/DoRA on a GPT-2 model")
        parts.setdefault(match.group(1), {})[match.group(2)] = tensor
    if not parts:
        raise CheckpointError(f"{weights_path}: holds no LoRA tensors")
    exclude = raw.get("exclude_modules") or []
    selected = {hf for hf in ours_of if _peft_matches(raw["target_modules"], hf)
                and not (exclude and _peft_matches(exclude, hf))}
    if selected != set(parts):
        diff = sorted(selected ^ set(parts))[0]
        where = "selects" if diff in selected else "does not select"
        raise CheckpointError(
            f"{config_path}: target_modules {raw['target_modules']!r} {where} {diff!r}, which "
            f"{WEIGHTS_FILE} {'lacks' if diff in selected else 'holds'} ({len(selected)} selected, {len(parts)} stored)"
        )

    # --- shapes, against r and the model -----------------------------------------------------------------
    modules = dict(model.named_modules())
    names = sorted((ours_of[hf] for hf in parts), key=lambda n: hf_names[n])
    for name in names:
        hf, layer = hf_names[name], modules[name]
        want = {"lora_A.weight": (rank, layer.in_features), "lora_B.weight": (layer.out_features, rank)}
        if use_dora:
            want["lora_magnitude_vector"] = (layer.out_features,)
        key = PREFIX + hf
        for part in sorted(set(want) | set(parts[hf])):
            if part not in want:
                raise CheckpointError(f"{weights_path}: {key}.{part} is a DoRA magnitude, but {CONFIG_FILE} "
                                      f"has use_dora false")
            if part not in parts[hf]:
                why = "use_dora is true" if part == "lora_magnitude_vector" else "every adapted module has A and B"
                raise CheckpointError(f"{weights_path}: {key}.{part} is missing ({why})")
            got = tuple(parts[hf][part].shape)
            if got != want[part]:
                raise CheckpointError(
                    f"{weights_path}: {key}.{part} has shape {list(got)}, expected {list(want[part])} "
                    f"(r={rank} from {CONFIG_FILE}, {layer.in_features} in / {layer.out_features} out in the model)"
                )

    # --- the adapter settings, in our terms ------------------------------------------------------------
    scale = raw.get("lora_alpha", 8) / (math.sqrt(rank) if raw.get("use_rslora", False) else rank)
    wanted = AdapterConfig(kind="dora" if use_dora else "lora", rank=rank, alpha=scale * rank,
                           targets=_our_targets(model, names),
                           dropout=float(raw.get("lora_dropout", 0.0) if dropout is None else dropout))
    expected = metadata.get(FINGERPRINT_KEY)
    if expected is not None and expected != base_fingerprint(model, names):
        raise CheckpointError(
            f"{weights_path}: {FINGERPRINT_KEY} says the adapters were exported from other base weights "
            f"than this model's ({expected[:12]})"
        )
    current: AdapterConfig | None = getattr(model, "adapter_config", None)
    if current is None:
        add_adapters(model, **to_dict(wanted))
    else:
        have = adapter_layers(model)
        same = (current.kind, current.rank, sorted(have)) == (wanted.kind, rank, sorted(names))
        if not same or not math.isclose(next(iter(have.values())).scale, scale, rel_tol=1e-6):
            raise CheckpointError(
                f"{config_path}: adapters ({wanted.kind}, r={rank}, scale {scale:g}, {len(names)} modules) "
                f"differ from the model's ({current.kind}, r={current.rank}, {len(have)} modules)"
            )
    layers = adapter_layers(model)
    with unmerged(model), torch.no_grad():
        for name in names:
            layer, got = layers[name], parts[hf_names[name]]
            layer.A.copy_(got["lora_A.weight"].T)  # (in, r)
            layer.B.copy_(got["lora_B.weight"].T)  # (r, out)
            if use_dora:
                layer.m.copy_(got["lora_magnitude_vector"])
    return model
