"""What a Trainer measures at an evaluation: the mean loss (and objective metrics) over fixed batches, and
a short greedy sample of a stage-appropriate prompt decoded by the inference Engine."""
from __future__ import annotations

from typing import Any, Callable

import torch

from ..data import evaluation_batches
from ..engine import Engine, SamplingParams
from ..tokenizer import Tokenizer
from .accumulate import to_device
from .config import TrainConfig
from .objectives import IGNORE_INDEX, Objective
from .stages import dataset_kind


def mean_metric(values: list[Any]) -> Any:
    """Average per-micro-batch metrics (numbers, or equal-length lists such as expert loads)."""
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return sum(values) / len(values)
    if all(isinstance(v, (list, tuple)) for v in values) and len({len(v) for v in values}) == 1:
        return [sum(col) / len(col) for col in zip(*values)]
    return values[-1]


@torch.no_grad()
def eval_loss(objective: Objective, model: torch.nn.Module, dataset: Any, config: TrainConfig,
              collate_fn: Callable, device: torch.device,
              autocast: Callable[[], Any]) -> tuple[float | None, dict[str, Any]]:
    """Mean loss and metrics over the first `eval_batches` fixed batches of `dataset` (None if empty)."""
    if dataset is None or len(dataset) == 0:
        return None, {}
    losses, extra = [], {}
    for batch in evaluation_batches(dataset, config.batch_size, collate_fn, config.eval_batches):
        with autocast():
            loss, metrics = objective.loss(model, to_device(batch, device))
        losses.append(float(loss))
        for k, v in metrics.items():
            extra.setdefault(k, []).append(v)
    if not losses:
        return None, {}
    return sum(losses) / len(losses), {k: mean_metric(v) for k, v in extra.items()}


def sample_prompt_ids(config: TrainConfig, tokenizer: Tokenizer, val_data: Any, train_data: Any) -> list[int]:
    """`sample_prompt` if set; else the start of a validation (or training) example: its prompt part for
    the finetuning stages (tokens before the first labelled position), 16 tokens for text windows."""
    if config.sample_prompt:
        return tokenizer.encode(config.sample_prompt)
    data = val_data if val_data is not None and len(val_data) else train_data
    item = data[0]
    if "prompt_ids" in item:  # RL: a prompt the policy answers itself
        return item["prompt_ids"].tolist()
    prefix = "chosen_" if "chosen_input_ids" in item else ""  # DPO: the prompt of a preference pair
    ids, labels = item[prefix + "input_ids"], item[prefix + "labels"]
    if dataset_kind(config.stage, config.data) != "text":
        labelled = (labels != IGNORE_INDEX).nonzero()
        cut = int(labelled[0]) + 1 if len(labelled) else min(len(ids), 16)
        return ids[:cut].tolist()
    return ids[:16].tolist()


def greedy_sample(model: torch.nn.Module, tokenizer: Tokenizer, ids: list[int], max_new_tokens: int) -> str:
    """The prompt and its greedy continuation, up to end-of-text (the Engine restores the training mode;
    a prompt longer than the context keeps its last tokens)."""
    if not ids or max_new_tokens == 0:
        return ""
    out = Engine(model, tokenizer).generate_ids(ids, max_new_tokens, SamplingParams(truncate=True))
    valid = [i for i in out if i < tokenizer.n_vocab]  # a padded vocabulary's extra rows decode to nothing
    return tokenizer.decode(ids) + tokenizer.decode(valid)
