"""AdamW with decoupled weight decay on matrices only, and global-norm gradient clipping.

Loshchilov & Hutter, "Decoupled Weight Decay Regularization" (2019): decay shrinks weights directly instead
of through the adaptive gradient. As in GPT-2/nanoGPT, only >= 2-D weight matrices decay; biases and
LayerNorm gains (1-D) don't (shrinking them toward 0 only hurts), nor do embeddings unless asked, since
rare tokens' rows would be pulled to zero between their few updates. Clipping by global norm (Pascanu et
al., "On the difficulty of training recurrent neural networks", 2013) rescales all gradients together so
their direction is kept.
"""
from __future__ import annotations

from typing import Iterable

import torch
import torch.nn as nn

from ..embedding import column_major
from .config import TrainConfig


def parameter_groups(model: nn.Module, config: TrainConfig) -> list[dict]:
    """Two AdamW groups: decayed matrices and everything else (trainable parameters only, tied ones once)."""
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decay, no_decay, seen = [], [], set()
    for _, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        is_embedding = id(p) in embeddings
        if p.dim() >= 2 and (config.decay_embeddings or not is_embedding):
            decay.append(p)
        else:
            no_decay.append(p)
    return [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


class AdamW(torch.optim.AdamW):
    """torch's AdamW, with every tensor of one parameter's update in that parameter's layout, and a
    column-major parameter (GPT's tied embedding, `llm_core.embedding`) given as contiguous transposed views.

    - torch's fused CPU kernel reads its tensors in memory order, so a gradient or a moment in another
      layout than the parameter's gets a wrong update (torch 2.13: a row-major gradient on a column-major
      parameter). A gradient set by hand, or moments resumed from a checkpoint of the row-major model, are
      first copied into the parameter's layout (the moments once, in the optimizer's state).
    - On the strided tensors themselves the fused kernel ran 2.6x slower (gpt2-mini's 50257 x 384
      embedding: 23.1 against 8.8 ms). The update is elementwise, so it is the same on the transposed views,
      which are contiguous."""

    def _init_group(self, group, params, grads, *state_lists):  # type: ignore[no-untyped-def, override]
        for p in group["params"]:
            if p.grad is None or p.dim() < 2:
                continue
            if p.grad.stride() != p.stride():
                p.grad = _in_layout_of(p, p.grad)
            state = self.state.get(p, {})
            for key, value in state.items():
                if torch.is_tensor(value) and value.shape == p.shape and value.stride() != p.stride():
                    state[key] = _in_layout_of(p, value)
        found = super()._init_group(group, params, grads, *state_lists)
        for i, p in enumerate(params):
            if column_major(p):
                params[i], grads[i] = p.t(), grads[i].t()
                for tensors in state_lists:  # exp_avgs, exp_avg_sqs, max_exp_avg_sqs (amsgrad), steps
                    if i < len(tensors) and tensors[i].dim() == 2:
                        tensors[i] = tensors[i].t()
        return found


def _in_layout_of(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A copy of t with p's strides."""
    return torch.empty_like(p, dtype=t.dtype).copy_(t)


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW over `parameter_groups`, fused (one kernel per parameter for the whole update) where torch has
    the fused kernel for these parameters' device, else the multi-tensor `foreach` path. On gpt2-mini's
    30M parameters (2 CPU threads) an update took 25 ms fused vs 114 ms for the per-tensor loop this
    replaced (`benchmarks/train_speed.py` prints it). Both are deterministic, so resume stays exact."""
    groups = parameter_groups(model, config)
    kwargs = dict(lr=config.peak_lr, betas=(config.beta1, config.beta2))
    if fused_adamw_supported(groups):
        return AdamW(groups, fused=True, **kwargs)
    return AdamW(groups, foreach=True, **kwargs)


def fused_adamw_supported(groups: list[dict]) -> bool:
    """True when every parameter is a floating tensor on a device torch's fused AdamW supports."""
    params = [p for g in groups for p in g["params"]]
    try:  # torch's own list of devices with a fused Adam kernel (cpu, cuda, mps, ... in torch 2.13)
        from torch.optim.optimizer import _get_fused_kernels_supported_devices
        devices = set(_get_fused_kernels_supported_devices())
    except ImportError:  # another torch: the devices known to have it
        devices = {"cpu", "cuda"}
    return bool(params) and all(p.is_floating_point() and p.device.type in devices for p in params)


def clip_gradients(parameters: Iterable[torch.nn.Parameter], max_norm: float | None) -> tuple[float, bool]:
    """Return (global L2 norm of the gradients before clipping, whether they were scaled down).

    With `max_norm=None` the norm is only measured. The norm is computed in fp32 even for bf16 grads.
    """
    params = [p for p in parameters if p.grad is not None]
    grads = [p.grad for p in params]
    if not grads:
        return 0.0, False
    total = torch.nn.utils.get_total_norm(grads, norm_type=2.0)
    norm = float(total)
    if max_norm is None or not norm > max_norm:  # (also False for a non-finite norm: never scale by NaN)
        return norm, False
    torch.nn.utils.clip_grads_with_norm_(params, max_norm, total)  # scales p.grad in place
    return norm, True


def layer_grad_norms(model: nn.Module) -> dict[str, float]:
    """Gradient L2 norm per top-level unit: each transformer block, the embeddings, the final norm/head."""
    sums: dict[str, float] = {}
    seen: set[int] = set()
    for name, p in model.named_parameters():
        if p.grad is None or id(p) in seen:
            continue
        seen.add(id(p))
        parts = name.split(".")
        key = ".".join(parts[:2]) if parts[0] == "blocks" else parts[0]
        sums[key] = sums.get(key, 0.0) + float(p.grad.detach().float().pow(2).sum())
    return {k: v ** 0.5 for k, v in sums.items()}
