"""Collapse alarms for DPO training.

Two known failure modes of DPO (see e.g. Pal et al., 2024, "Smaug: Fixing Failure Modes of Preference
Optimisation with DPO-Positive", arXiv:2402.13228, and Rafailov et al., 2024, "From r to Q*"):

- "chosen_logp_falling": the loss only needs the chosen log-prob to fall LESS than the rejected one, so the
  margin can rise while the policy pushes both responses down. The preferred answers become less likely
  than before training, which usually shows up as degenerate generations. Detected when, over the last
  `window` steps, the chosen log-prob trends down (correlation with time <= -min_trend, total fall >=
  min_logp_drop nats) while the reward margin trends up. The chosen log-prob is measured against the
  reference (chosen_reward / beta) when the event has those fields, else policy_chosen_logp is used.
- "overfitting": the training loss approaches 0 (the policy separates the training pairs perfectly) while
  validation reward accuracy has stopped improving for `patience` evaluations.

`CollapseMonitor.update(event)` takes step events (loss, policy_chosen_logp, reward_margin) and eval events
(val_reward_accuracy) in order and returns alarm dicts {"type": "alarm", "kind", "message", "step"}. An
alarm fires once per episode: it re-arms only after its condition has cleared. Events are de-duplicated by
step, so several listeners may feed the same monitor.
"""
from __future__ import annotations

import math
from collections import deque
from typing import Any


def trend(values: list[float]) -> tuple[float, float]:
    """(least-squares slope per step, Pearson correlation with time) of equally spaced values."""
    n = len(values)
    t_mean = (n - 1) / 2
    v_mean = sum(values) / n
    cov = sum((i - t_mean) * (v - v_mean) for i, v in enumerate(values))
    t_var = sum((i - t_mean) ** 2 for i in range(n))
    v_var = sum((v - v_mean) ** 2 for v in values)
    slope = cov / t_var if t_var else 0.0
    corr = cov / math.sqrt(t_var * v_var) if t_var and v_var else 0.0
    return slope, corr


def _number(event: dict[str, Any], key: str) -> float | None:
    value = event.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


class CollapseMonitor:
    def __init__(
        self,
        window: int = 40,  # steps; at batch 8 a 20-step window of per-batch margins was too noisy to see a
        # collapse that the 40-step window caught within 8 steps of its start (default experiment, beta 0.1)
        min_trend: float = 0.6,
        min_logp_drop: float = 5.0,
        loss_floor: float = 0.05,
        patience: int = 3,
        min_improvement: float = 0.01,
    ) -> None:
        if window < 3 or patience < 1:
            raise ValueError("CollapseMonitor: window must be >= 3 and patience >= 1")
        self.window = window
        self.min_trend = min_trend  # |correlation with time| that counts as "steadily"
        self.min_logp_drop = min_logp_drop  # nats the chosen log-prob must lose across the window
        self.loss_floor = loss_floor  # "approaches 0": mean training loss of the window below this
        self.patience = patience  # evaluations without val reward accuracy improvement = "stalls"
        self.min_improvement = min_improvement
        self.chosen: deque[float] = deque(maxlen=window)
        self.margin: deque[float] = deque(maxlen=window)
        self.losses: deque[float] = deque(maxlen=window)
        self.val_accuracy: list[float] = []
        self._last_step: dict[str, int] = {}
        self._active: set[str] = set()  # alarms that fired and whose condition still holds

    # --- Feeding ------------------------------------------------------------------------------------
    def update(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        """Feed one event; "type" decides step vs eval, else the presence of val_reward_accuracy."""
        kind = event.get("type") or ("eval" if "val_reward_accuracy" in event else "step")
        if kind == "step":
            return self.update_step(event)
        if kind == "eval":
            return self.update_eval(event)
        return []

    def _fresh(self, kind: str, event: dict[str, Any]) -> bool:
        step = event.get("step")
        if not isinstance(step, int):
            return True
        if step <= self._last_step.get(kind, -1):
            return False  # already seen (a second listener, or a replay after resume)
        self._last_step[kind] = step
        return True

    def update_step(self, metrics: dict[str, Any]) -> list[dict[str, Any]]:
        if not self._fresh("step", metrics) or metrics.get("skipped"):
            return []
        chosen, margin = _number(metrics, "policy_chosen_logp"), _number(metrics, "reward_margin")
        beta, chosen_reward = _number(metrics, "beta"), _number(metrics, "chosen_reward")
        if beta and chosen_reward is not None and margin is not None:
            # Prefer the log-ratio against the reference (reward / beta): it is the chosen log-prob with each
            # pair's own starting point removed, so batches of longer or shorter responses do not add noise,
            # and a beta change mid-run does not look like a jump.
            chosen, margin = chosen_reward / beta, margin / beta
        # The DPO term alone: an added NLL term (sft_weight) never lets the total approach 0.
        loss = _number(metrics, "dpo_loss")
        loss = loss if loss is not None else _number(metrics, "loss")
        if chosen is not None and margin is not None:
            self.chosen.append(chosen)
            self.margin.append(margin)
        if loss is not None:
            self.losses.append(loss)
        return self._check(metrics.get("step"))

    def update_eval(self, metrics: dict[str, Any]) -> list[dict[str, Any]]:
        if not self._fresh("eval", metrics):
            return []
        accuracy = _number(metrics, "val_reward_accuracy")
        if accuracy is None:
            return []
        self.val_accuracy.append(accuracy)
        return self._check(metrics.get("step"))

    # --- Conditions ---------------------------------------------------------------------------------
    def chosen_logp_falling(self) -> str | None:
        """A message when the chosen log-prob falls steadily while the margin rises, else None."""
        if len(self.chosen) < self.window:
            return None
        chosen, margin = list(self.chosen), list(self.margin)
        c_slope, c_corr = trend(chosen)
        m_slope, m_corr = trend(margin)
        drop = -c_slope * (len(chosen) - 1)
        if c_corr <= -self.min_trend and drop >= self.min_logp_drop and m_corr >= self.min_trend and m_slope > 0:
            return (
                f"chosen log-prob fell {drop:.2f} nats over the last {len(chosen)} steps "
                f"(now {chosen[-1]:.2f}) while the margin rose to {margin[-1]:.3f} nats: the policy is "
                "pushing chosen AND rejected responses down; lower the learning rate or raise beta"
            )
        return None

    def overfitting(self) -> str | None:
        """A message when the train loss is near 0 while validation reward accuracy stalls, else None."""
        if len(self.losses) < self.window or len(self.val_accuracy) <= self.patience:
            return None
        mean_loss = sum(self.losses) / len(self.losses)
        before = max(self.val_accuracy[: -self.patience])
        recent = max(self.val_accuracy[-self.patience :])
        if mean_loss < self.loss_floor and recent < before + self.min_improvement:
            return (
                f"training DPO loss is {mean_loss:.4f} (near 0) but validation reward accuracy has not improved "
                f"in {self.patience} evaluations ({recent:.1%} vs best {before:.1%} before): the policy memorises "
                "the training pairs; stop, or raise beta / label smoothing"
            )
        return None

    def _check(self, step: Any) -> list[dict[str, Any]]:
        alarms = []
        for kind, message in (("chosen_logp_falling", self.chosen_logp_falling()),
                              ("overfitting", self.overfitting())):
            if message is None:
                self._active.discard(kind)  # condition cleared: the alarm may fire again later
            elif kind not in self._active:
                self._active.add(kind)
                alarm: dict[str, Any] = {"type": "alarm", "kind": kind, "message": message}
                if isinstance(step, int):
                    alarm["step"] = step
                alarms.append(alarm)
        return alarms
