"""`workbench plot RUN`: the dashboard's plots drawn with plotext in any terminal (headless runs over ssh).

    workbench plot runs/pretrain                       # loss, lr, grad_norm
    workbench plot runs/dpo --metric dpo --metric loss --smooth 0.9 --log
    workbench plot runs/sft --compare runs/sft-lora    # two runs' losses on one plot
"""
from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from llm_core.errors import ConfigError
from llm_core.training.runs import read_run
from workbench.plotting import METRICS, RunSeries, compare_spec, render_text, spec_for

# An Enum, not a Literal: typer takes list[Enum] (repeatable --metric) but not list[Literal[...]].
Metric = Enum("Metric", {name: name for name in METRICS}, type=str)


def load_series(path: Path) -> RunSeries:
    """A run's metrics as plot series; a missing or broken run folder is a one-line error."""
    if not path.is_dir():
        raise ConfigError(f"{path}: no such run folder")
    info = read_run(path)
    if info.broken:
        raise ConfigError(f"{path}: broken run folder ({info.broken})")
    series = RunSeries.from_run(path)
    if not series.config:
        series.config = info.config
    return series


def plot(
    run: Path = typer.Argument(..., help="A run folder (runs/<name>)."),
    metric: list[Metric] = typer.Option([], "--metric", "-m", show_default=False,
                                        help="A plot (repeatable; default loss, lr and grad_norm)."),
    smooth: float = typer.Option(0.0, "--smooth", help="EMA smoothing weight for the loss, in [0, 1)."),
    log: bool = typer.Option(False, "--log", help="Log scale for the loss."),
    compare: Optional[Path] = typer.Option(None, "--compare", help="A second run: plot both losses."),
    width: int = typer.Option(100, "--width"),
    height: int = typer.Option(20, "--height"),
    color: bool = typer.Option(True, "--color/--no-color"),
) -> None:
    """Plot a run's learning rate, gradient norm, loss, DPO rewards or expert load in the terminal."""
    if not 0.0 <= smooth < 1.0:
        raise ConfigError(f"--smooth: must be in [0, 1), got {smooth}")
    if width < 20 or height < 5:
        raise ConfigError(f"--width/--height: at least 20 x 5, got {width} x {height}")
    series = load_series(run)
    if compare is not None:
        other = load_series(compare)
        typer.echo(render_text(compare_spec(series, other, smooth, log), width, height, color))
        return
    for name in [m.value for m in metric] or ["loss", "lr", "grad_norm"]:
        typer.echo(render_text(spec_for(name, series, smooth, log), width, height, color))


def register(app: typer.Typer) -> None:
    app.command("plot")(plot)
