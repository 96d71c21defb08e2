"""Group-relative advantages: how much better each completion did than its siblings for the same prompt.

GRPO (Shao et al., 2024, "DeepSeekMath", arXiv:2402.03300, section 4.1) drops PPO's learned value
function: it samples a group of G completions per prompt and uses the group itself as the baseline. Three
ways of turning a group's rewards r_1..r_G into advantages, by `scale`:

- "std"  (GRPO):      A_i = (r_i - mean(r)) / (std(r) + eps)
- "none" (Dr. GRPO, Liu et al., 2025, "Understanding R1-Zero-Like Training", arXiv:2503.20783):
                      A_i = r_i - mean(r); dividing by the std up-weights groups that are nearly all
                      right or all wrong (a difficulty bias), so Dr. GRPO leaves it out.
- "rloo" (Ahmadian et al., 2024, "Back to Basics: Revisiting REINFORCE Style Optimization", arXiv:2402.14740):
                      A_i = r_i - mean of the other G - 1 rewards, a leave-one-out baseline that does not
                      depend on r_i itself (an unbiased REINFORCE baseline); it equals G/(G-1) (r_i - mean(r)).

std is the sample standard deviation (Bessel's correction, as torch.std and TRL compute it). A group whose
rewards are all equal gets advantages of 0 under every scale: it carries no learning signal, and the
share of such groups is worth watching (`zero_std_fraction`).
"""
from __future__ import annotations

from typing import Literal

import torch

from ..errors import ConfigError

AdvantageScale = Literal["std", "none", "rloo"]
SCALES = ("std", "none", "rloo")


def group_advantages(rewards: torch.Tensor, scale: AdvantageScale = "std", eps: float = 1e-4) -> torch.Tensor:
    """(prompts, G) rewards -> (prompts, G) advantages, each group against its own baseline."""
    if rewards.dim() != 2:
        raise ConfigError(f"group_advantages: rewards must be (prompts, G), got shape {tuple(rewards.shape)}")
    g = rewards.shape[1]
    if g < 2:
        raise ConfigError(f"group_advantages: a group needs at least 2 completions (G >= 2), got G={g}")
    if scale not in SCALES:
        raise ConfigError(f"group_advantages: scale must be one of {', '.join(SCALES)}, got {scale!r}")
    rewards = rewards.float()
    mean = rewards.mean(dim=1, keepdim=True)  # (P, 1)
    if scale == "std":
        return (rewards - mean) / (rewards.std(dim=1, keepdim=True) + eps)
    if scale == "none":
        return rewards - mean
    others = (rewards.sum(dim=1, keepdim=True) - rewards) / (g - 1)  # mean of the other G - 1
    return rewards - others


def zero_std_fraction(rewards: torch.Tensor) -> float:
    """The share of groups whose rewards are all equal (no signal for any scale)."""
    return float((rewards.max(dim=1).values == rewards.min(dim=1).values).float().mean())
