"""Rollouts: G completions per prompt sampled by the Engine, scored, and laid out for the loss.

Each prompt is prefilled once and its G completions decoded as one batch (`Engine.sample_ids`), each row
from its own seeded generator, so a rollout is reproducible from (seed, prompt): that is what makes an RL
run resume exactly. The policy, the sampling policy and the reference are then scored on the same
(prompt + completion) sequences by one teacher-forced forward each (`completion_logprobs`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
import torch.nn as nn

from ..engine import Engine, SamplingParams
from ..engine.sampling import derive_seed
from ..experiment.verifier import is_worked_solution


@dataclass
class Rollouts:
    """One batch of sampled completions: P prompts x G completions, flattened prompt-major (row p*G + g)."""

    prompt_ids: list[list[int]]  # (P,) prompts
    completion_ids: list[list[int]]  # (P*G,) sampled ids (a final stop id included)
    texts: list[str]  # (P*G,) decoded completions (the stop id left out)
    stopped: list[bool]  # (P*G,) ended on a stop id (else cut at max_new_tokens)
    group_size: int
    rewards: torch.Tensor = field(default_factory=lambda: torch.zeros(0))  # (P, G)
    reward_parts: dict[str, list[float]] = field(default_factory=dict)  # name -> (P*G,)

    @property
    def n(self) -> int:
        return len(self.completion_ids)

    def sequences(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(input_ids, targets, mask), each (P*G, L): the model reads prompt + completion[:-1] and is scored
        on each completion token (mask 1), right-padded with 0 (mask 0)."""
        rows = []
        for i, comp in enumerate(self.completion_ids):
            prompt = self.prompt_ids[i // self.group_size]
            rows.append((prompt + comp, len(prompt)))
        L = max(len(seq) for seq, _ in rows) - 1
        inputs = torch.zeros(len(rows), L, dtype=torch.long)
        targets = torch.zeros(len(rows), L, dtype=torch.long)
        mask = torch.zeros(len(rows), L)
        for r, (seq, p) in enumerate(rows):
            n = len(seq) - 1
            inputs[r, :n] = torch.tensor(seq[:-1])
            targets[r, :n] = torch.tensor(seq[1:])
            mask[r, p - 1:n] = 1.0  # positions whose next token is a completion token
        return inputs, targets, mask

    def to_state(self) -> dict[str, Any]:
        """Plain values (for a checkpoint taken between two passes over the same rollouts)."""
        return {"prompt_ids": self.prompt_ids, "completion_ids": self.completion_ids, "texts": self.texts,
                "stopped": self.stopped, "group_size": self.group_size, "rewards": self.rewards.tolist(),
                "reward_parts": self.reward_parts}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "Rollouts":
        return cls(state["prompt_ids"], state["completion_ids"], state["texts"], state["stopped"],
                   state["group_size"], torch.tensor(state["rewards"]), dict(state["reward_parts"]))


def sample_rollouts(model: nn.Module, tokenizer: Any, prompt_ids: Sequence[Sequence[int]], group_size: int,
                    max_new_tokens: int, params: SamplingParams, seed: int, context: int | None = None) -> Rollouts:
    """G completions of each prompt; prompt p's samples are seeded from derive_seed(seed, p). With `context`,
    a completion stops where prompt + completion would outgrow it (it is scored in one forward)."""
    engine = Engine(model, tokenizer)
    completions, texts, stopped = [], [], []
    for p, ids in enumerate(prompt_ids):
        budget = max_new_tokens if context is None else max(1, min(max_new_tokens, context - len(ids)))
        for comp, done in engine.sample_ids(list(ids), group_size, budget,
                                            params.replace(seed=derive_seed(seed, p))):
            completions.append(comp)
            stopped.append(done)
            texts.append(tokenizer.decode(comp[:-1] if done else comp))
    return Rollouts([list(ids) for ids in prompt_ids], completions, texts, stopped, group_size)


def completion_logprobs(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                        with_entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(log pi(target_t | inputs_<=t), entropy of pi at t or None), each (B, L); masking is the caller's.
    Without the entropy the model's fused head gives the log-probs (`GPT.forward(inputs, targets,
    reduction="none")`: no (B, L, V) logits); the entropy needs the whole distribution."""
    if not with_entropy:
        return -model(inputs, targets, reduction="none"), None
    logp = torch.log_softmax(model(inputs).float(), dim=-1)  # (B, L, V), fp32 for the log-softmax
    chosen = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (B, L)
    entropy = -(logp.exp() * logp).sum(-1).detach() if with_entropy else None
    return chosen, entropy


def step_by_step_share(texts: Sequence[str]) -> float:
    """The share of completions that work the problem out in the worked-solution format."""
    return sum(is_worked_solution(t) for t in texts) / max(len(texts), 1)
