"""The TensorBoard tracker: scalars through `torch.utils.tensorboard.SummaryWriter` into `RUN/tensorboard/`
(`tensorboard --logdir runs` shows every run; the optional extra `llm-workbench[tensorboard]`).

Tags are `train/<key>` for step events and `eval/<key>` for eval events (`base.scalars`; TensorBoard
stores each value as a float32), at the event's step. The run's config is added once as text. A resumed
run opens a new event file with `purge_step` = its start step, so TensorBoard hides what the first
session logged at or after the checkpoint it resumed from (its orphaned-data purge): each step shows
once, with the values of the session that kept it, as in metrics.jsonl.
"""
from __future__ import annotations

import json
from typing import Any

from .base import SCALAR_EVENTS, RunStart, Scalar

LOG_DIR = "tensorboard"


class TensorBoardLogger:
    def __init__(self) -> None:
        self.writer: Any = None

    def open(self, run: RunStart) -> None:
        from torch.utils.tensorboard import SummaryWriter  # imports the tensorboard package (an extra)

        self.writer = SummaryWriter(log_dir=str(run.run_dir / LOG_DIR), purge_step=run.start_step or None)
        config = json.dumps(run.config, indent=2, sort_keys=True, default=str)
        # Markdown: indented by four spaces, so the JSON shows as a code block.
        self.writer.add_text("config", "\n".join("    " + line for line in config.splitlines()), run.start_step)

    def log(self, kind: str, step: int, values: dict[str, Scalar]) -> None:
        prefix = SCALAR_EVENTS[kind]
        for key, value in values.items():
            self.writer.add_scalar(f"{prefix}/{key}", value, global_step=step)

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self, failed: bool = False) -> None:
        writer, self.writer = self.writer, None
        if writer is not None:
            writer.close()
