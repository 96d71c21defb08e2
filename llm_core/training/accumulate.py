"""Gradient accumulation: the gradients of one optimizer step from `grad_accum` micro-batches.

Each micro-batch's loss is scaled by 1/grad_accum before its backward pass, so the summed gradients equal
those of one batch `grad_accum` times larger (for a per-token mean loss over equal-sized micro-batches).
Under DistributedDataParallel every backward would all-reduce the gradients; `no_sync` defers that to the
last micro-batch (one all-reduce per step instead of grad_accum). The Trainer's step and the time estimate
(`estimate.py`) both run exactly this loop.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn as nn

from .objectives import Objective

Batch = dict[str, Any]


def to_device(batch: Batch, device: torch.device) -> Batch:
    """The batch's tensors on `device` (other values as they are)."""
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


@dataclass
class Accumulated:
    losses: list[torch.Tensor] = field(default_factory=list)  # each micro-batch's unscaled loss (detached)
    metrics: dict[str, list[Any]] = field(default_factory=dict)  # each metric's per-micro-batch values
    tokens: int = 0  # input tokens of this process


def accumulate_gradients(objective: Objective, model: nn.Module, next_batch: Callable[[], Batch], grad_accum: int,
                         autocast: Callable[[], contextlib.AbstractContextManager],
                         no_sync: Callable[[], contextlib.AbstractContextManager] | None = None) -> Accumulated:
    """Forward and backward `grad_accum` micro-batches from `next_batch()` (gradients add up in `.grad`)."""
    out = Accumulated()
    for micro in range(grad_accum):
        batch = next_batch()
        last = micro == grad_accum - 1
        sync = no_sync() if no_sync is not None and not last else contextlib.nullcontext()
        with sync:
            with autocast():
                loss, metrics = objective.loss(model, batch)
            (loss / grad_accum).backward()
        out.losses.append(loss.detach().float())
        for k, v in metrics.items():
            out.metrics.setdefault(k, []).append(v)
        out.tokens += objective.batch_tokens(batch, metrics)  # (RL counts the sequences it sampled)
    return out
