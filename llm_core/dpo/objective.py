"""The DPO training objective: policy and reference log-probabilities of a preference batch, the loss, and
the metrics every step and evaluation reports (Rafailov et al., 2023, arXiv:2305.18290).

The reference model is the starting checkpoint, frozen. Two ways to keep it:
- "copy": a frozen deep copy of the starting model (twice the weights in memory);
- "adapters": when LoRA/DoRA adapters are active only the adapters train, so the base weights ARE the
  starting model: the reference is the same network run under `adapters_disabled` (no second copy).
"auto" picks "adapters" whenever the model has adapter layers.

Chosen and rejected sequences run through each model in ONE (2B, L) forward (`collate_preference` pads
both to the same length): one pass instead of two halves the kernel launches and, under DDP, avoids two
forwards contributing to one backward.
"""
from __future__ import annotations

import contextlib
import copy
from typing import Any, Iterable, Literal

import torch
import torch.nn as nn

from ..errors import ConfigError, DataError
from ..training.objectives import EventSink, Objective, unwrap
from .loss import IGNORE_INDEX, LossType, dpo_loss, model_sequence_logprobs
from .monitor import CollapseMonitor

Reference = Literal["copy", "adapters"]
PREFERENCE_KEYS = ("chosen_input_ids", "chosen_labels", "rejected_input_ids", "rejected_labels")


def _has_adapters(model: nn.Module) -> bool:
    from ..adapters import adapter_layers

    return bool(adapter_layers(unwrap(model)))


def frozen_copy(model: nn.Module) -> nn.Module:
    """A deep copy in eval mode with no trainable parameters: the "copy" reference model."""
    reference = copy.deepcopy(unwrap(model))
    reference.eval()
    reference.requires_grad_(False)
    return reference


class DPOObjective(Objective):
    """`loss(model, batch) -> (loss, metrics)` for preference batches; `beta` is live-tunable (the Trainer
    changes it between steps through `set_tunable`), and `on_step` raises the collapse alarms.

    metrics (floats, means over the batch's pairs): beta, chosen_reward, rejected_reward, reward_margin,
    reward_accuracy (share of pairs whose chosen reward beats the rejected one), policy_chosen_logp,
    policy_rejected_logp, dpo_loss (the DPO term alone), chosen_nll (per-token NLL of the chosen responses);
    MoE models add aux_loss. The returned loss is dpo_loss + sft_weight * chosen_nll (+ aux_loss).
    """

    TUNABLES = ("beta",)
    sequences_per_example = 2  # chosen and rejected both run through the policy

    def __init__(
        self,
        beta: float,
        reference: Reference = "copy",
        reference_model: nn.Module | None = None,
        average_logps: bool = False,
        label_smoothing: float = 0.0,
        loss_type: LossType = "sigmoid",
        cache_reference: bool = False,
        sft_weight: float = 0.0,
        monitor: CollapseMonitor | None = None,
    ) -> None:
        if reference not in ("copy", "adapters"):
            raise ConfigError(f"dpo reference: must be 'copy' or 'adapters', got {reference!r}")
        if reference == "copy" and reference_model is None:
            raise ConfigError("dpo reference: 'copy' needs a reference_model (see frozen_copy)")
        if not 0.0 <= label_smoothing < 0.5:
            raise ConfigError(f"dpo label_smoothing: must be in [0, 0.5), got {label_smoothing!r}")
        if loss_type not in ("sigmoid", "ipo"):
            raise ConfigError(f"dpo loss_type: must be sigmoid or ipo, got {loss_type!r}")
        if not sft_weight >= 0:
            raise ConfigError(f"dpo sft_weight: must be >= 0, got {sft_weight!r}")
        self.beta = float(beta)  # mutable: set_tunable("beta", ...) assigns it between steps
        self._check_beta()
        self.reference = reference
        self.reference_model = reference_model
        self.average_logps = average_logps
        self.label_smoothing = label_smoothing
        self.loss_type: LossType = loss_type
        # RPO (Pang et al., 2024, "Iterative Reasoning Preference Optimization", arXiv:2404.19733): add the
        # chosen responses' per-token negative log-likelihood. DPO alone may lower the chosen log-prob as long
        # as the rejected one falls faster (pairs that share most tokens, like worked solutions differing in one
        # digit, invite this); the NLL term holds the chosen answers up. Mutable like beta.
        self.sft_weight = float(sft_weight)
        # Reference log-probs never change (the reference is frozen), so with several epochs each pair's
        # can be computed once. Keyed by the tokens themselves: batches carry no dataset index, and a content
        # key stays right across shuffling, resume and batch composition.
        self.cache_reference = cache_reference
        self._ref_cache: dict[bytes, float] = {}
        self.monitor = monitor if monitor is not None else CollapseMonitor()

    def _check_beta(self) -> None:
        if not self.beta > 0:
            raise ConfigError(f"beta: must be > 0, got {self.beta!r}")

    # --- Reference log-probabilities ---------------------------------------------------------------
    @contextlib.contextmanager
    def _reference_network(self, model: nn.Module):
        """The reference as a module in eval mode (dropout off), restored on exit."""
        if self.reference == "copy":
            yield self.reference_model
            return
        from ..adapters import adapters_disabled

        bare = unwrap(model)
        was_training = bare.training
        bare.eval()
        try:
            with adapters_disabled(bare):
                yield bare
        finally:
            bare.train(was_training)

    @staticmethod
    def _row_keys(input_ids: torch.Tensor, labels: torch.Tensor) -> list[bytes]:
        """One key per row: its tokens up to the last labelled position (padding beyond it is irrelevant
        to a causal model) plus the label mask, so the same pair padded differently hits the cache."""
        keys = []
        mask = labels != IGNORE_INDEX  # (N, L)
        for ids, row_mask in zip(input_ids.cpu(), mask.cpu()):
            labelled = row_mask.nonzero()
            end = int(labelled[-1]) + 1 if len(labelled) else 0
            keys.append(ids[:end].numpy().tobytes() + b"|" + row_mask[:end].numpy().tobytes())
        return keys

    @torch.no_grad()
    def reference_logprobs(self, model: nn.Module, input_ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Sequence log-probs (N,) of the reference model for (N, L) ids and labels."""
        keys = self._row_keys(input_ids, labels) if self.cache_reference else None
        if keys is not None and all(k in self._ref_cache for k in keys):
            return torch.tensor([self._ref_cache[k] for k in keys], device=input_ids.device)
        with self._reference_network(model) as reference:
            logps = model_sequence_logprobs(reference, input_ids, labels, self.average_logps)  # (N,)
        if keys is not None:
            for key, value in zip(keys, logps.tolist()):
                self._ref_cache[key] = value
        return logps

    # --- The objective -----------------------------------------------------------------------------
    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
        missing = [k for k in PREFERENCE_KEYS if k not in batch]
        if missing:
            raise DataError(f"DPO batch: missing {', '.join(missing)} (use llm_core.data.collate_preference)")
        chosen_ids, rejected_ids = batch["chosen_input_ids"], batch["rejected_input_ids"]  # (B, L) each
        if chosen_ids.shape != rejected_ids.shape:
            raise DataError(
                f"DPO batch: chosen {tuple(chosen_ids.shape)} and rejected {tuple(rejected_ids.shape)} must be "
                "padded to the same (B, L) (use llm_core.data.collate_preference)"
            )
        self._check_beta()
        B = chosen_ids.size(0)
        input_ids = torch.cat([chosen_ids, rejected_ids], dim=0)  # (2B, L): chosen rows first
        labels = torch.cat([batch["chosen_labels"], batch["rejected_labels"]], dim=0)  # (2B, L)

        # Reference first: with the "adapters" strategy it runs the same network, and the policy forward
        # must come last so MoE layers keep the policy's routing statistics for the auxiliary loss.
        ref_logps = self.reference_logprobs(model, input_ids, labels)  # (2B,)
        policy_logps = model_sequence_logprobs(model, input_ids, labels, self.average_logps)  # (2B,)

        loss, chosen_rewards, rejected_rewards = dpo_loss(
            policy_logps[:B], policy_logps[B:], ref_logps[:B], ref_logps[B:], self.beta,
            label_smoothing=self.label_smoothing, loss_type=self.loss_type,
        )
        margins = chosen_rewards - rejected_rewards  # (B,)
        n_chosen_tokens = (batch["chosen_labels"] != IGNORE_INDEX).sum(-1).clamp(min=1)  # (B,)
        # Per-token NLL of the chosen responses (from the sums, whatever average_logps says).
        chosen_token_logps = policy_logps[:B] if self.average_logps else policy_logps[:B] / n_chosen_tokens
        chosen_nll = -chosen_token_logps.mean()
        dpo_value = loss
        if self.sft_weight:
            loss = loss + self.sft_weight * chosen_nll
        metrics: dict[str, Any] = {
            "beta": self.beta,
            "dpo_loss": float(dpo_value.detach()),
            "chosen_nll": float(chosen_nll.detach()),
            "chosen_reward": float(chosen_rewards.mean()),
            "rejected_reward": float(rejected_rewards.mean()),
            "reward_margin": float(margins.mean()),
            "reward_accuracy": float((margins > 0).float().mean()),
            "policy_chosen_logp": float(policy_logps[:B].detach().mean()),
            "policy_rejected_logp": float(policy_logps[B:].detach().mean()),
        }
        bare = unwrap(model)
        if hasattr(bare, "moe_layers") and bare.moe_layers():
            aux = bare.auxiliary_loss()
            loss = loss + aux
            metrics["aux_loss"] = float(aux.detach())
        return loss, metrics

    # --- Collapse alarms ---------------------------------------------------------------------------
    def on_step(self, trainer: EventSink, event: dict[str, Any]) -> None:
        """Feed a step or eval event to the collapse monitor and emit its new alarms as trainer events (so
        they reach metrics.jsonl and every subscriber). The monitor de-duplicates by step: feeding the same
        event twice emits each alarm once."""
        for alarm in self.monitor.update(event):
            trainer.emit("alarm", **{k: v for k, v in alarm.items() if k != "type"})


def make_dpo_objective(config: Any, model: nn.Module) -> DPOObjective:
    """The objective for a TrainConfig with stage "dpo" (fields beta, dpo_reference, adapter).

    Call it with the STARTING model, before any update: the "copy" reference is copied from it here.
    Optional config fields (used when present): dpo_average_logps, dpo_label_smoothing, dpo_loss_type,
    dpo_cache_reference, dpo_sft_weight.
    """
    wanted = getattr(config, "dpo_reference", "auto")
    adapted = _has_adapters(model)
    if wanted == "auto":
        reference: Reference = "adapters" if adapted else "copy"
    elif wanted in ("copy", "adapters"):
        reference = wanted
    else:
        raise ConfigError(f"TrainConfig.dpo_reference: must be auto, copy or adapters, got {wanted!r}")
    if reference == "adapters" and not adapted:
        raise ConfigError("TrainConfig.dpo_reference: 'adapters' needs a model with LoRA/DoRA adapters "
                          "(set adapter=lora or dora)")
    return DPOObjective(
        beta=config.beta,
        reference=reference,
        reference_model=frozen_copy(model) if reference == "copy" else None,
        average_logps=bool(getattr(config, "dpo_average_logps", False)),
        label_smoothing=float(getattr(config, "dpo_label_smoothing", 0.0)),
        loss_type=getattr(config, "dpo_loss_type", "sigmoid"),
        cache_reference=bool(getattr(config, "dpo_cache_reference", False)),
        sft_weight=float(getattr(config, "dpo_sft_weight", 0.0)),
    )


@torch.no_grad()
def evaluate_dpo(
    objective: DPOObjective, model: nn.Module, batches: Iterable[dict[str, torch.Tensor]]
) -> dict[str, float]:
    """Validation metrics over `batches` (pair-weighted means): val_loss, val_reward_accuracy,
    val_reward_margin, val_chosen_reward, val_rejected_reward, val_policy_chosen_logp, val_policy_rejected_logp."""
    was_training = model.training
    model.eval()
    totals: dict[str, float] = {}
    pairs = 0
    try:
        for batch in batches:
            n = int(batch["chosen_input_ids"].size(0))
            loss, metrics = objective.loss(model, batch)
            values = {"loss": float(loss), **{k: v for k, v in metrics.items() if k not in ("beta", "dpo_loss")}}
            for key, value in values.items():
                totals[key] = totals.get(key, 0.0) + float(value) * n
            pairs += n
    finally:
        model.train(was_training)
    if pairs == 0:
        raise DataError("evaluate_dpo: no batches to evaluate")
    return {f"val_{key}": total / pairs for key, total in totals.items()}
