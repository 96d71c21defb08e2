"""A learned reward model: a GPT with a scalar head, trained on preference pairs (the PPO recipe's reward,
Ouyang et al., 2022, "Training language models to follow instructions with human feedback", sec. 3.5).

The model reads prompt + response and outputs one number, read at the response's last token. It is trained
with the Bradley-Terry model of pairwise preferences (Bradley and Terry, 1952):

    P(chosen > rejected) = sigmoid(r(x, y_chosen) - r(x, y_rejected)),   loss = -log sigmoid(r_c - r_r)

so only reward *differences* are learned (a constant shift of every reward changes nothing). Held-out
pair accuracy, the share of pairs with r_c > r_r, says how well it ranks. Starting from a language model
checkpoint gives it the features to read the responses with; the scalar head starts at zero.

Stored as an ordinary run folder: the backbone is a verified checkpoint (`save_checkpoint`), the head's
weight and bias go in its trainer_state (loaded with weights_only=True), the tokenizer beside it, so it
loads without unpickling anything arbitrary. As an RL reward (`--set reward=model:PATH`), a
`LearnedReward` scores each completion of the policy.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data import PreferenceDataset, collate_preference
from ..data.base import IGNORE_INDEX
from ..errors import CheckpointError, ConfigError
from ..model import GPT
from ..tokenizer import Tokenizer, save_tokenizer_ref

HEAD_KEY = "reward_head"


class RewardModel(nn.Module):
    """backbone features (B, T, C) -> a linear head -> (B, T) -> the value at each sequence's last token."""

    def __init__(self, backbone: GPT) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.config.d_model, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, input_ids: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        """input_ids (B, T), last (B,) the index of each sequence's last response token -> rewards (B,)."""
        values = self.head(self.backbone.features(input_ids)).squeeze(-1)  # (B, T)
        return values.gather(1, last.unsqueeze(1)).squeeze(1)  # (B,)


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """-log sigmoid(r_chosen - r_rejected), averaged over the pairs."""
    return -F.logsigmoid(chosen - rejected).mean()


def last_labelled(labels: torch.Tensor) -> torch.Tensor:
    """(B, T) labels -> (B,) the position of each row's last response token (labels != -100): the input
    position that has read the whole response but its final token (the end-of-text)."""
    positions = torch.arange(labels.shape[1], device=labels.device).expand_as(labels)
    return torch.where(labels != IGNORE_INDEX, positions, -1).max(dim=1).values.clamp(min=0)


def _pair_rewards(model: RewardModel, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    chosen = model(batch["chosen_input_ids"], last_labelled(batch["chosen_labels"]))
    rejected = model(batch["rejected_input_ids"], last_labelled(batch["rejected_labels"]))
    return chosen, rejected


@torch.no_grad()
def pair_accuracy(model: RewardModel, dataset: PreferenceDataset, pad_id: int, batch_size: int = 16) -> float:
    """The share of pairs the model ranks right (r_chosen > r_rejected)."""
    model.eval()
    right = 0
    for start in range(0, len(dataset), batch_size):
        batch = collate_preference([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))], pad_id)
        chosen, rejected = _pair_rewards(model, batch)
        right += int((chosen > rejected).sum())
    model.train()
    return right / max(len(dataset), 1)


@dataclass
class RewardModelResult:
    path: Path
    steps: int
    seconds: float
    train_accuracy: float
    val_accuracy: float


def train_reward_model(backbone: GPT, tokenizer: Tokenizer, data: str | Path | list[dict[str, Any]], out: Path,
                       steps: int = 200, batch_size: int = 8, lr: float = 1e-4, val_fraction: float = 0.1,
                       seed: int = 0, on_step: Callable[[int, float], None] | None = None) -> RewardModelResult:
    """Train a reward model on preference pairs and write it to `out` (a run folder)."""
    if steps < 1 or batch_size < 1 or not lr > 0:
        raise ConfigError(f"reward model: steps and batch_size must be >= 1 and lr > 0, got {steps}, {batch_size}, {lr}")
    dataset = PreferenceDataset(data, tokenizer, max_length=backbone.config.context_length,
                                vocab_size=backbone.config.vocab_size, drop_identical=True)
    train, val = dataset.split(val_fraction, seed) if len(dataset) >= 10 else (dataset, dataset)
    torch.manual_seed(seed)  # (dropout, if the backbone has any)
    model = RewardModel(backbone)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    pad_id = tokenizer.eot_id
    started = time.perf_counter()
    for step in range(steps):
        picks = torch.randint(len(train), (batch_size,), generator=generator).tolist()
        chosen, rejected = _pair_rewards(model, collate_preference([train[i] for i in picks], pad_id))
        loss = bradley_terry_loss(chosen, rejected)
        if not math.isfinite(float(loss.detach())):
            raise ConfigError(f"reward model: step {step}: non-finite loss; lower lr (now {lr:g})")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if on_step is not None:
            on_step(step, float(loss.detach()))
    seconds = time.perf_counter() - started
    result = RewardModelResult(Path(out), steps, seconds, pair_accuracy(model, train, pad_id),
                               pair_accuracy(model, val, pad_id))
    save_reward_model(model, tokenizer, Path(out), {"steps": steps, "train_pair_accuracy": result.train_accuracy,
                                                    "val_pair_accuracy": result.val_accuracy})
    return result


def save_reward_model(model: RewardModel, tokenizer: Tokenizer, out: Path, metrics: dict[str, Any]) -> Path:
    """The backbone as a verified checkpoint (atomic), the head in its state, the tokenizer beside it."""
    from ..config import to_dict
    from ..training import TrainConfig
    from ..training.checkpoint import save_checkpoint
    from ..training.config import MODEL_CONFIG_KEY
    from ..training.loading import TOKENIZER_DIR

    out.mkdir(parents=True, exist_ok=True)
    if not (out / TOKENIZER_DIR).is_dir():
        save_tokenizer_ref(tokenizer, out / TOKENIZER_DIR)
    config = {**TrainConfig().to_dict(), MODEL_CONFIG_KEY: to_dict(model.backbone.config), "name": out.name}
    state = {HEAD_KEY: {"weight": model.head.weight.detach().clone(), "bias": model.head.bias.detach().clone()},
             "metrics": metrics}
    return save_checkpoint(out, metrics.get("steps", 0), model.backbone, state, config)


def load_reward_model(path: str | Path) -> "LearnedReward":
    """A reward model folder (or its step folder) as a `Reward`."""
    from ..training import load_checkpoint
    from ..training.checkpoint import load_trainer_state

    loaded = load_checkpoint(path)
    state = load_trainer_state(loaded.path)
    head = state.get(HEAD_KEY) if isinstance(state, dict) else None
    if not isinstance(head, dict) or "weight" not in head:
        raise CheckpointError(f"{loaded.path}: not a reward model (no {HEAD_KEY} in its state); "
                              "train one with `workbench reward-model`")
    model = RewardModel(loaded.model)
    model.head.load_state_dict(head)
    model.eval()
    return LearnedReward(model, loaded.tokenizer, name=f"model:{path}")


class LearnedReward:
    """The reward model as an RL reward: r(prompt + completion), read at the completion's last token."""

    def __init__(self, model: RewardModel, tokenizer: Tokenizer, name: str = "model") -> None:
        self.model, self.tokenizer, self.name = model, tokenizer, name

    @torch.no_grad()
    def __call__(self, prompt: str, completion: str, example: Mapping[str, Any]) -> float:
        ids = self.tokenizer.encode(prompt + completion)[-self.model.backbone.config.context_length:]
        device = next(self.model.parameters()).device
        x = torch.tensor([ids], device=device)
        return float(self.model(x, torch.tensor([len(ids) - 1], device=device)))
