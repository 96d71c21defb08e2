"""The GRPO loss against the per-token formula written out in loops, its REINFORCE limit and the k3 KL."""
from __future__ import annotations

import math

import pytest
import torch

from llm_core.errors import ConfigError
from llm_core.rl import grpo_loss, k3_kl


def _case(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    B, T = 4, 5
    logp = -torch.rand(B, T, generator=g) * 3
    old = logp + (torch.rand(B, T, generator=g) - 0.5) * 0.8  # ratios on both sides of the clip range
    ref = logp + (torch.rand(B, T, generator=g) - 0.5) * 0.5
    adv = torch.tensor([1.5, -0.7, 0.3, -2.0])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 0]], dtype=torch.float)
    return logp, old, ref, adv, mask


def _by_hand(logp, old, ref, adv, mask, eps, beta, aggregation):
    per_seq, all_tokens = [], []
    for i in range(logp.shape[0]):
        terms = []
        for t in range(logp.shape[1]):
            if mask[i, t] == 0:
                continue
            rho = math.exp(logp[i, t] - old[i, t])
            surrogate = min(rho * adv[i], min(max(rho, 1 - eps), 1 + eps) * adv[i])
            log_r = float(ref[i, t] - logp[i, t])
            kl = math.exp(log_r) - log_r - 1
            terms.append(-(surrogate - beta * kl))
        per_seq.append(sum(terms) / len(terms))
        all_tokens += terms
    return sum(per_seq) / len(per_seq) if aggregation == "sequence" else sum(all_tokens) / len(all_tokens)


@pytest.mark.parametrize("aggregation", ["sequence", "token"])
@pytest.mark.parametrize("beta", [0.0, 0.1])
def test_loss_is_the_clipped_surrogate_with_k3_kl(aggregation, beta) -> None:
    logp, old, ref, adv, mask = _case()
    loss, stats = grpo_loss(logp, old, adv, mask, ref_logprobs=ref, clip_eps=0.2, kl_beta=beta,
                            aggregation=aggregation)
    expected = _by_hand(logp, old, ref, adv.tolist(), mask, 0.2, beta, aggregation)
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    assert 0 < stats.clip_fraction < 1  # the case has ratios inside and outside [0.8, 1.2]


def test_first_pass_gradient_is_reinforce_with_the_group_baseline() -> None:
    torch.manual_seed(0)
    logits = torch.randn(3, 4, 7, requires_grad=True)  # (B, T, V): the "policy"
    tokens = torch.randint(0, 7, (3, 4))
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0]], dtype=torch.float)
    adv = torch.tensor([0.9, -1.1, 0.2])

    def logprobs():
        return torch.log_softmax(logits, -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)  # (B, T)

    lp = logprobs()
    loss, stats = grpo_loss(lp, lp.detach(), adv, mask, kl_beta=0.0, aggregation="token")  # mu = 1: rho = 1
    (grad,) = torch.autograd.grad(loss, logits)
    assert stats.ratio_mean == pytest.approx(1.0) and stats.clip_fraction == 0
    # REINFORCE with the group baseline: -sum_i A_i sum_t log pi(y_it) / (number of tokens)
    reinforce = -(adv.unsqueeze(1) * logprobs() * mask).sum() / mask.sum()
    (expected,) = torch.autograd.grad(reinforce, logits)
    assert torch.allclose(grad, expected, atol=1e-7)


def test_k3_kl_is_zero_when_policy_equals_reference_and_positive_otherwise() -> None:
    logp = -torch.rand(2, 6)
    assert torch.equal(k3_kl(logp, logp), torch.zeros_like(logp))
    assert (k3_kl(logp, logp - 0.3) > 0).all() and (k3_kl(logp, logp + 0.3) > 0).all()
    logp, old, ref, adv, mask = _case()
    _, stats = grpo_loss(logp, old, adv, mask, ref_logprobs=logp.clone(), kl_beta=0.5)
    assert stats.kl == 0


def test_no_reference_is_needed_without_kl() -> None:
    logp, old, _, adv, mask = _case()
    loss, stats = grpo_loss(logp, old, adv, mask, ref_logprobs=None, kl_beta=0.0)
    assert torch.isfinite(loss) and stats.kl == 0


@pytest.mark.parametrize("kwargs, needle", [
    (dict(kl_beta=0.1), "needs ref_logprobs"),
    (dict(clip_eps=0.0), "clip_eps must be > 0"),
    (dict(kl_beta=-1.0), "kl_beta must be >= 0"),
    (dict(aggregation="mean"), "aggregation must be"),
])
def test_bad_settings_are_one_line_errors(kwargs, needle) -> None:
    logp, old, _, adv, mask = _case()
    with pytest.raises(ConfigError) as info:
        grpo_loss(logp, old, adv, mask, **kwargs)
    assert needle in str(info.value)
