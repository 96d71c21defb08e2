"""Knowledge distillation loss (Hinton, Vinyals and Dean, 2015, "Distilling the Knowledge in a Neural
Network", arXiv:1503.02531): the student matches the teacher's softened next-token distribution as well
as the labels.

    loss = alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE(student, labels)

Dividing the logits by a temperature T > 1 softens both distributions, so the teacher's "dark knowledge"
(how likely it finds the wrong tokens) carries signal; the gradient of the soft term shrinks as 1/T^2,
and multiplying by T^2 keeps its scale comparable to the CE term whatever T is.

`reverse=True` uses the reverse KL, KL(student || teacher) (Gu et al., 2024, "MiniLLM: Knowledge
Distillation of Large Language Models", arXiv:2306.08543): mode-seeking, so a small student concentrates
on what the teacher finds most likely instead of spreading mass over everything the teacher allows.

Both terms are averaged over the kept positions only (labels != -100: the response tokens of instruction
data, every token of text). Logits are (B, T, V) and labels (B, T), already aligned (labels[t] is the
token to predict at position t), as everywhere in `llm_core`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import ConfigError

IGNORE = -100


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float = 2.0,
    alpha: float = 0.5,
    reverse: bool = False,
) -> torch.Tensor:
    """The scalar loss above; see `distillation_terms` for the two terms separately."""
    kd, ce = distillation_terms(student_logits, teacher_logits, labels, temperature, reverse)
    return alpha * kd + (1 - alpha) * ce


def distillation_terms(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float = 2.0,
    reverse: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(T^2 * KL term, CE term), each a scalar averaged over the kept positions."""
    if temperature <= 0:
        raise ConfigError(f"distillation: temperature must be > 0, got {temperature}")
    if student_logits.shape != teacher_logits.shape:
        raise ConfigError(f"distillation: student logits {tuple(student_logits.shape)} and teacher logits "
                          f"{tuple(teacher_logits.shape)} differ (the two must share the vocabulary)")
    keep = labels.reshape(-1) != IGNORE  # (N,)
    v = student_logits.size(-1)
    s = student_logits.float().reshape(-1, v)[keep]  # (K, V), fp32: log-softmax over V loses bits in bf16
    t = teacher_logits.float().reshape(-1, v)[keep].detach()
    if s.shape[0] == 0:
        zero = student_logits.sum() * 0.0  # no kept position: a zero that still has a graph
        return zero, zero
    log_ps = F.log_softmax(s / temperature, dim=-1)
    log_pt = F.log_softmax(t / temperature, dim=-1)
    if reverse:  # KL(student || teacher)
        kl = (log_ps.exp() * (log_ps - log_pt)).sum(-1)
    else:  # KL(teacher || student)
        kl = (log_pt.exp() * (log_pt - log_ps)).sum(-1)
    kd = temperature ** 2 * kl.mean()
    ce = F.cross_entropy(s, labels.reshape(-1)[keep])
    return kd, ce


def topk_distillation_terms(
    student_logits: torch.Tensor,
    teacher_ids: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float = 2.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(T^2 * KL term, CE term) against a teacher known only by its top-k logits per position
    (`teacher_ids` / `teacher_logits`: (B, T, k)), renormalised over those k tokens (`topk_cache`):
    T^2 * sum_j q_k(j) (log q_k(j) - log p_S(j)), with log p_S the student's log-softmax at T over all V."""
    if temperature <= 0:
        raise ConfigError(f"distillation: temperature must be > 0, got {temperature}")
    if teacher_ids.shape != teacher_logits.shape or teacher_ids.shape[:2] != student_logits.shape[:2]:
        raise ConfigError(f"distillation: cached teacher top-k {tuple(teacher_ids.shape)} does not fit the "
                          f"student logits {tuple(student_logits.shape)}")
    keep = labels.reshape(-1) != IGNORE  # (N,)
    v, k = student_logits.size(-1), teacher_ids.size(-1)
    s = student_logits.float().reshape(-1, v)[keep]  # (K, V)
    if s.shape[0] == 0:
        zero = student_logits.sum() * 0.0
        return zero, zero
    ids = teacher_ids.reshape(-1, k)[keep]  # (K, k)
    log_q = F.log_softmax(teacher_logits.float().reshape(-1, k)[keep] / temperature, dim=-1)  # renormalised top-k
    log_ps = F.log_softmax(s / temperature, dim=-1).gather(-1, ids)  # (K, k): the student over the full vocabulary
    kd = temperature ** 2 * (log_q.exp() * (log_q - log_ps)).sum(-1).mean()
    ce = F.cross_entropy(s, labels.reshape(-1)[keep])
    return kd, ce
