"""The metrics-event fold: the runs list and the plots read a run through the same `RunHistory`."""
from __future__ import annotations

import math

from llm_core.training import list_runs, read_metrics
from llm_core.training.events import RunHistory, parse_event
from training_helpers import tiny_config
from workbench.plotting import RunSeries


def test_runs_list_and_plot_series_fold_the_same_events(tmp_path) -> None:
    from llm_core.training import Trainer

    trainer = Trainer(tiny_config(tmp_path, max_steps=4, name="folded"))
    trainer.run()
    events = read_metrics(trainer.run_dir)
    history, series = RunHistory.from_events(events), RunSeries.from_run(trainer.run_dir)
    (info,) = [r for r in list_runs(trainer.run_dir.parent) if r.name == "folded"]
    assert isinstance(series, RunHistory) and series.steps == history.steps == [0, 1, 2, 3]
    assert (info.steps, info.status) == (history.steps_done, history.status) == (4, "finished")
    assert info.last_loss == history.last_loss == [e for e in events if e["type"] == "step"][-1]["loss"]
    assert info.best_val_loss == history.best_val_loss and history.best_val_loss is not None


def test_fold_tolerates_partial_and_foreign_events() -> None:
    history = RunHistory.from_events([
        {"type": "start", "config": {"stage": "dpo"}}, {"type": "step", "step": 0, "loss": None},
        {"type": "step", "step": 1, "loss": 2.5, "reward_margin": 0.1}, {"type": "eval", "step": 1, "val_loss": 3.0},
        {"type": "eval", "step": 2, "val_loss": 2.0}, {"type": "mystery"}, {"type": "end", "reason": "crashed"},
    ])
    assert history.steps_done == 2 and history.last_loss == 2.5 and math.isnan(history.loss[0])
    assert history.best_val_loss == 2.0 and history.status == "error" and history.is_dpo
    assert RunHistory().status == "new" and RunHistory.from_events([{"type": "start"}]).status == "running"
    assert parse_event('{"type": "step"}') == {"type": "step"}
    assert parse_event("[1, 2]") is None and parse_event('{"type": ') is None and parse_event(b"\xff") is None
