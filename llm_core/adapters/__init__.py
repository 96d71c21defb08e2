"""Parameter-efficient finetuning: LoRA (Hu et al., 2021) and DoRA (Liu et al., 2024) adapters.

- `layers`: `LoRALinear`, `DoRALinear` (the math, merge/unmerge of one layer)
- `inject`: `add_adapters`, `merge_adapters`, merged mode, `adapters_disabled`, `adapter_summary`
- `io`: `save_adapters` / `load_adapters` (adapter-only safetensors + JSON, checked against the base hash)
"""
from .inject import (
    TARGET_GROUPS,
    AdapterConfig,
    AdapterSummary,
    adapter_layers,
    adapter_summary,
    adapters_disabled,
    add_adapters,
    merge_adapters,
    resolve_targets,
    set_merged,
    unmerge_adapters,
    unmerged,
)
from .io import adapter_state_dict, base_model_hash, load_adapters, save_adapters
from .layers import DoRALinear, LoRALinear

__all__ = [
    "LoRALinear",
    "DoRALinear",
    "AdapterConfig",
    "AdapterSummary",
    "TARGET_GROUPS",
    "add_adapters",
    "merge_adapters",
    "unmerge_adapters",
    "set_merged",
    "unmerged",
    "adapters_disabled",
    "adapter_summary",
    "adapter_layers",
    "resolve_targets",
    "adapter_state_dict",
    "base_model_hash",
    "save_adapters",
    "load_adapters",
]
