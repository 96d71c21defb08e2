"""Parameter-efficient finetuning: LoRA (Hu et al., 2021) and DoRA (Liu et al., 2024) adapters.

- `layers`: `LoRALinear`, `DoRALinear` (the math, merge/unmerge of one layer)
- `inject`: `add_adapters`, `merge_adapters`, `remove_adapters`, merged mode, `adapters_disabled`, `adapter_summary`
- `peft_format`: `save_peft_adapters` / `load_peft_adapters` (the Hugging Face PEFT adapter folder that
  `peft.PeftModel.from_pretrained` reads, checked against a fingerprint of the base weights)
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
    remove_adapters,
    resolve_targets,
    set_merged,
    unmerge_adapters,
    unmerged,
)
from .layers import DoRALinear, LoRALinear
from .peft_format import base_fingerprint, load_peft_adapters, save_peft_adapters

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
    "remove_adapters",
    "base_fingerprint",
    "save_peft_adapters",
    "load_peft_adapters",
]
