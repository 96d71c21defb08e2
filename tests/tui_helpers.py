"""Helpers for the TUI tests: a tiny trained checkpoint, waiting on conditions (never on sleeps)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from llm_core.training import Trainer
from training_helpers import tiny_config


def trained_run(tmp_path: Path, name: str = "base", **overrides) -> Path:
    """A finished tiny run with a checkpoint (milliseconds), in tmp_path/runs/<name>."""
    cfg = tiny_config(tmp_path, name=name, context_length=64, **overrides)
    trainer = Trainer(cfg)
    trainer.run()
    return trainer.run_dir


async def until(pilot, condition: Callable[[], bool], what: str, rounds: int = 2000) -> None:
    """Let the app run until `condition()` holds (each round yields to the event loop and the workers)."""
    for _ in range(rounds):
        if condition():
            return
        await pilot.pause(0.01)
    raise AssertionError(f"timed out waiting for: {what}")


async def runs_listed(pilot) -> None:
    """Until the runs list has read the run folders (it reads them in a worker)."""
    runs = pilot.app.query_one("#runs-list")
    await until(pilot, lambda: not runs.reading, "the run folders read")


async def run_shown(pilot) -> None:
    """Until the dashboard shows the run it was asked to read, every visible plot drawn."""
    dash = pilot.app.query_one("#dash")
    await until(pilot, lambda: not dash.reading and dash.run is not None
                and all(p.up_to_date for p in dash.query("MetricPlot")), "the run read and drawn")
