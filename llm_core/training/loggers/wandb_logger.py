"""The Weights & Biases tracker (the optional extra `llm-workbench[wandb]`), offline unless asked otherwise.

`wandb.init` runs with mode "offline" unless the environment sets `WANDB_MODE` (then that mode:
`WANDB_MODE=online` after `wandb login` uploads as it trains, `disabled` writes nothing); offline runs are written to
`RUN/wandb/offline-run-*` and can be uploaded later with `wandb sync RUN/wandb/offline-run-*`. The W&B
project is `WANDB_PROJECT` or "llm-workbench"; each training session is one W&B run named after the run
folder, in a group of that name (a resumed run is a second W&B run of the group, starting at the step it
resumed from, because W&B refuses steps lower than ones it already has). The config is the run's
TrainConfig. Metrics are `train/<key>` and `eval/<key>` (`base.scalars`) logged at the event's step.
W&B's console capture is off: it must not wrap the stdout of the CLI's progress line or the TUI.
"""
from __future__ import annotations

import os
from typing import Any

from .base import SCALAR_EVENTS, RunStart, Scalar

DEFAULT_PROJECT = "llm-workbench"


def wandb_mode() -> str:
    """The mode passed to wandb.init: the user's WANDB_MODE when set, else offline. Passed explicitly, not
    left to W&B: its settings singleton reads the environment once per process, at the first init."""
    return os.environ.get("WANDB_MODE") or "offline"


class WandbLogger:
    def __init__(self) -> None:
        self.run: Any = None

    def open(self, run: RunStart) -> None:
        import wandb  # an optional extra (the registry checked it is installed)

        name = run.run_dir.name
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT, dir=str(run.run_dir), name=name,
            group=name, job_type=run.stage or None, config=run.config, mode=wandb_mode(), reinit="create_new",
            settings=wandb.Settings(console="off", silent=True),
        )

    def log(self, kind: str, step: int, values: dict[str, Scalar]) -> None:
        prefix = SCALAR_EVENTS[kind]
        # Same-step calls (a step event, then its eval) merge into one W&B history row.
        self.run.log({f"{prefix}/{key}": value for key, value in values.items()}, step=step)

    def flush(self) -> None:
        pass  # W&B's service process writes as it receives; there is nothing to force from here

    def close(self, failed: bool = False) -> None:
        run, self.run = self.run, None
        if run is not None:
            run.finish(exit_code=1 if failed else 0)
