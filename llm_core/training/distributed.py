"""Data-parallel training with torch DistributedDataParallel (Li et al., "PyTorch Distributed", VLDB 2020).

Under `torchrun --nproc_per_node=K` every process holds a full model replica, reads its own shard of each
global batch, and DDP averages gradients across processes during backward, so K processes with micro-batch
B take the same step as one process with batch K*B. The same entry point runs unchanged without torchrun
(WORLD_SIZE unset = a single process). Only rank 0 writes files and emits events.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn


@dataclass(frozen=True)
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: torch.device) -> tuple[DistributedContext, torch.device]:
    """Join the process group when launched by torchrun (gloo on CPU, nccl on CUDA); else a 1-process context.

    On CUDA each process uses the GPU of its LOCAL_RANK.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext(), device
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank), device


def wrap_model(model: nn.Module, ctx: DistributedContext, device: torch.device) -> nn.Module:
    """DDP-wrap `model` when running distributed. MoE experts a batch never routes to get no gradient,
    so DDP must look for unused parameters in that case."""
    if not ctx.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    unused = bool(getattr(getattr(model, "config", None), "moe_experts", 0))
    return DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=unused
    )


def all_reduce_mean(value: torch.Tensor, ctx: DistributedContext) -> torch.Tensor:
    """Mean of a tensor over processes (identity in a single process)."""
    if not ctx.enabled:
        return value
    value = value.clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / ctx.world_size


def broadcast_from_main(value: Any, ctx: DistributedContext) -> Any:
    """Rank 0's value of a small picklable object, on every rank."""
    if not ctx.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(ctx: DistributedContext) -> None:
    if ctx.enabled:
        dist.barrier()


def shutdown(ctx: DistributedContext) -> None:
    """Leave the process group once every rank has reached this point: a rank that tore its connections
    down while another was still finishing its last collective made gloo abort the slower process
    ("terminate called without an active exception"; 2 of 8 runs of tests/test_training_ddp.py)."""
    if ctx.enabled and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
