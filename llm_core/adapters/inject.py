"""Putting adapters into a model: choose layers by name, freeze the rest, merge, disable, summarise.

`add_adapters(model, kind="lora", rank=8, alpha=16, targets="attn,mlp")` replaces the chosen `nn.Linear`
modules in place by `LoRALinear` / `DoRALinear` wrappers and freezes every other parameter, so an optimizer
built from `p.requires_grad` trains only the adapters. The settings are kept as `model.adapter_config` (an
`AdapterConfig`), which is what a checkpoint records to rebuild the same modules before loading weights.

Targets are comma-separated group names or glob patterns (`fnmatch`) on module names:
- `attn`: the fused q/k/v projection and the attention output projection (`blocks.*.attn.qkv|proj`)
- `mlp`:  the MLP `fc` and `proj`, including those inside every Mixture-of-Experts expert
- `head`: the output head `lm_head` (when it is tied to the token embedding the tie is kept and frozen)
- anything else is a pattern, e.g. `blocks.0.*` or `*.attn.qkv`; it must match at least one Linear.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
from dataclasses import dataclass
from typing import Iterator, Literal

import torch
import torch.nn as nn

from ..errors import ConfigError
from ..onednn_linear import Linear
from .layers import DoRALinear, LoRALinear

TARGET_GROUPS: dict[str, tuple[str, ...]] = {
    "attn": ("*.attn.qkv", "*.attn.proj"),
    "mlp": ("*.mlp.fc", "*.mlp.proj", "*.mlp.experts.*.fc", "*.mlp.experts.*.proj"),
    "head": ("lm_head",),
}


@dataclass
class AdapterConfig:
    """What `add_adapters` needs to rebuild the same adapter modules (saved in checkpoints/run folders)."""

    kind: Literal["lora", "dora"] = "lora"
    rank: int = 8
    alpha: float = 16.0
    targets: str = "attn,mlp"
    dropout: float = 0.0
    rank_scaled: bool = True  # scale = alpha / rank (paper); False: scale = alpha (tutorial code)
    detach_norm: bool = True  # DoRA only: treat ||V|| as a constant in backward (paper's memory trick)

    def __post_init__(self) -> None:
        if self.kind not in ("lora", "dora"):
            raise ConfigError(f"adapters.kind: must be 'lora' or 'dora', got {self.kind!r}")
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1:
            raise ConfigError(f"adapters.rank: must be a positive integer, got {self.rank!r}")
        if not isinstance(self.alpha, (int, float)) or self.alpha <= 0:
            raise ConfigError(f"adapters.alpha: must be > 0, got {self.alpha!r}")
        self.alpha = float(self.alpha)
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"adapters.dropout: must be in [0, 1), got {self.dropout!r}")
        if not isinstance(self.targets, str) or not [t for t in self.targets.split(",") if t.strip()]:
            raise ConfigError(f"adapters.targets: must name at least one group or pattern, got {self.targets!r}")


def adapter_layers(model: nn.Module) -> dict[str, LoRALinear]:
    """Name -> adapter wrapper (LoRALinear or DoRALinear) for every adapted layer of `model`."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def resolve_targets(model: nn.Module, targets: str) -> list[str]:
    """Names of the `nn.Linear` modules that `targets` selects, in model order."""
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    chosen: set[str] = set()
    for token in (t.strip() for t in targets.split(",")):
        if not token:
            continue
        patterns = TARGET_GROUPS.get(token, (token,))
        hits = {name for name in linears for p in patterns if fnmatch.fnmatchcase(name, p)}
        if not hits:
            groups = ", ".join(TARGET_GROUPS)
            raise ConfigError(
                f"adapters.targets: {token!r} matches no Linear layer "
                f"(groups: {groups}; or a glob such as blocks.0.*)"
            )
        chosen |= hits
    return [name for name in linears if name in chosen]


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def add_adapters(
    model: nn.Module,
    kind: str = "lora",
    rank: int = 8,
    alpha: float = 16.0,
    targets: str = "attn,mlp",
    dropout: float = 0.0,
    rank_scaled: bool = True,
    generator: torch.Generator | None = None,
    detach_norm: bool = True,
) -> nn.Module:
    """Wrap the `targets` Linear layers of `model` in place with LoRA/DoRA, freeze the rest; return `model`.

    `generator` seeds the A matrices (B starts at zero, so outputs are unchanged at initialisation).
    """
    if getattr(model, "adapter_config", None) is not None or adapter_layers(model):
        raise ConfigError("add_adapters: the model already has adapters (merge_adapters(model) first)")
    config = AdapterConfig(kind, rank, alpha, targets, dropout, rank_scaled, detach_norm)  # type: ignore[arg-type]
    names = resolve_targets(model, config.targets)
    for p in model.parameters():
        p.requires_grad_(False)
    for name in names:
        base = model.get_submodule(name)
        common = dict(rank=config.rank, alpha=config.alpha, dropout=config.dropout,
                      rank_scaled=config.rank_scaled, generator=generator)
        if config.kind == "dora":
            wrapped: LoRALinear = DoRALinear(base, detach_norm=config.detach_norm, **common)
        else:
            wrapped = LoRALinear(base, **common)
        _set_submodule(model, name, wrapped)
    model.adapter_config = config  # type: ignore[assignment]
    return model


def set_merged(model: nn.Module, merged: bool) -> None:
    """Merged mode on/off for every adapter: on, each layer is one plain matmul (fast inference).

    A layer whose weight is shared with another module (the head tied to the token embedding) is left
    unmerged: writing into it would change the embedding too. Its output is the same either way.
    While merged the adapter parameters get no gradient, so switch it off before training.
    """
    shared = _shared_weight_ids(model)
    for layer in adapter_layers(model).values():
        if not merged:
            layer.unmerge()
        elif id(layer.weight) not in shared:
            layer.merge()


def unmerge_adapters(model: nn.Module) -> None:
    """Leave merged mode, restoring the exact base weights."""
    set_merged(model, False)


def merge_adapters(model: nn.Module) -> nn.Module:
    """Fold every adapter into a plain `nn.Linear` (new weights) and return the model, now adapter-free.

    All parameters become trainable again, as in a model that never had adapters. A head tied to the token
    embedding gets its own merged weight, so the tie is dropped and `model.config.tie_weights` is set to
    False (the embedding itself keeps the base values), so a saved checkpoint rebuilds the right model.
    """
    shared = _shared_weight_ids(model)
    untied = False
    for name, layer in adapter_layers(model).items():
        untied |= id(layer.weight) in shared
        linear = layer.to_linear()
        _set_submodule(model, name, linear)
    for p in model.parameters():
        p.requires_grad_(True)
    config = getattr(model, "config", None)
    if untied and dataclasses.is_dataclass(config) and hasattr(config, "tie_weights"):
        model.config = dataclasses.replace(model.config, tie_weights=False)  # type: ignore[assignment]
    model.adapter_config = None  # type: ignore[assignment]
    return model


def remove_adapters(model: nn.Module) -> nn.Module:
    """Take the adapters out, putting back each plain base `nn.Linear` (the exact W0, the adapters discarded),
    and return the model as it was before `add_adapters` (all parameters trainable again, ties kept).

    What `workbench export --hf DIR --adapters DIR` writes as the base next to the adapter folder."""
    unmerge_adapters(model)
    for name, layer in adapter_layers(model).items():
        linear = Linear(layer.in_features, layer.out_features, bias=layer.bias is not None,
                        device=layer.weight.device, dtype=layer.weight.dtype)
        linear.weight = layer.weight  # the same Parameter: a head tied to the embedding stays tied
        if layer.bias is not None:
            linear.bias = layer.bias
        _set_submodule(model, name, linear)
    for p in model.parameters():
        p.requires_grad_(True)
    model.adapter_config = None  # type: ignore[assignment]
    return model


@contextlib.contextmanager
def adapters_disabled(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block every adapted layer computes its base layer (e.g. the frozen DPO reference model)."""
    layers = list(adapter_layers(model).values())
    was_merged = [layer.merged for layer in layers]
    was_disabled = [layer.disabled for layer in layers]
    for layer in layers:
        layer.unmerge()
        layer.disabled = True
    try:
        yield model
    finally:
        for layer, merged, disabled in zip(layers, was_merged, was_disabled):
            layer.disabled = disabled
            if merged:
                layer.merge()


@contextlib.contextmanager
def unmerged(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block every layer holds its base weight (used to hash and save against the base)."""
    layers = [layer for layer in adapter_layers(model).values() if layer.merged]
    for layer in layers:
        layer.unmerge()
    try:
        yield model
    finally:
        for layer in layers:
            layer.merge()


@dataclass(frozen=True)
class AdapterSummary:
    trainable: int
    total: int

    @property
    def fraction(self) -> float:
        return self.trainable / self.total if self.total else 0.0

    def __str__(self) -> str:
        return f"{100 * self.fraction:.1f}% trainable ({self.trainable:,} of {self.total:,} parameters)"


def adapter_summary(model: nn.Module) -> AdapterSummary:
    """Trainable vs total unique parameters (a tied head counts once); `str()` gives '2.1% trainable (...)'."""
    seen: set[int] = set()
    trainable = total = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return AdapterSummary(trainable, total)


def _shared_weight_ids(model: nn.Module) -> set[int]:
    """ids of parameters registered under more than one name (tied weights)."""
    counts: dict[int, int] = {}
    for _, p in model.named_parameters(remove_duplicate=False):
        counts[id(p)] = counts.get(id(p), 0) + 1
    return {pid for pid, n in counts.items() if n > 1}
