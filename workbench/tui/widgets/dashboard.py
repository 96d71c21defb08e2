"""`Dashboard`: the live view of one run: status line, and plots of the learning rate (planned schedule
with the steps done), the pre-clip gradient norm (clipping threshold and clipped steps), train/val loss
(smoothing, log scale, step or tokens axis), plus reward margin/accuracy for DPO runs and expert load for
MoE runs, or two runs' losses when comparing. RL runs show the completion length / step-by-step share in
place of the loss, and reward, sample accuracy, no-signal groups and KL in the fourth plot.

It never reads events itself: the app feeds it a `RunSeries` and calls `refresh_status` (about 4 Hz) and
`refresh_plots` for one plot at a time, in turn, so each plot is redrawn once a second and no frame has to
build more than one plot while a run trains (skipped while the dashboard is hidden).

It owns its keys (they apply only while the focus is on the dashboard, never while typing elsewhere):
m / l / t change the view here; p, x (after a confirmation, in the app) and c ask the app, through
messages, to pause, stop, or chat with the run shown. With no run it shows what to do, and a button that
trains the run panel's configuration (the default experiment unless changed).
"""
from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, Input, Label, Static

from workbench.plotting import (
    PlotSpec, RunSeries, compare_spec, dpo_spec, grad_spec, length_spec, loss_spec, lr_spec, moe_spec, planned_lr,
    reward_spec,
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


def status_text(run: RunSeries | None, state: str = "", also: str = "") -> str:
    """step / total, tokens/s, ETA, elapsed, device (+ state, the last alarm, and `also`: another run
    training here while this one is shown)."""
    if run is None or (not run.steps and run.total_steps is None):
        head = f"{run.name} " if run is not None and run.name else "no run "
        text = f"{head}{('(' + state + ')') if state else ''}".strip()
        return f"{text} | {also}" if also else text
    step = (run.last_step + 1) if run.last_step is not None else 0
    total = run.total_steps if run.total_steps is not None else "?"
    parts = [f"{run.name or 'run'}", f"step {step}/{total}", f"{run.tokens_per_s:,.0f} tok/s",
             f"ETA {_clock(run.eta_seconds())}", f"elapsed {_clock(run.elapsed)}", run.device or "?"]
    if state:
        parts.append(state)
    if run.alarms:
        parts.append(f"ALARM: {run.alarms[-1]}")
    if also:
        parts.append(also)
    return " | ".join(parts)


def welcome_text(plan: str) -> str:
    return (f"No run yet.\n\nPress Enter to train {plan}.\nThe status line above shows its ETA as soon as "
            "it starts; when it finishes, press c here to chat with it.\n\n"
            "Or: 1 to change the run first (ctrl+s starts it there), 3 to open an existing run.")


class Dashboard(Vertical, can_focus=True):
    BINDINGS = [
        Binding("m", "smoothing", "Smooth"),
        Binding("l", "log_scale", "Log"),
        Binding("t", "x_axis", "Step/tokens"),
        Binding("p", "pause", "Pause/Resume"),
        Binding("x", "stop", "Stop"),
        Binding("c", "chat", "Chat with this run"),
        Binding("escape", "focus_dashboard", show=False),
    ]

    class PauseRequested(Message):
        """p: pause or resume the run training here."""

    class StopRequested(Message):
        """x: stop the run training here (the app confirms first)."""

    class StartRequested(Message):
        """The welcome button: train the run panel's configuration."""

    class ChatRequested(Message):
        """c: chat with the latest checkpoint of the run shown."""

        def __init__(self, run_dir: Path) -> None:
            super().__init__()
            self.run_dir = run_dir

    class TuneRequested(Message):
        """A live value typed under the plots (DPO beta or LR scale), for the run training here."""

        def __init__(self, name: str, value: float) -> None:
            super().__init__()
            self.name = name
            self.value = value

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.run: RunSeries | None = None
        self.compare: RunSeries | None = None
        self.state = ""
        self.also = ""  # another run training here while this one is shown
        self.run_dir: Path | None = None  # where the run shown lives (for c), when known
        self.training_here = False  # the app sets it: p and x apply
        self.smoothing = 0.0
        self.log_y = False
        self.x_axis = "step"
        self._plan: list[float] | None = None
        self._plan_key: object = None
        self.plot_updates = 0
        self._status = ""

    def compose(self) -> ComposeResult:
        yield Static("no run", id="status")
        with Vertical(id="welcome"):
            yield Static(welcome_text("the default experiment"), id="welcome-text")
            yield Button("Train", id="welcome-train", variant="primary")
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

    def on_mount(self) -> None:
        self._show_welcome(self.run is None)

    def _show_welcome(self, show: bool) -> None:
        self.query_one("#welcome").display = show
        self.query_one("#plots").display = not show
        self.query_one("#live-controls").display = not show

    def set_plan(self, plan: str) -> None:
        """What the welcome button trains, in words (the app keeps it in step with the run panel)."""
        self.query_one("#welcome-text", Static).update(welcome_text(plan))
        self.query_one("#welcome-train", Button).label = f"Train {plan.split(':')[0]} (Enter)"

    def focus_here(self) -> None:
        """Where the focus goes when the dashboard is shown: the welcome button, or the dashboard."""
        self.screen.set_focus(self.query_one("#welcome-train", Button) if self.run is None else self)  # now, not deferred

    def show_run(self, run: RunSeries | None, state: str = "", run_dir: Path | None = None) -> None:
        self.run, self.state, self.run_dir = run, state, run_dir
        self.compare = None
        self._plan_key = None
        self._show_welcome(run is None)
        self.refresh_status()
        self.refresh_plots(force=True)

    def show_compare(self, first: RunSeries, second: RunSeries, first_dir: Path | None = None) -> None:
        self.show_run(first, f"compared with {second.name}", first_dir)
        self.compare = second
        self.refresh_plots(force=True)

    def update_live(self, state: str, also: str, training_here: bool) -> None:
        """What the app knows about the run shown: its state word, another run training here (or ""), and
        whether the run shown trains in this process (p and x apply then)."""
        changed = training_here != self.training_here
        self.state, self.also, self.training_here = state, also, training_here
        self.refresh_status()
        if changed:
            self.refresh_bindings()

    def set_run_dir(self, run_dir: Path) -> None:
        """The folder of the run shown, once known (a run training here names it in its start event)."""
        self.run_dir = run_dir
        self.refresh_bindings()

    def refresh_status(self) -> None:
        text = status_text(self.run, self.state, self.also)
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
            # RL: the policy loss says little; the completion length is the curve to watch (R1-Zero's
            # "longer thinking" appears there), with the step-by-step share.
            return length_spec(run) if run.is_rl else loss_spec(run, self.smoothing, self.log_y, self.x_axis)
        if self.compare is not None:
            return compare_spec(run, self.compare, self.smoothing, self.log_y)
        if run.is_rl:
            return reward_spec(run)
        if run.is_dpo:
            return dpo_spec(run)
        if run.is_moe:
            return moe_spec(run)
        return loss_spec(run, SMOOTHING, True, "tokens")

    # --- keys ---------------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("pause", "stop"):
            return self.training_here
        if action in ("smoothing", "log_scale", "x_axis"):
            return self.run is not None
        if action == "chat":  # a run with a checkpoint to talk to
            return self.run_dir is not None and self.run is not None and bool(self.run.checkpoints)
        return True

    def action_smoothing(self) -> None:
        self.smoothing = 0.0 if self.smoothing else SMOOTHING
        self.refresh_plots(force=True)

    def action_log_scale(self) -> None:
        self.log_y = not self.log_y
        self.refresh_plots(force=True)

    def action_x_axis(self) -> None:
        self.x_axis = "tokens" if self.x_axis == "step" else "step"
        self.refresh_plots(force=True)

    def action_pause(self) -> None:
        self.post_message(self.PauseRequested())

    def action_stop(self) -> None:
        self.post_message(self.StopRequested())

    def action_chat(self) -> None:
        if self.run_dir is not None:
            self.post_message(self.ChatRequested(self.run_dir))

    def action_focus_dashboard(self) -> None:
        """Esc in a live field gives the focus back, so the dashboard's and the panel keys apply again."""
        self.focus()

    @on(Button.Pressed, "#welcome-train")
    def _welcome_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.post_message(self.StartRequested())

    @on(Input.Submitted, "#live-beta")
    def _beta_submitted(self, event: Input.Submitted) -> None:
        self._tune(event, "beta")

    @on(Input.Submitted, "#live-lr-scale")
    def _lr_scale_submitted(self, event: Input.Submitted) -> None:
        self._tune(event, "lr_scale")

    def _tune(self, event: Input.Submitted, name: str) -> None:
        event.stop()
        try:
            value = float(event.value)
        except ValueError:
            self.notify(f"{name}: not a number: {event.value!r}", severity="error")
            return
        self.post_message(self.TuneRequested(name, value))
