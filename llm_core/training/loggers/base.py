"""What every experiment tracker ("logger") implements, and the scalars it is sent.

The Trainer writes every event to `metrics.jsonl` (schema: `events.py`). A tracker sees the same run
through four calls: `open` when the run starts (its folder, the step it starts from, its config), `log`
for every step and eval event (the event's numeric fields, `scalars`), `flush` at every checkpoint (what
a tracker has buffered is on disk with the checkpoint) and `close` when the run ends, finished, stopped,
failed or interrupted. `registry.LoggerSet` makes those calls; the Trainer only hands it its events.

`scalars` is the single definition of "the same scalars as metrics.jsonl": every int, float and bool of
the event (bools as 0/1), nested dicts and lists flattened with "/" (`layer_grad_norms/h.0.attn`,
`expert_load/1`), `type` and `step` left out (the step is the x axis), and null (non-finite) values left
out, as metrics.jsonl writes them as null. Strings (the eval sample, a non-finite message) stay in
metrics.jsonl only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ..events import Event

Scalar = int | float

# Event types a tracker receives as scalars -> the prefix of their tags in TensorBoard / W&B.
SCALAR_EVENTS: dict[str, str] = {"step": "train", "eval": "eval"}


@dataclass(frozen=True)
class RunStart:
    """What a tracker needs to open: the run folder, the first step of this session (a resume starts
    past 0), the stage and the full config (`TrainConfig.to_dict()`)."""

    run_dir: Path
    start_step: int = 0
    stage: str = ""
    config: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_event(cls, event: Event) -> "RunStart":
        """From a start event (`events.StartEvent`)."""
        return cls(Path(event["run_dir"]), int(event.get("start_step") or 0), str(event.get("stage", "")),
                   dict(event.get("config") or {}))


@runtime_checkable
class Logger(Protocol):
    """An experiment tracker. Calls arrive in the training thread, in this order: open, then log / flush
    any number of times, then close (once per open)."""

    def open(self, run: RunStart) -> None: ...

    def log(self, kind: str, step: int, values: dict[str, Scalar]) -> None:
        """`kind` is "step" or "eval" (`SCALAR_EVENTS`); `values` is `scalars(event)`."""

    def flush(self) -> None: ...

    def close(self, failed: bool = False) -> None:
        """`failed`: the run ended with an error or was interrupted (W&B marks the run as failed)."""


def scalars(event: Event) -> dict[str, Scalar]:
    """The numeric fields of an event, flattened (see the module docstring), in the event's key order."""
    out: dict[str, Scalar] = {}
    for key, value in event.items():
        if key not in ("type", "step"):
            _flatten(key, value, out)
    return out


def _flatten(key: str, value: Any, out: dict[str, Scalar]) -> None:
    if isinstance(value, bool):
        out[key] = int(value)
    elif isinstance(value, int):
        out[key] = value
    elif isinstance(value, float):
        if math.isfinite(value):  # metrics.jsonl writes non-finite values as null: not a scalar there either
            out[key] = value
    elif isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{key}/{k}", v, out)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _flatten(f"{key}/{i}", v, out)
