"""Before a run: how much memory it needs and how long it will take.

Memory = weights + gradients + AdamW's two moment buffers (Rajbhandari et al., "ZeRO", 2020, section 3.1:
the "16 bytes per parameter" of mixed-precision Adam, here fp32 master weights only: 4 + 4 + 8 bytes per
trainable parameter) + activations kept for backward. Activations per transformer layer follow
Korthikanti et al., "Reducing Activation Recomputation in Large Transformer Models" (2022):
    s * b * h * (34 + 5 * a * s / h) bytes at 16-bit precision  (s tokens, b batch, h width, a heads),
doubled for fp32, plus the logits and their gradient (b * s * vocab, fp32). It is an estimate: fused
attention kernels keep less, allocator slack adds more.

Time is measured, not modelled: a few optimizer steps on a copy of the model (so the real model, its
optimizer and the data position are untouched), after one warm-up step.
"""
from __future__ import annotations

import copy
import time
from typing import TYPE_CHECKING, Any

import torch

from ..data import BatchIterator
from .accumulate import accumulate_gradients, to_device
from .optim import build_optimizer

if TYPE_CHECKING:
    from .trainer import Trainer

MiB = 1024 * 1024


def memory_estimate(model: torch.nn.Module, batch_size: int, seq_len: int, bf16: bool,
                    batch_multiplier: int = 1) -> dict[str, float]:
    """Bytes for parameters, gradients, optimizer state and activations of one micro-batch."""
    cfg = model.config
    params = model.num_parameters()
    trainable = model.num_parameters(trainable_only=True)
    b, s, h, a = batch_size * batch_multiplier, seq_len, cfg.d_model, cfg.n_heads
    per_layer_16bit = s * b * h * (34 + 5 * a * s / h)
    activations = cfg.n_layers * per_layer_16bit * (1 if bf16 else 2) + 2 * b * s * cfg.vocab_size * 4
    out = {
        "parameters": params * 4.0,
        "gradients": trainable * 4.0,
        "optimizer": trainable * 8.0,
        "activations": float(activations),
    }
    out["total"] = sum(out.values())
    return out


def measure_step_time(trainer: "Trainer", steps: int = 2) -> dict[str, float]:
    """Seconds per optimizer step measured on a deep copy (one warm-up step first)."""
    cfg = trainer.config
    rng = torch.get_rng_state()  # dropout in the copy must not shift the real run's random stream
    model = copy.deepcopy(trainer.model)
    model.train()
    optimizer = build_optimizer(model, cfg)
    batches = BatchIterator(trainer.train_data, batch_size=cfg.batch_size, collate_fn=trainer.collate_fn,
                            seed=cfg.seed + 1, shuffle=True, drop_last=True)
    tokens, times = 0, []
    try:
        for i in range(steps + 1):
            start = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            step = accumulate_gradients(trainer.objective, model, lambda: to_device(next(batches), trainer.device),
                                        cfg.grad_accum, trainer.autocast)
            if i:
                tokens += step.tokens
            optimizer.step()
            if i:  # the first step pays for allocations and kernel selection
                times.append(time.perf_counter() - start)
    finally:
        torch.set_rng_state(rng)
    # The fastest measured step: the first few can still be slowed by allocator growth or a busy core.
    per_step = min(times)
    return {"seconds_per_step": per_step, "tokens_per_s": tokens / len(times) / per_step}


def estimate_run(trainer: "Trainer", measure_steps: int = 2) -> dict[str, Any]:
    """Memory (bytes, by part) and time (seconds per step, remaining seconds incl. evaluations)."""
    cfg = trainer.config
    sample = trainer.train_data[0]
    # RL batches hold prompts only (the objective samples the rest): count a full context for them.
    seq_len = max((int(v.numel()) for k, v in sample.items() if k.endswith("input_ids")),
                  default=trainer.model.config.context_length)
    # DPO runs chosen and rejected through the policy (2x batch); its frozen reference adds no activations.
    multiplier = trainer.objective.sequences_per_example
    memory = memory_estimate(trainer.model, cfg.batch_size, seq_len, cfg.bf16 and trainer.device.type != "mps",
                             multiplier)
    out: dict[str, Any] = {"memory_bytes": memory}
    if measure_steps > 0:
        timing = measure_step_time(trainer, measure_steps)
        remaining = max(cfg.max_steps - trainer.step, 0)
        # An evaluation runs ~2 * eval_batches forward passes (train + val), a forward ~ 1/3 of a step.
        n_evals = remaining // cfg.eval_every + 1
        eval_seconds = n_evals * 2 * cfg.eval_batches * timing["seconds_per_step"] / (3 * cfg.grad_accum)
        out.update(timing)
        out["remaining_seconds"] = remaining * timing["seconds_per_step"] + eval_seconds
    return out


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"
