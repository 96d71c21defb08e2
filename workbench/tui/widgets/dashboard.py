"""`Dashboard`: the live view of one run: status line, and plots of the learning rate (planned schedule
with the steps done), the pre-clip gradient norm (clipping threshold and clipped steps), train/val loss
(smoothing, log scale, step or tokens axis), plus reward margin/accuracy for DPO runs and expert load for
MoE runs, or two runs' losses when comparing.

It never reads events itself: the app feeds it a `RunSeries` and calls `refresh_status` (about 4 Hz) and
`refresh_plots` for one plot at a time, in turn, so each plot is redrawn once a second and no frame has to
build more than one plot while a run trains (skipped while the dashboard is hidden).
"""
from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Grid, Horizontal, Vertical
from textual.widgets import Input, Label, Static

from workbench.plotting import (
    PlotSpec, RunSeries, compare_spec, dpo_spec, grad_spec, loss_spec, lr_spec, moe_spec, planned_lr,
)

from .plot import MetricPlot

SMOOTHING = 0.9
PLOTS = ("plot-lr", "plot-grad", "plot-loss", "plot-extra")


def _clock(seconds: float | None) -> str:
    if seconds is None or seconds != seconds:
        return "--:--"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    return f"{h}:{rem // 60:02d}:{rem % 60:02d}" if h else f"{rem // 60:02d}:{rem % 60:02d}"


def status_text(run: RunSeries | None, state: str = "") -> str:
    """step / total, tokens/s, ETA, elapsed, device (+ state and the last alarm)."""
    if run is None or (not run.steps and run.total_steps is None):
        return f"no run {('(' + state + ')') if state else ''}".strip()
    step = (run.last_step + 1) if run.last_step is not None else 0
    total = run.total_steps if run.total_steps is not None else "?"
    parts = [f"{run.name or 'run'}", f"step {step}/{total}", f"{run.tokens_per_s:,.0f} tok/s",
             f"ETA {_clock(run.eta_seconds())}", f"elapsed {_clock(run.elapsed)}", run.device or "?"]
    if state:
        parts.append(state)
    if run.alarms:
        parts.append(f"ALARM: {run.alarms[-1]}")
    return " | ".join(parts)


class Dashboard(Vertical):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.run: RunSeries | None = None
        self.compare: RunSeries | None = None
        self.state = ""
        self.smoothing = 0.0
        self.log_y = False
        self.x_axis = "step"
        self._plan: list[float] | None = None
        self._plan_key: object = None
        self.plot_updates = 0
        self._status = ""

    def compose(self) -> ComposeResult:
        yield Static("no run", id="status")
        with Grid(id="plots"):
            yield MetricPlot(id="plot-lr")
            yield MetricPlot(id="plot-grad")
            yield MetricPlot(id="plot-loss")
            yield MetricPlot(id="plot-extra")
        with Horizontal(id="live-controls"):
            yield Label("beta", classes="label short")
            yield Input(placeholder="DPO beta", id="live-beta")
            yield Label("LR scale", classes="label short")
            yield Input(placeholder="1.0", id="live-lr-scale")

    def show_run(self, run: RunSeries | None, state: str = "") -> None:
        self.run, self.state = run, state
        self._plan_key = None
        self.refresh_status()
        self.refresh_plots(force=True)

    def refresh_status(self) -> None:
        text = status_text(self.run, self.state)
        if text != self._status:  # one line of fixed size: no layout pass (it would cost the whole screen)
            self._status = text
            self.query_one("#status", Static).update(text, layout=False)

    def refresh_plots(self, force: bool = False, only: str | None = None) -> None:
        """Give the plots (or just the plot `only`, one of PLOTS) the run's latest data."""
        if self.run is None or (not force and not self.is_on_screen):
            return
        run = self.run
        key = (id(run), tuple(sorted(run.config.items())) if run.config else None)
        if key != self._plan_key:
            self._plan = planned_lr(run.config) if run.config else None
            self._plan_key = key
        for plot_id in (only,) if only else PLOTS:
            self.query_one(f"#{plot_id}", MetricPlot).set_spec(self._spec(plot_id, run))
        self.plot_updates += 1

    def _spec(self, plot_id: str, run: RunSeries) -> PlotSpec:
        if plot_id == "plot-lr":
            return lr_spec(run, self._plan)
        if plot_id == "plot-grad":
            return grad_spec(run)
        if plot_id == "plot-loss":
            return loss_spec(run, self.smoothing, self.log_y, self.x_axis)
        if self.compare is not None:
            return compare_spec(run, self.compare, self.smoothing, self.log_y)
        if run.is_dpo:
            return dpo_spec(run)
        if run.is_moe:
            return moe_spec(run)
        return loss_spec(run, SMOOTHING, True, "tokens")

    # --- toggles (the app binds keys to these) -------------------------------------------------------
    def toggle_smoothing(self) -> None:
        self.smoothing = 0.0 if self.smoothing else SMOOTHING
        self.refresh_plots(force=True)

    def toggle_log(self) -> None:
        self.log_y = not self.log_y
        self.refresh_plots(force=True)

    def toggle_x_axis(self) -> None:
        self.x_axis = "tokens" if self.x_axis == "step" else "step"
        self.refresh_plots(force=True)
