"""Before a run: how much memory it needs and how long it will take.

Memory = weights + gradients + AdamW's two moment buffers (Rajbhandari et al., "ZeRO", 2020, section 3.1:
the "16 bytes per parameter" of mixed-precision Adam, here fp32 master weights only: 4 + 4 + 8 bytes per
trainable parameter) + activations kept for backward. Activations per transformer layer follow
Korthikanti et al., "Reducing Activation Recomputation in Large Transformer Models" (2022):
    s * b * h * (34 + 5 * a * s / h) bytes at 16-bit precision  (s tokens, b batch, h width, a heads),
doubled for fp32, plus the gradient of the logits that the fused head keeps for backward (b * s * vocab
in the compute dtype) and one chunk of fp32 logits (`llm_core.linear_ce`). It is an estimate: fused
attention kernels keep less, allocator slack adds more.

Time is measured, not modelled: a few optimizer steps on a copy of the model (so the real model, its
optimizer and the data position are untouched), after one warm-up step.
"""
from __future__ import annotations

import copy
import os
import time
from typing import TYPE_CHECKING, Any

import torch

from ..data import BatchIterator
from ..errors import ConfigError
from ..linear_ce import CHUNK_ELEMENTS
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
    head = b * s * cfg.vocab_size * (2 if bf16 else 4) + 2 * CHUNK_ELEMENTS * 4  # dCE/dz + one fp32 chunk
    activations = cfg.n_layers * per_layer_16bit * (1 if bf16 else 2) + head
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


def run_memory_estimate(trainer: "Trainer") -> dict[str, float]:
    """`memory_estimate` for the trainer's model, batch and sequence length (that of its first example)."""
    cfg = trainer.config
    sample = trainer.train_data[0]
    # RL batches hold prompts only (the objective samples the rest): count a full context for them.
    seq_len = max((int(v.numel()) for k, v in sample.items() if k.endswith("input_ids")),
                  default=trainer.model.config.context_length)
    # DPO runs chosen and rejected through the policy (2x batch); its frozen reference adds no activations.
    multiplier = trainer.objective.sequences_per_example
    return memory_estimate(trainer.model, cfg.batch_size, seq_len, cfg.bf16 and trainer.device.type != "mps",
                           multiplier)


def device_memory_bytes(device: torch.device) -> int | None:
    """What the device has in all: the GPU's memory, or the machine's RAM for the CPU (None when unknown)."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):  # not POSIX: no refusal rather than a wrong one
        return None


def check_memory_fits(model: torch.nn.Module, config: Any, device: torch.device, need: float | None = None) -> None:
    """Refuse a run whose memory estimate exceeds everything the device has (it could only crash or swap
    the machine to a halt); callers skip this with force=True (the estimate can be pessimistic). Without
    `need`, the estimate is for full context-length sequences (pretraining windows, known before any data
    is read, so a hopeless run is refused before tokenising its corpus)."""
    total = device_memory_bytes(device)
    if need is None:
        need = memory_estimate(model, config.batch_size, model.config.context_length,
                               config.bf16 and device.type != "mps")["total"]
    if total is not None and need > total:
        raise ConfigError(
            f"TrainConfig: this run needs about {format_bytes(need)} (context_length "
            f"{model.config.context_length}, batch_size {config.batch_size}), more than the "
            f"{format_bytes(total)} of {device.type} memory here; lower them, or pass --force to try anyway",
            field="context_length")


def estimate_run(trainer: "Trainer", measure_steps: int = 2) -> dict[str, Any]:
    """Memory (bytes, by part) and time (seconds per step, remaining seconds incl. evaluations)."""
    cfg = trainer.config
    memory = run_memory_estimate(trainer)
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
