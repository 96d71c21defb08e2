"""Learning-rate schedules: linear warmup, then cosine (or linear, or no) decay.

Warmup keeps the first AdamW updates small while its second-moment estimates are still noisy (Goyal et al.,
"Accurate, Large Minibatch SGD", 2017); cosine decay to a floor follows Loshchilov & Hutter, "SGDR" (2017)
as used for GPT-3 (Brown et al., 2020). `lr_at` is pure, so the trainer and the UI's planned-schedule plot
draw the same curve.

With 0-based `step`, T = max_steps and W = warmup steps:
    step < W:   lr = initial_lr + step * (peak_lr - initial_lr) / W
    otherwise:  lr = min_lr + (peak_lr - min_lr) * 0.5 * (1 + cos(pi * (step - W) / (T - W)))   (cosine)
                lr = min_lr + (peak_lr - min_lr) * (1 - (step - W) / (T - W))                   (linear)
                lr = peak_lr                                                                     (constant)
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import TrainConfig


def lr_at(step: int, config: "TrainConfig") -> float:
    """The learning rate used for optimizer step `step` (0-based) of a run with `config`."""
    warmup = config.warmup
    total = config.max_steps
    if step < warmup:
        return config.initial_lr + step * (config.peak_lr - config.initial_lr) / warmup
    if config.schedule == "constant":
        return config.peak_lr
    # Fraction of the decay phase done; clamped so resuming past max_steps stays at the floor.
    progress = min(max((step - warmup) / max(total - warmup, 1), 0.0), 1.0)
    if config.schedule == "linear":
        return config.min_lr + (config.peak_lr - config.min_lr) * (1.0 - progress)
    return config.min_lr + (config.peak_lr - config.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def planned_schedule(config: "TrainConfig") -> list[float]:
    """lr_at for every step of the run (for plots)."""
    return [lr_at(s, config) for s in range(config.max_steps)]
