"""Training objectives: what the trainer minimises for one batch, and the hooks every stage plugs into.

An objective is an `Objective`: `loss(model, batch) -> (loss, metrics)`, where `loss` is a scalar tensor to
backpropagate and `metrics` a dict of floats / lists merged into the step event. The base class gives every
stage the same three hooks, with no-op defaults, so the Trainer calls them without knowing the stage:

- `tunables()` / `set_tunable(name, value)`: hyperparameters the user may change live (DPO's beta); the
  Trainer applies a change at the next step boundary and records the values in each step event;
- `state_dict()` / `load_state_dict(state)`: the objective's own state, saved in every checkpoint;
- `on_step(trainer, event)`: called with each step and eval event; may raise alarms through the trainer's
  public `emit("alarm", kind=..., message=..., step=...)` (DPO: collapse alarms).

And three for stages that make their own sequences (RL samples its completions):
- `attach(trainer)`: called once the Trainer is built (the tokenizer, the data, the device are known);
- `batch_tokens(batch, metrics)`: the tokens one micro-batch put through the model (default: the batch's
  `*input_ids`), for tokens/s;
- `evaluate(trainer)`: the eval event's metrics in place of the train/val loss (default None: the loss).

Next-token prediction lives here; DPO lives in `llm_core.dpo` and plugs in the same way. Which stage uses
which objective is one registry, `llm_core.training.stages.STAGES`.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Protocol

import torch
import torch.nn as nn

from ..data.base import IGNORE_INDEX
from ..errors import ConfigError

__all__ = ["IGNORE_INDEX", "EventSink", "Objective", "LanguageModelingObjective", "unwrap"]


class EventSink(Protocol):
    """What an objective's `on_step` hook may use of the trainer: its public event path."""

    def emit(self, event_type: str, **fields: Any) -> dict[str, Any]: ...


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside a DistributedDataParallel wrapper (or the model itself)."""
    return getattr(model, "module", model)


class Objective:
    """Base class of the training objectives: `loss` to implement, the hooks with no-op defaults."""

    # Names of float attributes the user may change while training (each must stay a positive number).
    TUNABLES: tuple[str, ...] = ()
    # Sequences each example puts through the policy (DPO: chosen + rejected), for the memory estimate.
    sequences_per_example: int = 1

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
        raise NotImplementedError

    # --- Live-tunable hyperparameters --------------------------------------------------------------
    def tunables(self) -> dict[str, float]:
        """The current values of the live-tunable hyperparameters ({} when there are none)."""
        return {name: float(getattr(self, name)) for name in self.TUNABLES}

    def check_tunable(self, name: str, value: Any) -> float:
        """`value` as a float if `name` is tunable and the value valid; else a one-line ConfigError."""
        if name not in self.TUNABLES:
            raise ConfigError(f"{name}: the {type(self).__name__} has no live-tunable {name} "
                              f"(tunable: {', '.join(self.TUNABLES) or 'none'})")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ConfigError(f"{name}: must be a positive number, got {value!r}")
        return float(value)

    def set_tunable(self, name: str, value: float) -> None:
        setattr(self, name, self.check_tunable(name, value))

    # --- Checkpoint state --------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Plain values the objective needs to continue exactly after a resume (default: its tunables)."""
        return self.tunables()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            if name in self.TUNABLES:
                self.set_tunable(name, value)

    # --- Per-step hook -----------------------------------------------------------------------------
    def on_step(self, trainer: EventSink, event: dict[str, Any]) -> None:
        """Called with every step and eval event the trainer emits; may `trainer.emit("alarm", ...)`."""

    # --- Stages that make their own sequences --------------------------------------------------------
    def prepare_data(self, train: Any, val: Any, collate: Callable, device: Any) -> tuple[Any, Any, Callable]:
        """Called with the run's datasets before batching starts; may wrap them (and the collate function)
        with what the loss needs beside the tokens (the distill stage's cached teacher). Default: as they are."""
        return train, val, collate

    def attach(self, trainer: Any) -> None:
        """Called once the Trainer is built; an objective may keep what it needs of it (not the trainer)."""

    def batch_tokens(self, batch: dict[str, Any], metrics: dict[str, Any]) -> int:
        """Tokens the micro-batch put through the model (for tokens/s)."""
        return sum(int(v.numel()) for k, v in batch.items() if k.endswith("input_ids") and torch.is_tensor(v))

    def evaluate(self, trainer: Any) -> dict[str, Any] | None:
        """Metrics for the eval event instead of the train/val loss; None (default): the loss."""
        return None


class LanguageModelingObjective(Objective):
    """Mean next-token cross-entropy over labelled positions (labels are pre-shifted; -100 is ignored),
    plus the model's auxiliary loss (MoE load balancing / router z-loss; zero for a dense model)."""

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
        # GPT.forward(ids, targets) is the fused chunked head + cross-entropy (`llm_core.linear_ce`): the
        # (B, T, V) logits are never held at once, the log-sum-exp is in fp32 under bf16 autocast, and
        # prompt-masked positions never go through the head.
        ce = model(batch["input_ids"], batch["labels"])  # () mean over labelled positions
        loss, metrics = add_auxiliary_loss(model, ce, {})
        metrics["lm_loss"] = float(ce.detach())
        return loss, metrics


def language_modeling(config: Any, model: nn.Module) -> LanguageModelingObjective:
    """The objective of the pretrain and sft stages (registered in `stages.STAGES`)."""
    return LanguageModelingObjective()


def add_auxiliary_loss(model: nn.Module, loss: torch.Tensor,
                       metrics: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
    """`loss` + the MoE layers' auxiliary loss of the last forward, with `aux_loss` and `expert_load`
    (mean fraction of tokens routed to each expert over the MoE layers; uniform = 1/E each) in `metrics`.
    A dense model returns `loss` unchanged."""
    bare = unwrap(model)
    moe_layers = bare.moe_layers() if hasattr(bare, "moe_layers") else []
    if not moe_layers:
        return loss, metrics
    aux = bare.auxiliary_loss()
    metrics["aux_loss"] = float(aux.detach())
    load = torch.stack([m.expert_fraction.detach().float() for m in moe_layers]).mean(0)
    metrics["expert_load"] = [round(float(x), 4) for x in load]
    return loss + aux, metrics
