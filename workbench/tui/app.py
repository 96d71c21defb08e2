"""The workbench app: four panels (1 Run, 2 Dashboard, 3 Runs, 4 Chat) over the `llm_core` API.

`make_app()` is the one factory used by the `workbench` command and the tests. Heavy work (training,
loading checkpoints, generation, export) runs in thread workers, and so does every reading of a run folder:
the runs list (widgets/runs_list.py), a past run's metrics for the plots (widgets/dashboard.py), the
history of a run attached to (here), checkpoint verification (widgets/checkpoint_picker.py, and the chat's
loader for a run with one checkpoint). Each shows "loading" meanwhile and drops a result the user no
longer waits for. The UI pulls training events from a buffer on timers: the status line about 4 times a
second, each visible plot once a second (one plot per tick, in turn), hidden plots not at all.

Keys: each panel owns its bindings (they apply only while the focus is inside it), and showing a panel
puts the focus where its keys work: the chat's message input, the runs table, the dashboard, the run
form. The app itself binds only 1-4 (panels), ? (help) and ctrl+q (quit); an input consumes 1-4 and ?
while the user types, and Esc leaves an input. Actions that end work ask first: stopping a run, quitting while one trains.
Panels ask the app to act through messages (`@on` handlers below); the app never reaches into their state.
"""
from __future__ import annotations

import gc
from pathlib import Path

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.message import Message
from textual.widgets import Footer, Input, TabbedContent, TabPane
from textual.worker import Worker, get_current_worker

from llm_core.errors import WorkbenchError
from llm_core.host_memory import reuse_freed_memory
from llm_core.training import TrainConfig
from llm_core.training.checkpoint import CHECKPOINTS, list_checkpoints
from llm_core.training.runs import has_runs
from workbench.plotting import RunSeries

from .commands import WorkbenchCommands
from .follow import EventBuffer, MetricsFollower
from .help import HelpScreen
from .session import TrainingSession
from .widgets.chat import ChatPane
from .widgets.checkpoint_picker import CheckpointPicker
from .widgets.confirm import Confirm
from .widgets.dashboard import PLOTS, Dashboard
from .widgets.run_form import RunForm
from .widgets.runs_list import RunsList

PANELS = ("run", "dashboard", "runs", "chat")
STATUS_HZ = 4.0
PLOT_HZ = STATUS_HZ / len(PLOTS)  # one plot per status tick, in turn: each plot once a second


class Panels(TabbedContent):
    """The four panels. A TabbedContent follows the focus into a pane when a widget in it is focused, but
    that news travels as a message: when queued keys have already moved on to another panel (4, Esc, 3 in
    one burst), the stale message would drag the view back. Follow it only while the focus is still there."""

    def _on_tab_pane_focused(self, event: TabPane.Focused) -> None:
        focused = self.screen.focused
        if focused is None or event.tab_pane not in focused.ancestors_with_self:
            event.stop()
            event.prevent_default()  # Textual calls each class's handler in the MRO: skip TabbedContent's


class HistoryRead(Message):
    """The attach worker read the history of a run so far: the follower goes on from where it stopped."""

    def __init__(self, request: int, run_dir: Path, follower: MetricsFollower, series: RunSeries) -> None:
        super().__init__()
        self.request, self.run_dir, self.follower, self.series = request, run_dir, follower, series


class TrainingEnded(Message):
    """The training thread returned: the trainer has written its last checkpoint and released the run's
    lock. Posted from that thread, because a cancelled worker reports CANCELLED at once, while its thread
    still finishes the step and checkpoints (the runs list read then would show the run as running)."""


class WorkbenchApp(App):
    CSS_PATH = "workbench.tcss"
    TITLE = "LLM Workbench"
    COMMANDS = App.COMMANDS | {WorkbenchCommands}
    BINDINGS = [
        # Priority: handled as the key arrives, before the next queued key is passed on to the focused widget
        # (a non-priority binding is found only when the key has bubbled back up, after later keys of a burst
        # have already gone to the old panel). check_action hands them to inputs and modal screens.
        Binding("1", "panel('run')", "Run", priority=True),
        Binding("2", "panel('dashboard')", "Dashboard", priority=True),
        Binding("3", "panel('runs')", "Runs", priority=True),
        Binding("4", "panel('chat')", "Chat", priority=True),
        Binding("question_mark,f1", "help", "Help", key_display="?", priority=True),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    def __init__(self, runs_dir: Path, config: TrainConfig) -> None:
        super().__init__()
        self.runs_dir = Path(runs_dir)
        self.base_config = config
        self.buffer = EventBuffer()
        self.session: TrainingSession | None = None
        self.train_worker: Worker | None = None
        self.local: RunSeries | None = None  # the run training in this process (fed by `buffer`)
        self.local_dir: Path | None = None
        self.follower: MetricsFollower | None = None
        self.followed: RunSeries | None = None  # the run attached to (fed by `follower`)
        self.events_seen = 0
        self._plot_turn = 0
        self._quitting = False

    @property
    def live(self) -> RunSeries | None:
        """The run being trained here, else the one attached to."""
        return self.local if self.local is not None else self.followed

    # --- layout ---------------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        with Panels(initial="run", id="panels"):
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
        form = self.query_one("#form", RunForm)
        self.query_one("#dash", Dashboard).set_plan(form.describe())
        # A newcomer with no runs lands on the dashboard's welcome: Enter trains the default experiment.
        # (One directory listing: the runs list reads the folders themselves in its worker.)
        self.action_panel("run" if has_runs(self.runs_dir) else "dashboard")
        self.call_after_refresh(self._freeze_startup_objects)

    def _freeze_startup_objects(self) -> None:
        """Keep the objects alive at start-up (torch, Textual, the widgets: about 190k) out of every later
        garbage collection (`gc.freeze`). A full collection runs on whichever thread allocates, holding the
        GIL, and traversing them took 100-250 ms: a key pressed while a worker read a big run waited that
        long. Frozen, a full collection over a loaded 100k-step run takes about 10 ms. Undone at exit."""
        gc.collect()
        gc.freeze()
        self._frozen = True

    def on_unmount(self) -> None:
        if getattr(self, "_frozen", False):
            gc.unfreeze()  # collectable again (tests run many apps in one process)

    def _torn_down(self) -> bool:
        """The panels are gone: the app is shutting down. A worker's result (runs listed, history read,
        training ended) can arrive then, e.g. a run that ends as the user quits; it is dropped."""
        return not self.query("#panels")

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
        tabs = self.query_one("#panels", TabbedContent)
        target = "chat-pane" if name == "chat" else name
        if tabs.active != target:
            tabs.active = target
        # Focus at once (and again on TabActivated): keys already queued behind this one, from a fast typist
        # or a paste, must reach the new panel, not the old panel's bindings.
        self._focus_panel()

    @on(TabbedContent.TabActivated)
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        # (a tab clicked with the mouse). A stale activation, for a panel already left again by a queued
        # key, must not pull the focus back (TabbedContent would follow it to the old pane).
        if event.pane.id == event.tabbed_content.active:
            self._focus_panel()

    def _focus_panel(self) -> None:
        """Put the focus where the shown panel's keys work (so typed text never lands on app keys)."""
        widget = {"run": "#form", "dashboard": "#dash", "runs": "#runs-list", "chat": "#chat"}[self.panel]
        self.query_one(widget).focus_here()
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Belt and braces: while an input has the focus, no printable app key applies (an Input consumes
        printable keys anyway; this keeps the footer honest too)."""
        if action in ("panel", "help") and (isinstance(self.focused, Input) or len(self.screen_stack) > 1):
            return False  # typed text, or a dialog / the help screen on top: the key is theirs
        return True

    # --- training -------------------------------------------------------------------------------------
    @property
    def training(self) -> bool:
        return self.session is not None and self.session.active

    @on(RunForm.StartRequested)
    @on(Dashboard.StartRequested)
    def action_start(self) -> None:
        if self.training:
            self.notify("a run is already training here", severity="warning")
            return
        form = self.query_one("#form", RunForm)
        config = form.validate_form()
        if config is None:
            self.notify(f"cannot start: {form.error}", severity="error")
            return
        self.buffer = EventBuffer()
        self.session = TrainingSession(config, self.buffer)
        self.local = RunSeries(config.name or config.stage)
        self.local_dir = None
        self._show(self.local, "starting")
        self.train_worker = self._train()
        self.action_panel("dashboard")

    @work(thread=True, exclusive=True, group="train", exit_on_error=False)
    def _train(self) -> dict | None:
        worker = get_current_worker()
        session = self.session
        if session is None:
            return None
        try:
            return session.run(should_stop=lambda: worker.is_cancelled)
        finally:
            self.post_message(TrainingEnded())

    @on(Dashboard.PauseRequested)
    def action_pause(self) -> None:
        if not self.training:
            return
        if self.session.pause_requested:
            self.session.resume()
            self.notify("resumed")
        else:
            self.session.pause()
            self.notify("pausing after this step")

    @on(Dashboard.StopRequested)
    def _stop_asked(self) -> None:
        if not self.training:
            return
        name = self.local.name if self.local is not None else "the run"
        self.push_screen(Confirm(f"Stop {name}? It saves a checkpoint after the current step.",
                                 yes="stop", no="keep training"),
                         lambda yes: self.action_stop() if yes else None)

    def action_stop(self) -> None:
        """Stop between steps; the trainer writes a checkpoint; the worker ends CANCELLED."""
        if not self.training:
            return
        self.session.stop()
        if self.train_worker is not None:
            self.train_worker.cancel()
        self.notify("stopping: a checkpoint is written after the current step")

    @on(TrainingEnded)
    def _training_ended(self) -> None:
        if self._torn_down():
            return
        self.refresh_bindings()
        self.query_one("#runs-list", RunsList).reload()  # its status, steps and checkpoints are final now

    @on(Dashboard.TuneRequested)
    def _tune(self, event: Dashboard.TuneRequested) -> None:
        try:
            if not self.training:
                raise WorkbenchError("no run is training here")
            if event.name == "beta":
                self.session.set_beta(event.value)
            else:
                self.session.set_lr_scale(event.value)
        except (ValueError, WorkbenchError) as exc:
            self.notify(f"{event.name}: {exc}", severity="error")
            return
        self.notify(f"{event.name} = {event.value:g} from the next step")

    @on(RunForm.Changed)
    def _form_changed(self, event: RunForm.Changed) -> None:
        self.query_one("#dash", Dashboard).set_plan(self.query_one("#form", RunForm).describe())

    # --- timers ---------------------------------------------------------------------------------------
    def pull_events(self) -> None:
        if self.local is not None:
            self._feed(self.local, self.buffer.drain(), here=True)
        if self.follower is not None and self.followed is not None:
            self._feed(self.followed, self.follower.poll(), here=False)
        self._update_status()

    def _feed(self, series: RunSeries, events: list[dict], here: bool) -> None:
        for e in events:
            series.add(e)
            kind = e.get("type")
            if kind == "alarm":
                self.notify(str(e.get("message")), title="alarm", severity="warning", timeout=10)
            elif kind == "start" and here and e.get("run_dir"):
                self.local_dir = Path(str(e["run_dir"]))
                dash = self.query_one("#dash", Dashboard)
                if dash.run is series:
                    dash.set_run_dir(self.local_dir)
            elif kind == "end" and e.get("reason") == "error":
                self.notify(str(e.get("message")), title="run failed", severity="error", timeout=10)
            elif kind == "end" and here and e.get("reason") == "finished":
                self.notify(f"{series.name} finished: press c on the dashboard (2) to chat with it",
                            title="run finished", timeout=15)
            if kind in ("checkpoint", "end", "start"):
                self.query_one("#dash", Dashboard).refresh_bindings()
        self.events_seen += len(events)

    def _update_status(self) -> None:
        """The status line names the run shown and what it is to us: training here, attached, or past;
        a run training here while another is shown is named too, so the line never passes one for the
        other."""
        dash = self.query_one("#dash", Dashboard)
        shown = dash.run
        state = dash.state
        if shown is not None and shown is self.local:
            state = f"training here ({self.session.state})" if self.training else (
                self.session.state if self.session is not None else "")
        elif shown is not None and shown is self.followed:
            state = "attached"
        also = ""
        if self.training and shown is not self.local and self.local is not None:
            step = (self.local.last_step + 1) if self.local.last_step is not None else 0
            also = f"training here: {self.local.name} step {step}/{self.local.total_steps or '?'}"
        dash.update_live(state, also, self.training)

    def refresh_plots(self) -> None:
        """One plot per tick, in turn (each is redrawn PLOT_HZ times a second), so a keypress never waits
        behind a frame that rebuilds all four (on 2 busy cores one grad-norm plot takes tens of ms)."""
        self._plot_turn = (self._plot_turn + 1) % len(PLOTS)
        if self.panel == "dashboard":
            self.query_one("#dash", Dashboard).refresh_plots(only=PLOTS[self._plot_turn])

    def _show(self, run: RunSeries, state: str, run_dir: Path | None = None) -> None:
        dash = self.query_one("#dash", Dashboard)
        dash.show_run(run, state, run_dir if run is not self.local else self.local_dir)
        self._update_status()
        dash.refresh_bindings()

    # --- runs -----------------------------------------------------------------------------------------
    @on(RunsList.Listed)
    def _runs_listed(self, event: RunsList.Listed) -> None:
        if self._torn_down():
            return
        self.query_one("#form", RunForm).set_teachers(event.runs)  # the distill stage's teacher picker

    @on(RunsList.Open)
    def _open_run(self, event: RunsList.Open) -> None:
        run = event.run
        if self.local is not None and self.local_dir is not None and run.path.resolve() == self.local_dir.resolve():
            self._show(self.local, "")  # the run training here: its live series, not a snapshot
        else:
            self.query_one("#dash", Dashboard).open_run_dir(run.path, run.status)  # read in its worker
        self.action_panel("dashboard")

    @on(RunsList.Compare)
    def _compare(self, event: RunsList.Compare) -> None:
        self.query_one("#dash", Dashboard).open_compare_dirs(event.first.path, event.second.path)
        self.action_panel("dashboard")

    @on(RunsList.Attach)
    def _attach(self, event: RunsList.Attach) -> None:
        run = event.run
        if self.local_dir is not None and run.path.resolve() == self.local_dir.resolve():
            self.notify(f"{run.name} is training here: its dashboard is live already")
            self._show(self.local, "")
        else:
            self.follower = self.followed = None  # the run followed so far is not shown any more
            request = self.query_one("#dash", Dashboard).show_loading(run.name)
            self._read_history(request, run.path, run.name)
        self.action_panel("dashboard")

    @work(thread=True, exclusive=True, group="attach", exit_on_error=False)
    def _read_history(self, request: int, run_dir: Path, name: str) -> None:
        """The lines written so far, folded here: a long run's history would hold the UI thread for a
        second (its alarms are not notified again: the status line shows the last one)."""
        follower = MetricsFollower(run_dir)
        series = RunSeries(name)
        try:
            for e in follower.poll():
                series.add(e)
        except Exception as exc:  # an unreadable file: the follower starts from the top, the user is told
            self.call_from_thread(self.notify, f"cannot read {run_dir}: {type(exc).__name__}: {exc}",
                                  severity="error")
            follower, series = MetricsFollower(run_dir), RunSeries(name)
        self.post_message(HistoryRead(request, run_dir, follower, series))

    @on(HistoryRead)
    def _history_read(self, event: HistoryRead) -> None:
        if self._torn_down():
            return
        dash = self.query_one("#dash", Dashboard)
        if not dash.is_pending(event.request):
            return  # the user moved on before the history was read: not attached
        self.follower, self.followed = event.follower, event.series
        self.events_seen += event.series.version
        self._show(self.followed, "attached", event.run_dir)

    @on(RunsList.Chat)
    def _chat_asked(self, event: RunsList.Chat) -> None:
        """Chat with the run's checkpoint; when it kept several, ask which one."""
        self._open_in_chat(event.run.name, event.run.path, event.compare)

    @on(Dashboard.ChatRequested)
    def _chat_from_dashboard(self, event: Dashboard.ChatRequested) -> None:
        self._open_in_chat(event.run_dir.name, event.run_dir, compare=False)

    def _open_in_chat(self, name: str, run_dir: Path, compare: bool) -> None:
        """One directory listing here; the hashing of checkpoint files happens in workers: the picker's, or
        the chat's loader (which opens the run's newest checkpoint that verifies)."""
        checkpoints = list_checkpoints(run_dir)
        if len(checkpoints) > 1:
            self.push_screen(CheckpointPicker(name, checkpoints),
                             lambda path: self._chat_with(path, compare) if path is not None else None)
            return
        if not checkpoints:
            self.notify(f"{run_dir}: no checkpoint in {run_dir / CHECKPOINTS}", severity="error")
            return
        self._chat_with(run_dir, compare)

    def _chat_with(self, path: Path, compare: bool) -> None:
        chat = self.query_one("#chat", ChatPane)
        chat.open_compare(path) if compare else chat.open_checkpoint(path)
        self.action_panel("chat")

    @on(RunsList.Export)
    def _export_asked(self, event: RunsList.Export) -> None:
        run = event.run
        if event.kind == "hf":
            self._export(run.path, run.path / "export-hf", None)
        else:
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
        """The keys that apply now: the focused panel's (as the footer shows them), then the app's."""
        keys = []
        for binding in self.active_bindings.values():
            b = binding.binding
            if b.description and binding.enabled:
                keys.append((b.key_display or b.key, b.description))
        if self.panel == "chat":
            keys.append(("←/→ ↑/↓ home/end", "token view (ctrl+t): move the cursor; p and log p of its token"))
        self.push_screen(HelpScreen(self.panel, keys))

    async def action_quit(self) -> None:
        """Quit; while a run trains, ask first, then stop it between steps and write its checkpoint."""
        if not self.training:
            self.exit()
            return
        if self._quitting:
            return
        name = self.local.name if self.local is not None else "a run"
        self.push_screen(Confirm(f"{name} is training. Stop it (a checkpoint is saved) and quit?",
                                 yes="stop and quit", no="keep working"), self._quit_answered)

    def _quit_answered(self, yes: bool | None) -> None:
        if not yes or self._quitting:
            return
        self._quitting = True
        self.notify("stopping the run and saving a checkpoint before quitting ...")
        self.action_stop()
        self._quit_when_saved()

    @work(thread=True, group="quit")
    def _quit_when_saved(self) -> None:
        if self.session is not None:
            self.session.wait_until_done()
        self.call_from_thread(self.exit)


def make_app(runs_dir: str | Path = "runs", config: TrainConfig | None = None) -> WorkbenchApp:
    """The workbench on `runs_dir`, with `config` (default: the embedded default experiment) in the run panel.
    New runs are written under `runs_dir`.

    Freed memory is kept in the process here, before the app's worker threads exist (unless `config` turns
    `reuse_freed_memory` off): `llm_core.host_memory` can put only threads that have not allocated yet on
    the main malloc heap, where a run trained in a worker thread reuses its blocks from step to step."""
    config = config or TrainConfig()
    config = config.with_overrides(out=str(runs_dir))
    if config.reuse_freed_memory:
        reuse_freed_memory()
    return WorkbenchApp(Path(runs_dir), config)
