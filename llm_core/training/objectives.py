"""Training objectives: what the trainer minimises for one batch.

An objective is any object with `loss(model, batch) -> (loss, metrics)`, where `loss` is a scalar tensor to
backpropagate and `metrics` a dict of floats / lists merged into the step event. Next-token prediction lives
here; DPO lives in `llm_core.dpo` and plugs in the same way.
"""
from __future__ import annotations

from typing import Any, Protocol

import torch
import torch.nn as nn
import torch.nn.functional as F

IGNORE_INDEX = -100  # label value that contributes no loss (prompt tokens, padding)


class Objective(Protocol):
    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]: ...


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside a DistributedDataParallel wrapper (or the model itself)."""
    return getattr(model, "module", model)


class LanguageModelingObjective:
    """Mean next-token cross-entropy over labelled positions (labels are pre-shifted; -100 is ignored),
    plus the model's auxiliary loss (MoE load balancing / router z-loss; zero for a dense model)."""

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
        logits = model(batch["input_ids"])  # (B, T, V)
        labels = batch["labels"]  # (B, T)
        # Cross-entropy in fp32: under bf16 autocast the logits are bf16, and log-softmax over a large
        # vocabulary loses precision there.
        ce = F.cross_entropy(
            logits.float().reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=IGNORE_INDEX
        )
        bare = unwrap(model)
        metrics: dict[str, Any] = {}
        moe_layers = bare.moe_layers() if hasattr(bare, "moe_layers") else []
        if moe_layers:
            aux = bare.auxiliary_loss()
            loss = ce + aux
            metrics["aux_loss"] = float(aux.detach())
            # Mean fraction of tokens routed to each expert over the MoE layers (uniform = 1/E each).
            load = torch.stack([m.expert_fraction.detach().float() for m in moe_layers]).mean(0)
            metrics["expert_load"] = [round(float(x), 4) for x in load]
        else:
            loss = ce
        metrics["lm_loss"] = float(ce.detach())
        return loss, metrics
