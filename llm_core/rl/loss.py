"""The GRPO policy loss: PPO's clipped surrogate per token, with a group-relative advantage, plus a KL
penalty to a reference policy (Shao et al., 2024, "DeepSeekMath", arXiv:2402.03300, eq. 3).

For each completion token t, with rho_t = pi_theta(y_t | ...) / pi_old(y_t | ...) (the policy that sampled
the batch) and the completion's advantage A:

    surrogate_t = min(rho_t * A, clip(rho_t, 1 - eps, 1 + eps) * A)          (Schulman et al., 2017, PPO)
    kl_t        = pi_ref / pi_theta - log(pi_ref / pi_theta) - 1            (the "k3" estimator, Schulman
                                                                             2020, "Approximating KL
                                                                             Divergence": unbiased, >= 0)
    loss_t      = -(surrogate_t - kl_beta * kl_t)

`mu` optimisation passes reuse one sampled batch; on the first pass theta == old, so rho = 1 and the
gradient is A * grad log pi: REINFORCE with the group as baseline. The clip only bites on later passes.

Aggregation over tokens, by `aggregation`:
- "sequence" (GRPO): mean over each completion's tokens, then mean over completions. Every completion
  weighs the same, so a long one's tokens each count less: a length bias Dr. GRPO points out.
- "token" (DAPO, Yu et al., 2025, arXiv:2503.14476; Dr. GRPO): the sum over all completion tokens divided
  by their total number, so every token weighs the same.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from ..errors import ConfigError

Aggregation = Literal["sequence", "token"]


@dataclass
class GRPOStats:
    """Diagnostics of one loss evaluation (plain floats, for metrics.jsonl)."""

    clip_fraction: float  # share of completion tokens where the clipped term was the smaller one
    kl: float  # mean k3 KL per completion token (0 when there is no reference)
    ratio_mean: float  # mean rho over completion tokens (1 on the first pass)


def k3_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(pi_theta || pi_ref) from the sampled tokens' log-probs: >= 0, and 0
    exactly where the two policies agree."""
    log_ratio = ref_logprobs - logprobs  # log(pi_ref / pi_theta)
    return torch.exp(log_ratio) - log_ratio - 1


def grpo_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    ref_logprobs: torch.Tensor | None = None,
    clip_eps: float = 0.2,
    kl_beta: float = 0.0,
    aggregation: Aggregation = "sequence",
) -> tuple[torch.Tensor, GRPOStats]:
    """The scalar loss and its stats.

    logprobs, old_logprobs, ref_logprobs: (B, T) log-probs of the sampled completion tokens under the policy
    being trained (with grad), the sampling policy and the reference (no grad); advantages: (B,) one per
    completion; mask: (B, T), 1 on completion tokens, 0 on padding. `ref_logprobs` may be None only when
    kl_beta == 0 (then the reference forward is skipped altogether).
    """
    if clip_eps <= 0:
        raise ConfigError(f"grpo_loss: clip_eps must be > 0, got {clip_eps}")
    if kl_beta < 0:
        raise ConfigError(f"grpo_loss: kl_beta must be >= 0, got {kl_beta}")
    if kl_beta > 0 and ref_logprobs is None:
        raise ConfigError("grpo_loss: kl_beta > 0 needs ref_logprobs")
    if aggregation not in ("sequence", "token"):
        raise ConfigError(f"grpo_loss: aggregation must be 'sequence' or 'token', got {aggregation!r}")
    mask = mask.to(logprobs.dtype)  # (B, T)
    adv = advantages.to(logprobs.dtype).unsqueeze(1)  # (B, 1): one advantage for all tokens of a completion
    ratio = torch.exp(logprobs - old_logprobs.detach())  # (B, T)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps) * adv
    per_token = -torch.minimum(unclipped, clipped)  # (B, T)
    kl = k3_kl(logprobs, ref_logprobs.detach()) if ref_logprobs is not None else torch.zeros_like(logprobs)
    if kl_beta > 0:
        per_token = per_token + kl_beta * kl
    n_tokens = mask.sum().clamp(min=1)
    if aggregation == "sequence":
        per_sequence = (per_token * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)  # (B,)
        loss = per_sequence.mean()
    else:
        loss = (per_token * mask).sum() / n_tokens
    with torch.no_grad():
        clip_active = (clipped < unclipped).to(mask.dtype)
        stats = GRPOStats(
            clip_fraction=float((clip_active * mask).sum() / n_tokens),
            kl=float((kl * mask).sum() / n_tokens),
            ratio_mean=float((ratio * mask).sum() / n_tokens),
        )
    return loss, stats
