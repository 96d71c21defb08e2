"""Reinforcement learning for reasoning: GRPO with verifiable and learned rewards.

- `advantages`: group-relative advantages (GRPO's std scaling, Dr. GRPO's none, RLOO's leave-one-out).
- `loss`: the token-level PPO-clipped surrogate with a k3 KL penalty (`grpo_loss`).
- `rewards`: the `Reward` protocol, accuracy and format rewards, weighted sums, plain callables.
"""
from .advantages import group_advantages, zero_std_fraction
from .loss import GRPOStats, grpo_loss, k3_kl
from .rewards import (
    AccuracyReward, FormatReward, FunctionReward, Reward, WeightedSum, as_reward, mix, parse_reward,
)

__all__ = [
    "group_advantages", "zero_std_fraction", "grpo_loss", "k3_kl", "GRPOStats", "Reward", "AccuracyReward",
    "FormatReward", "FunctionReward", "WeightedSum", "as_reward", "mix", "parse_reward",
]
