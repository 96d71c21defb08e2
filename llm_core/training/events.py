"""The metrics-event schema (one `TypedDict` per event type) and the one fold over a run's events.

Every line of `metrics.jsonl` is one of these events, and every subscriber of a `Trainer` receives them
as they happen. `RunHistory` folds a stream of events (live, or read back from a run folder) into what
the runs list and the plots show, so both read a run the same way (the TUI's plots, `workbench plot`,
`workbench report`; `runs.read_run` folds only the lines its numbers depend on, `summary.py`). Readers treat every field as optional: files written by older
versions, or cut off mid-run, still fold.
"""
from __future__ import annotations

import json
import math
from typing import Any, Iterable, Literal, NotRequired, TypedDict, Union

Event = dict[str, Any]  # any event, as written and read (the TypedDicts below say which keys each type has)


class StepEvent(TypedDict):
    type: Literal["step"]
    step: int  # 0-based optimizer step
    epoch: int
    lr: float  # used for that step
    loss: float | None  # None when non-finite
    grad_norm: float | None  # pre-clip global norm
    clipped: bool
    tokens: int  # seen so far, all processes
    tokens_per_s: float
    elapsed: float  # seconds of training so far
    lr_scale: NotRequired[float]  # when the user changed it
    skipped: NotRequired[bool]  # a non-finite step whose update was not applied
    nonfinite: NotRequired[str]
    lm_loss: NotRequired[float]
    aux_loss: NotRequired[float]  # MoE
    expert_load: NotRequired[list[float]]  # MoE: fraction of tokens per expert
    beta: NotRequired[float]  # DPO (every objective tunable appears under its name)
    chosen_reward: NotRequired[float]
    rejected_reward: NotRequired[float]
    reward_margin: NotRequired[float]
    reward_accuracy: NotRequired[float]
    policy_chosen_logp: NotRequired[float]
    policy_rejected_logp: NotRequired[float]
    kd_loss: NotRequired[float]  # distill: T^2 * KL(teacher || student) on the trained positions (0 for traces)
    ce_loss: NotRequired[float]  # distill: cross-entropy with the labels on the same positions
    kd_temperature: NotRequired[float]  # distill (logits): the live-tunable temperature


class EvalEvent(TypedDict):
    type: Literal["eval"]
    step: int
    train_loss: float | None
    val_loss: float | None
    sample: str
    layer_grad_norms: dict[str, float]
    clip_fraction: float
    val_reward_accuracy: NotRequired[float]  # DPO
    val_reward_margin: NotRequired[float]


class StartEvent(TypedDict):
    type: Literal["start"]
    stage: str
    run_dir: str
    start_step: int
    total_steps: int
    parameters: int
    trainable_parameters: int
    world_size: int
    device: str
    train_examples: int
    val_examples: int
    config: dict[str, Any]
    estimates: dict[str, Any] | None


class EndEvent(TypedDict):
    type: Literal["end"]
    reason: Literal["finished", "stopped", "error"]
    step: int
    message: str


class AlarmEvent(TypedDict):
    type: Literal["alarm"]
    kind: str  # nonfinite, nonfinite_weights, chosen_logp_falling, overfitting, ...
    message: str
    step: NotRequired[int]


class CheckpointEvent(TypedDict):
    type: Literal["checkpoint"]
    step: int
    path: str


AnyEvent = Union[StepEvent, EvalEvent, StartEvent, EndEvent, AlarmEvent, CheckpointEvent]
END_STATUS = {"finished": "finished", "stopped": "stopped"}  # any other end reason is "error"


def parse_event(line: str | bytes) -> Event | None:
    """One metrics.jsonl line as an event; None when it is not a JSON object (a corrupt or foreign line)."""
    try:
        event = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return event if isinstance(event, dict) else None


def number(value: Any) -> float:
    """A numeric field as a float; NaN for a missing or non-numeric one (so series keep their length)."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else float("nan")


# The RL step metrics the plots follow (llm_core.rl.objective writes them on every step line).
RL_KEYS = ("reward_mean", "accuracy", "kl", "zero_std_fraction", "completion_length", "step_by_step_share")


class RunHistory:
    """The history of one run, folded from its events one at a time (`add`) or all at once."""

    def __init__(self, name: str = "") -> None:
        self.name = name
        self.steps: list[int] = []
        self.tokens: list[int] = []
        self.loss: list[float] = []
        self.lr: list[float] = []
        self.grad_norm: list[float] = []
        self.clipped: list[bool] = []
        self.eval_steps: list[int] = []
        self.val_loss: list[float] = []
        self.reward_margin: list[float] = []
        self.reward_accuracy: list[float] = []
        self.expert_load: list[list[float]] = []
        self.distill_steps: list[int] = []  # steps of a distill run, with their KD and CE terms
        self.kd_loss: list[float] = []
        self.ce_loss: list[float] = []
        self.rl_steps: list[int] = []  # steps of an RL run, with each RL_KEYS metric in `rl`
        self.rl: dict[str, list[float]] = {k: [] for k in RL_KEYS}
        self.config: dict[str, Any] = {}
        self.total_steps: int | None = None
        self.start_step = 0
        self.estimated_seconds: float | None = None  # measured before the first step (start event)
        self.device = ""
        self.parameters: int | None = None
        self.trainable_parameters: int | None = None
        self.tokens_per_s = 0.0
        self.elapsed = 0.0
        self.started = False
        self.end: Event | None = None
        self.alarms: list[str] = []
        self.checkpoints: list[str] = []
        self.evals: list[Event] = []
        self.samples: list[str] = []
        self.version = 0  # events folded in so far: a view can tell whether anything changed since it looked

    @classmethod
    def from_events(cls, events: Iterable[Event], name: str = "") -> "RunHistory":
        history = cls(name)
        for e in events:
            history.add(e)
        return history

    def add(self, e: Event) -> None:
        """Fold one event in (unknown types and missing fields are tolerated)."""
        self.version += 1
        kind = e.get("type")
        if kind == "step":
            self.steps.append(int(e.get("step", len(self.steps))))
            self.tokens.append(int(e.get("tokens") or 0))
            self.loss.append(number(e.get("loss")))
            self.lr.append(number(e.get("lr")))
            self.grad_norm.append(number(e.get("grad_norm")))
            self.clipped.append(bool(e.get("clipped")))
            self.tokens_per_s = number(e.get("tokens_per_s")) or self.tokens_per_s
            self.elapsed = number(e.get("elapsed")) or self.elapsed
            if "reward_margin" in e:
                self.reward_margin.append(number(e.get("reward_margin")))
                self.reward_accuracy.append(number(e.get("reward_accuracy")))
            if isinstance(e.get("expert_load"), list):
                self.expert_load.append([number(v) for v in e["expert_load"]])
            if "kd_loss" in e:
                self.distill_steps.append(self.steps[-1])
                self.kd_loss.append(number(e.get("kd_loss")))
                self.ce_loss.append(number(e.get("ce_loss")))
            if "reward_mean" in e:
                self.rl_steps.append(self.steps[-1])
                for k in RL_KEYS:
                    self.rl[k].append(number(e.get(k)))
        elif kind == "eval":
            self.evals.append(e)
            if e.get("val_loss") is not None:
                self.eval_steps.append(int(e.get("step", 0)))
                self.val_loss.append(number(e.get("val_loss")))
            if e.get("sample"):
                self.samples.append(str(e["sample"]))
        elif kind == "start":
            self.config = dict(e.get("config") or {})
            self.total_steps = e.get("total_steps")
            self.start_step = int(e.get("start_step") or 0)
            self.device = str(e.get("device", ""))
            self.parameters = e.get("parameters")
            self.trainable_parameters = e.get("trainable_parameters")
            remaining = (e.get("estimates") or {}).get("remaining_seconds")
            self.estimated_seconds = float(remaining) if isinstance(remaining, (int, float)) else None
            self.started, self.end = True, None
        elif kind == "end":
            self.end = e
        elif kind == "alarm":
            self.alarms.append(str(e.get("message", e.get("kind", "alarm"))))
        elif kind == "checkpoint":
            self.checkpoints.append(str(e.get("path", e.get("step"))))

    # --- What the runs list shows ---------------------------------------------------------------------
    @property
    def last_step(self) -> int | None:
        return self.steps[-1] if self.steps else None

    @property
    def steps_done(self) -> int:
        """Optimizer steps logged (the highest step + 1)."""
        return max(self.steps) + 1 if self.steps else 0

    @property
    def last_loss(self) -> float | None:
        return next((x for x in reversed(self.loss) if math.isfinite(x)), None)

    @property
    def best_val_loss(self) -> float | None:
        finite = [v for v in self.val_loss if math.isfinite(v)]
        return min(finite) if finite else None

    @property
    def status(self) -> str:
        """new (no start yet) | running | finished | stopped | error. Folded from events alone, "running"
        cannot tell a live run from a killed one: `runs.read_run` checks the run's lock for that."""
        if self.end is not None:
            return END_STATUS.get(self.end.get("reason"), "error")
        return "running" if self.started else "new"

    # --- What the plots and the status line show ------------------------------------------------------
    @property
    def is_dpo(self) -> bool:
        return bool(self.reward_margin) or self.config.get("stage") == "dpo"

    @property
    def is_rl(self) -> bool:
        return bool(self.rl_steps) or self.config.get("stage") == "rl"

    @property
    def is_distill(self) -> bool:
        return bool(self.distill_steps) or self.config.get("stage") == "distill"

    @property
    def is_moe(self) -> bool:
        return bool(self.expert_load) or int(self.config.get("moe_experts") or 0) > 0

    def eta_seconds(self) -> float | None:
        """Remaining time at the average pace of this session's steps (before the first step: the
        estimate measured at the start)."""
        if not self.steps:
            return self.estimated_seconds
        if not self.total_steps or self.elapsed <= 0:
            return None
        done = self.steps[-1] + 1 - self.start_step
        left = self.total_steps - (self.steps[-1] + 1)
        return self.elapsed / done * left if done > 0 else None
