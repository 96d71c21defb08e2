"""The Direct Preference Optimization loss (Rafailov et al., 2023, "Direct Preference Optimization: Your
Language Model is Secretly a Reward Model", arXiv:2305.18290) and the sequence log-probabilities it needs.

DPO reads the policy's log-ratio against a frozen reference as an implicit reward,
    r(x, y) = beta * (log pi(y|x) - log pi_ref(y|x)),
and fits it to the preference pairs with the Bradley-Terry model:
    loss = -log sigmoid(r(x, y_chosen) - r(x, y_rejected))
         = -log sigmoid(beta * ((pi_c - pi_r) - (ref_c - ref_r))).
When the policy equals the reference the argument is 0 and the loss is log 2 for every pair.

Two variants are available:
- label smoothing (conservative DPO, Mitchell 2023, "A note on DPO with noisy preferences"): each label is
  assumed flipped with probability eps, so the loss mixes in -log sigmoid of the reversed margin. It stops
  the margin from being pushed to infinity on pairs that might be mislabelled.
- IPO (Azar et al., 2023, "A General Theoretical Paradigm to Understand Learning from Human Preferences",
  arXiv:2310.12036): a squared loss pulling the log-ratio difference to 1 / (2 beta) instead of to infinity.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from ..data.base import IGNORE_INDEX  # label value of prompt and padding positions

LossType = Literal["sigmoid", "ipo"]


def sequence_logprobs(logits: torch.Tensor, labels: torch.Tensor, average: bool = False) -> torch.Tensor:
    """Log-probability of each sequence's response tokens: (B, L, V) logits, (B, L) labels -> (B,).

    `labels` are already shifted (labels[t] is the token the model should predict at position t) and hold
    -100 on prompt and padding positions, which are excluded. The default, `average=False`, SUMS the token
    log-probabilities: that is log pi(y|x), the quantity the DPO derivation uses. `average=True` divides by
    the number of response tokens, which removes the length bias of the sum (long responses get large
    negative log-probabilities) at the cost of departing from the paper's objective.
    """
    mask = labels != IGNORE_INDEX  # (B, L)
    # Gather needs a valid index everywhere; masked positions are zeroed out below anyway.
    targets = labels.masked_fill(~mask, 0)  # (B, L)
    # log-softmax in fp32: under bf16 autocast the logits are bf16, too coarse for a sum of log-probs.
    token_logps = torch.gather(logits.float().log_softmax(-1), 2, targets.unsqueeze(-1)).squeeze(-1)  # (B, L)
    summed = (token_logps * mask).sum(-1)  # (B,)
    if average:
        return summed / mask.sum(-1).clamp(min=1)
    return summed


def model_sequence_logprobs(model: torch.nn.Module, input_ids: torch.Tensor, labels: torch.Tensor,
                            average: bool = False) -> torch.Tensor:
    """`sequence_logprobs(model(input_ids), labels, average)` without the (B, L, V) logits: the model's
    forward with targets (`GPT.forward(ids, labels, reduction="none")`, the fused chunked head of
    `llm_core.linear_ce`) gives each response token's cross-entropy, 0 at prompt and padding positions."""
    summed = -model(input_ids, labels, reduction="none").sum(-1)  # (B,)
    if average:
        return summed / (labels != IGNORE_INDEX).sum(-1).clamp(min=1)
    return summed


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float,
    label_smoothing: float = 0.0,
    loss_type: LossType = "sigmoid",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The DPO loss averaged over the batch, and the chosen / rejected rewards of each pair (B,).

    All inputs are (B,) sequence log-probabilities. Rewards are `beta * (policy - reference)` log-ratios,
    detached: they are for monitoring (their difference is what the loss pushes up).
    """
    chosen_logratios = policy_chosen_logps - ref_chosen_logps  # (B,)
    rejected_logratios = policy_rejected_logps - ref_rejected_logps  # (B,)
    margin = chosen_logratios - rejected_logratios  # (B,) = (pi_c - pi_r) - (ref_c - ref_r)
    if loss_type == "sigmoid":
        # logsigmoid is the numerically stable form of log(sigmoid(x)) for large |x|.
        losses = -(1.0 - label_smoothing) * F.logsigmoid(beta * margin) - label_smoothing * F.logsigmoid(
            -beta * margin
        )
    elif loss_type == "ipo":
        losses = (margin - 1.0 / (2.0 * beta)) ** 2
    else:
        raise ValueError(f"dpo_loss: loss_type must be 'sigmoid' or 'ipo', got {loss_type!r}")
    chosen_rewards = beta * chosen_logratios.detach()
    rejected_rewards = beta * rejected_logratios.detach()
    return losses.mean(), chosen_rewards, rejected_rewards
