"""The workbench app: four panels (1 Run, 2 Dashboard, 3 Runs, 4 Chat) over the `llm_core` API.

`make_app()` is the one factory used by the `workbench` command and the tests. Heavy work (training,
loading checkpoints, generation, export) runs in thread workers; the UI pulls training events from a
buffer on timers: the status line about 4 times a second, each visible plot once a second (one plot per
tick, in turn), hidden plots not at all.
"""
from __future__ import annotations

from pathlib import Path

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.widgets import DataTable, Footer, Input, TabbedContent, TabPane
from textual.worker import Worker, WorkerState, get_current_worker

from llm_core.errors import WorkbenchError
from llm_core.training import TrainConfig
from llm_core.training.checkpoint import list_checkpoints
from llm_core.training.loading import resolve_step_dir
from workbench.plotting import RunSeries

from .commands import WorkbenchCommands
from .follow import EventBuffer, MetricsFollower
from .help import HelpScreen
from .session import TrainingSession
from .widgets.chat import ChatPane
from .widgets.checkpoint_picker import CheckpointPicker
from .widgets.dashboard import PLOTS, Dashboard
from .widgets.run_form import RunForm
from .widgets.runs_list import RunsList

PANELS = ("run", "dashboard", "runs", "chat")
STATUS_HZ = 4.0
PLOT_HZ = STATUS_HZ / len(PLOTS)  # one plot per status tick, in turn: each plot once a second
RUNS_KEYS = {"open_run", "mark_compare", "attach", "chat_run", "chat_compare", "refresh_runs", "export_hf",
             "export_adapters"}


class WorkbenchApp(App):
    CSS_PATH = "workbench.tcss"
    TITLE = "LLM Workbench"
    COMMANDS = App.COMMANDS | {WorkbenchCommands}
    BINDINGS = [
        Binding("1", "panel('run')", "Run"),
        Binding("2", "panel('dashboard')", "Dashboard"),
        Binding("3", "panel('runs')", "Runs"),
        Binding("4", "panel('chat')", "Chat"),
        Binding("s", "start", "Start"),
        Binding("p", "pause", "Pause/Resume"),
        Binding("x", "stop", "Stop"),
        Binding("m", "smoothing", "Smooth"),
        Binding("l", "log_scale", "Log"),
        Binding("t", "x_axis", "Step/tokens"),
        Binding("enter", "open_run", "Open", show=True),
        Binding("k", "mark_compare", "Compare"),
        Binding("a", "attach", "Attach"),
        Binding("c", "chat_run", "Chat"),
        Binding("v", "chat_compare", "Chat side by side"),
        Binding("r", "refresh_runs", "Refresh"),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, runs_dir: Path, config: TrainConfig) -> None:
        super().__init__()
        self.runs_dir = Path(runs_dir)
        self.base_config = config
        self.buffer = EventBuffer()
        self.session: TrainingSession | None = None
        self.train_worker: Worker | None = None
        self.live: RunSeries | None = None  # the run being trained or followed
        self.follower: MetricsFollower | None = None
        self.events_seen = 0
        self._plot_turn = 0
        self._quitting = False

    # --- layout ---------------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        with TabbedContent(initial="run", id="panels"):
            with TabPane("1 Run", id="run"):
                yield RunForm(self.base_config, id="form")
            with TabPane("2 Dashboard", id="dashboard"):
                yield Dashboard(id="dash")
            with TabPane("3 Runs", id="runs"):
                yield RunsList(self.runs_dir, id="runs-list")
            with TabPane("4 Chat", id="chat-pane"):
                yield ChatPane(export_dir=self.runs_dir, id="chat")
        yield Footer()

    def on_mount(self) -> None:
        # One timer for both, so the status line and the plot due this tick share one repaint.
        self.set_interval(1 / STATUS_HZ, self.tick)

    def tick(self) -> None:
        try:
            self.pull_events()
            self.refresh_plots()
        except NoMatches:  # a last tick while the app shuts down and its widgets are already gone
            return

    @property
    def panel(self) -> str:
        active = self.query_one("#panels", TabbedContent).active
        return "chat" if active == "chat-pane" else active

    def action_panel(self, name: str) -> None:
        self.query_one("#panels", TabbedContent).active = "chat-pane" if name == "chat" else name
        self.refresh_bindings()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open_run()  # Enter on a run (the table has the focus, so its own Enter binding fires)

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        self.refresh_bindings()
        if self.panel == "runs":
            self.query_one("#runs-list", RunsList).query_one(DataTable).focus()

    # --- which keys apply now (the footer shows only these) --------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        active = self.session is not None and self.session.active
        if action == "start":
            return not active and self.panel in ("run", "dashboard")
        if action in ("pause", "stop"):
            return active
        if action in ("smoothing", "log_scale", "x_axis"):
            return self.panel == "dashboard"
        if action in RUNS_KEYS:
            return self.panel == "runs"
        return True

    # --- training -------------------------------------------------------------------------------------
    def action_start(self) -> None:
        if self.session is not None and self.session.active:
            self.notify("a run is already training", severity="warning")
            return
        form = self.query_one("#form", RunForm)
        config = form.validate_form()
        if config is None:
            self.notify(f"cannot start: {form.error}", severity="error")
            return
        self.buffer = EventBuffer()
        self.follower = None
        self.session = TrainingSession(config, self.buffer)
        self.live = RunSeries(config.name or config.stage)
        self.query_one("#dash", Dashboard).show_run(self.live, "starting")
        self.train_worker = self._train()
        self.action_panel("dashboard")

    @work(thread=True, exclusive=True, group="train", exit_on_error=False)
    def _train(self) -> dict | None:
        worker = get_current_worker()
        session = self.session
        if session is None:
            return None
        return session.run(should_stop=lambda: worker.is_cancelled)

    def action_pause(self) -> None:
        if self.session is None or not self.session.active:
            return
        if self.session.pause_requested:
            self.session.resume()
            self.notify("resumed")
        else:
            self.session.pause()
            self.notify("pausing after this step")

    def action_stop(self) -> None:
        """Stop between steps; the trainer writes a checkpoint; the worker ends CANCELLED."""
        if self.session is None or not self.session.active:
            return
        self.session.stop()
        if self.train_worker is not None:
            self.train_worker.cancel()
        self.notify("stopping: a checkpoint is written after the current step")

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker is self.train_worker and event.state in (WorkerState.SUCCESS, WorkerState.ERROR,
                                                                 WorkerState.CANCELLED):
            self.refresh_bindings()
            self.query_one("#runs-list", RunsList).reload()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id not in ("live-beta", "live-lr-scale"):
            return
        try:
            value = float(event.value)
            if self.session is None or not self.session.active:
                raise WorkbenchError("no run is training")
            if event.input.id == "live-beta":
                self.session.set_beta(value)
            else:
                self.session.set_lr_scale(value)
        except (ValueError, WorkbenchError) as exc:
            self.notify(f"{event.input.id[5:]}: {exc}", severity="error")
            return
        self.notify(f"{event.input.id[5:]} = {value:g} from the next step")

    # --- timers ---------------------------------------------------------------------------------------
    def pull_events(self) -> None:
        events = self.buffer.drain()
        if self.follower is not None:
            events += self.follower.poll()
        if self.live is not None and events:
            for e in events:
                self.live.add(e)
                if e.get("type") == "alarm":
                    self.notify(str(e.get("message")), title="alarm", severity="warning", timeout=10)
                elif e.get("type") == "end" and e.get("reason") == "error":
                    self.notify(str(e.get("message")), title="run failed", severity="error", timeout=10)
            self.events_seen += len(events)
        dash = self.query_one("#dash", Dashboard)
        dash.state = self.session.state if self.session is not None and self.follower is None else (
            "attached" if self.follower else "")
        dash.refresh_status()

    def refresh_plots(self) -> None:
        """One plot per tick, in turn (each is redrawn PLOT_HZ times a second), so a keypress never waits
        behind a frame that rebuilds all four (on 2 busy cores one grad-norm plot takes tens of ms)."""
        self._plot_turn = (self._plot_turn + 1) % len(PLOTS)
        if self.panel == "dashboard":
            self.query_one("#dash", Dashboard).refresh_plots(only=PLOTS[self._plot_turn])

    # --- dashboard toggles ----------------------------------------------------------------------------
    def action_smoothing(self) -> None:
        self.query_one("#dash", Dashboard).toggle_smoothing()

    def action_log_scale(self) -> None:
        self.query_one("#dash", Dashboard).toggle_log()

    def action_x_axis(self) -> None:
        self.query_one("#dash", Dashboard).toggle_x_axis()

    # --- runs -----------------------------------------------------------------------------------------
    def _selected_run(self):
        run = self.query_one("#runs-list", RunsList).selected
        if run is None:
            self.notify("no run selected", severity="warning")
        elif run.broken:
            self.notify(f"{run.name} is broken: {run.broken}", severity="error")
            return None
        return run

    def action_refresh_runs(self) -> None:
        self.query_one("#runs-list", RunsList).reload()

    def action_open_run(self) -> None:
        run = self._selected_run()
        if run is None:
            return
        dash = self.query_one("#dash", Dashboard)
        dash.compare = None
        dash.show_run(RunSeries.from_run(run.path), run.status)
        self.action_panel("dashboard")

    def action_mark_compare(self) -> None:
        runs = self.query_one("#runs-list", RunsList)
        run = self._selected_run()
        if run is None:
            return
        if runs.marked is None or runs.marked.name == run.name:
            runs.marked = run
            self.notify(f"{run.name} marked: highlight another run and press k to compare")
            return
        dash = self.query_one("#dash", Dashboard)
        first = RunSeries.from_run(runs.marked.path)
        dash.compare = RunSeries.from_run(run.path)
        dash.show_run(first, f"compared with {run.name}")
        runs.marked = None
        self.action_panel("dashboard")

    def action_attach(self) -> None:
        run = self._selected_run()
        if run is None:
            return
        self.follower = MetricsFollower(run.path)
        self.live = RunSeries(run.name)
        self.query_one("#dash", Dashboard).show_run(self.live, "attached")
        self.action_panel("dashboard")

    def _checkpoint_of(self, run) -> Path | None:
        try:
            return resolve_step_dir(run.path)
        except WorkbenchError as exc:
            self.notify(str(exc), severity="error")
            return None

    def action_chat_run(self) -> None:
        self._open_in_chat(compare=False)

    def action_chat_compare(self) -> None:
        self._open_in_chat(compare=True)

    def _open_in_chat(self, compare: bool) -> None:
        """Chat with the highlighted run's checkpoint; when it kept several, ask which one."""
        run = self._selected_run()
        if run is None:
            return
        checkpoints = list_checkpoints(run.path)
        if len(checkpoints) > 1:
            self.push_screen(CheckpointPicker(run.name, checkpoints),
                             lambda path: self._chat_with(path, compare) if path is not None else None)
            return
        path = self._checkpoint_of(run)
        if path is not None:
            self._chat_with(path, compare)

    def _chat_with(self, path: Path, compare: bool) -> None:
        chat = self.query_one("#chat", ChatPane)
        chat.open_compare(path) if compare else chat.open_checkpoint(path)
        self.action_panel("chat")

    def action_export_hf(self) -> None:
        run = self._selected_run()
        if run is not None:
            self._export(run.path, run.path / "export-hf", None)

    def action_export_adapters(self) -> None:
        run = self._selected_run()
        if run is not None:
            self._export(run.path, None, run.path / "export-adapters")

    @work(thread=True, group="export")
    def _export(self, checkpoint: Path, hf: Path | None, adapters: Path | None) -> None:
        from llm_core.export import export_checkpoint

        try:
            message, severity = export_checkpoint(checkpoint, hf, adapters), "information"
        except (WorkbenchError, OSError) as exc:
            message, severity = f"export failed: {exc}", "error"
        self.call_from_thread(self.notify, message, severity=severity)

    # --- help and quit --------------------------------------------------------------------------------
    def action_help(self) -> None:
        panel = self.panel
        keys = [(b.key_display or b.key, b.description) for b in self.BINDINGS
                if isinstance(b, Binding) and self.check_action(b.action.split("(")[0], ()) and b.description]
        if panel == "chat":
            keys += [(b.key, b.description) for b in ChatPane.BINDINGS]
            keys.append(("←/→ ↑/↓ home/end", "token view (ctrl+t): move the cursor; p and log p of its token"))
        self.push_screen(HelpScreen(panel, keys))

    async def action_quit(self) -> None:
        """Quit; a training run is stopped between steps and writes its checkpoint first."""
        if self.session is not None and self.session.active:
            if self._quitting:
                return
            self._quitting = True
            self.notify("stopping the run and saving a checkpoint before quitting ...")
            self.action_stop()
            self._quit_when_saved()
            return
        self.exit()

    @work(thread=True, group="quit")
    def _quit_when_saved(self) -> None:
        if self.session is not None:
            self.session.wait_until_done()
        self.call_from_thread(self.exit)


def make_app(runs_dir: str | Path = "runs", config: TrainConfig | None = None) -> WorkbenchApp:
    """The workbench on `runs_dir`, with `config` (default: the embedded default experiment) in the run panel.
    New runs are written under `runs_dir`."""
    config = config or TrainConfig()
    config = config.with_overrides(out=str(runs_dir))
    return WorkbenchApp(Path(runs_dir), config)
