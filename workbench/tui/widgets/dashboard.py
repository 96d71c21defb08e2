"""`Dashboard`: the live view of one run: status line, and plots of the learning rate (planned schedule
with the steps done), the pre-clip gradient norm (clipping threshold and clipped steps), train/val loss
(smoothing, log scale, step or tokens axis), plus reward margin/accuracy for DPO runs and expert load for
MoE runs, the KD and CE terms for distill runs, or two runs' losses when comparing. RL runs show the completion length / step-by-step share in
place of the loss, and reward, sample accuracy, no-signal groups and KL in the fourth plot.

The app feeds it a `RunSeries` (`show_run`) and calls `refresh_status` (about 4 Hz) and `refresh_plots`
for one plot at a time, in turn, so each plot is redrawn once a second and no frame has to build more
than one plot while a run trains (skipped while the dashboard is hidden, and for a plot whose run has not
changed since it was built). A past run is read by the dashboard itself (`open_run_dir`,
`open_compare_dirs`) in a thread worker, with its planned LR schedule: "loading" shows meanwhile, and a
result that comes back after the user moved on (another run shown, a run started) is dropped. The plots of
a long run (over BACKGROUND_STEPS steps) are built and drawn in the plots' worker too (`MetricPlot`).

It owns its keys (they apply only while the focus is on the dashboard, never while typing elsewhere):
m / l / t change the view here; p, x (after a confirmation, in the app) and c ask the app, through
messages, to pause, stop, or chat with the run shown. With no run it shows what to do, and a button that
trains the run panel's configuration (the default experiment unless changed).
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import Button, Input, Label, Static

from workbench.plotting import (
    PlotSpec, RunSeries, compare_spec, distill_spec, dpo_spec, grad_spec, length_spec, loss_spec, lr_spec, moe_spec,
    planned_lr, reward_spec,
)

from .plot import MetricPlot

SMOOTHING = 0.9
PLOTS = ("plot-lr", "plot-grad", "plot-loss", "plot-extra")
BACKGROUND_STEPS = 20_000  # a run with more (logged or planned) steps has its plots built off the UI thread


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


def plot_spec(plot_id: str, run: RunSeries, compare: RunSeries | None, plan: list[float] | None,
              smoothing: float, log_y: bool, x_axis: str) -> PlotSpec:
    """What plot `plot_id` (one of PLOTS) shows of `run` with these view settings."""
    if plot_id == "plot-lr":
        return lr_spec(run, plan)
    if plot_id == "plot-grad":
        return grad_spec(run)
    if plot_id == "plot-loss":
        # RL: the policy loss says little; the completion length is the curve to watch (R1-Zero's
        # "longer thinking" appears there), with the step-by-step share.
        return length_spec(run) if run.is_rl else loss_spec(run, smoothing, log_y, x_axis)
    if compare is not None:
        return compare_spec(run, compare, smoothing, log_y)
    if run.is_rl:
        return reward_spec(run)
    if run.is_distill:
        return distill_spec(run)
    if run.is_dpo:
        return dpo_spec(run)
    if run.is_moe:
        return moe_spec(run)
    return loss_spec(run, SMOOTHING, True, "tokens")


def _plan_key(run: RunSeries) -> object:
    return id(run), tuple(sorted(run.config.items())) if run.config else None


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

    class RunRead(Message):
        """The reader worker's result: the series of the run(s) asked for by `request`, or why not."""

        def __init__(self, request: int, series: list[RunSeries], plan: list[float] | None, state: str,
                     run_dir: Path, error: str | None = None) -> None:
            super().__init__()
            self.request, self.series, self.plan, self.state, self.run_dir, self.error = \
                request, series, plan, state, run_dir, error

    reading: reactive[str] = reactive("")  # the run being read ("" when none)

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
        self.request = 0  # what was last asked to be shown; a read for an older request is stale
        self._plan: tuple[object, list[float] | None] = (None, None)  # (its _plan_key, the planned LR)
        self._built: dict[str, tuple] = {}  # plot id -> what its spec was built from (skip unchanged)
        self.plot_updates = 0
        self._status = ""
        self._bindings_state: tuple = ()

    def compose(self) -> ComposeResult:
        yield Static("no run", id="status")
        with Vertical(id="welcome"):
            yield Static(welcome_text("the default experiment"), id="welcome-text")
            yield Button("Train", id="welcome-train", variant="primary")
        yield Static("", id="loading-text")
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
        self._show_view()

    def _show_view(self) -> None:
        """One of: the welcome (no run), "loading" (a run being read), the plots."""
        loading, welcome = bool(self.reading), self.run is None and not self.reading
        button = self.query_one("#welcome-train", Button)
        # A focused widget that is hidden loses the focus, and then no key of the dashboard's reaches it.
        keep_focus = not welcome and self.is_attached and self.screen.focused is button
        self.query_one("#welcome").display = welcome
        self.query_one("#loading-text").display = loading
        self.query_one("#plots").display = not welcome and not loading
        self.query_one("#live-controls").display = not welcome and not loading
        if keep_focus:
            self.screen.set_focus(self)
        if not welcome and not loading:  # plots shown again get no Show event: draw once they are laid out
            self.call_after_refresh(self._draw_visible_plots)

    def _draw_visible_plots(self) -> None:
        for plot in self.query(MetricPlot):
            plot.draw_if_visible()

    def watch_reading(self, reading: str) -> None:
        if not self.is_mounted:
            return
        self.query_one("#loading-text", Static).update(f"loading {reading} ..." if reading else "")
        self._show_view()
        self.refresh_status()

    def set_plan(self, plan: str) -> None:
        """What the welcome button trains, in words (the app keeps it in step with the run panel)."""
        self.query_one("#welcome-text", Static).update(welcome_text(plan))
        self.query_one("#welcome-train", Button).label = f"Train {plan.split(':')[0]} (Enter)"

    def focus_here(self) -> None:
        """Where the focus goes when the dashboard is shown: the welcome button, or the dashboard."""
        self.screen.set_focus(self.query_one("#welcome-train", Button) if self.run is None and not self.reading
                              else self)  # now, not deferred past queued keys

    # --- what is shown --------------------------------------------------------------------------------
    def show_run(self, run: RunSeries | None, state: str = "", run_dir: Path | None = None,
                 compare: RunSeries | None = None) -> None:
        """Show `run` (and `compare`, its losses beside it): a read still under way is dropped."""
        self.request += 1
        self.run, self.state, self.run_dir, self.compare = run, state, run_dir, compare
        self._built.clear()
        self.reading = ""
        self._show_view()
        self.refresh_status()
        self.refresh_plots(force=True)
        self.refresh_bindings()  # (a no-op unless p / x / m / c changed)

    def show_compare(self, first: RunSeries, second: RunSeries, first_dir: Path | None = None) -> None:
        self.show_run(first, f"compared with {second.name}", first_dir, compare=second)

    def show_loading(self, name: str) -> int:
        """Show that `name` is being read (by the caller or `open_run_dir`); returns the request to pass to
        `is_pending` when the result comes back."""
        self.request += 1
        self.run, self.compare, self.run_dir, self.state = None, None, None, ""
        self.reading = name
        self.refresh_bindings()
        return self.request

    def is_pending(self, request: int) -> bool:
        """Whether `request` (from show_loading) is still what the dashboard waits for."""
        return request == self.request and bool(self.reading)

    def open_run_dir(self, run_dir: Path, state: str = "") -> None:
        """Show the past run in `run_dir`, read in a worker ("loading" meanwhile)."""
        self._read(self.show_loading(run_dir.name), [run_dir], state)

    def open_compare_dirs(self, first: Path, second: Path) -> None:
        """Show the run in `first` with its losses beside those of `second`, both read in a worker."""
        self._read(self.show_loading(f"{first.name} and {second.name}"), [first, second],
                   f"compared with {second.name}")

    @work(thread=True, exclusive=True, group="dashboard-read", exit_on_error=False)
    def _read(self, request: int, run_dirs: list[Path], state: str) -> None:
        try:
            series = [RunSeries.from_run(path) for path in run_dirs]
            plan = planned_lr(series[0].config) if series[0].config else None
            self.post_message(self.RunRead(request, series, plan, state, run_dirs[0]))
        except Exception as exc:  # an unreadable file is a notice, never the end of the app
            self.post_message(self.RunRead(request, [], None, state, run_dirs[0], f"{type(exc).__name__}: {exc}"))

    @on(RunRead)
    def _run_read(self, event: RunRead) -> None:
        event.stop()
        if not self.is_pending(event.request):
            return  # the user moved on (another run, a run started here): not shown
        if event.error is not None:
            self.notify(f"cannot read {event.run_dir}: {event.error}", severity="error")
            self.show_run(None)
            return
        first = event.series[0]
        self._plan = (_plan_key(first), event.plan)
        self.show_run(first, event.state, event.run_dir, compare=event.series[1] if len(event.series) > 1 else None)

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
        if self.reading:
            text = f"{self.reading} (loading ...)" + (f" | {self.also}" if self.also else "")
        else:
            text = status_text(self.run, self.state, self.also)
        if text != self._status:  # one line of fixed size: no layout pass (it would cost the whole screen)
            self._status = text
            self.query_one("#status", Static).update(text, layout=False)

    def _plan_for(self, run: RunSeries) -> list[float] | None:
        """The run's planned LR schedule, computed once per run and config (may run in a plot worker: the
        cache is one tuple, replaced whole)."""
        key, plan = self._plan
        if key != _plan_key(run):
            key, plan = _plan_key(run), planned_lr(run.config) if run.config else None
            self._plan = (key, plan)
        return plan

    def _build_spec(self, plot_id: str, run: RunSeries, compare: RunSeries | None, smoothing: float,
                    log_y: bool, x_axis: str) -> PlotSpec:
        plan = self._plan_for(run) if plot_id == "plot-lr" else None
        return plot_spec(plot_id, run, compare, plan, smoothing, log_y, x_axis)

    def refresh_plots(self, force: bool = False, only: str | None = None) -> None:
        """Give the plots (or just the plot `only`, one of PLOTS) the run's latest data. A plot whose run and
        view settings have not changed since its spec was built is left alone (a past run costs nothing
        per tick); a long run's specs are built and drawn in the plots' worker."""
        if self.run is None or (not force and not self.is_on_screen):
            return
        run, compare = self.run, self.compare
        view = (self.smoothing, self.log_y, self.x_axis)
        key = (id(run), run.version, id(compare), compare.version if compare is not None else None, view)
        big = max(len(run.steps), run.total_steps or 0) > BACKGROUND_STEPS
        updated = False
        for plot_id in (only,) if only else PLOTS:
            before = self._built.get(plot_id)
            if before == key:
                continue
            self._built[plot_id] = key
            updated = True
            build = partial(self._build_spec, plot_id, run, compare, *view)
            plot = self.query_one(f"#{plot_id}", MetricPlot)
            if not big:
                plot.set_spec(build())
                continue
            if before is None or before[0] != id(run):  # not the previous run's picture meanwhile
                plot.set_spec(PlotSpec(run.name or "run", empty_message=f"drawing {len(run.steps):,} steps ..."))
            plot.set_spec_later(build)
        self.plot_updates += updated

    # --- keys ---------------------------------------------------------------------------------------
    def refresh_bindings(self) -> None:
        """Only when what `check_action` answers has changed: each refresh recomposes the footer (tens of
        ms of the UI thread), and showing a run asks for it from several places."""
        state = tuple(self.check_action(a, ()) for a in ("pause", "stop", "smoothing", "chat"))
        if state != self._bindings_state:
            self._bindings_state = state
            super().refresh_bindings()

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
