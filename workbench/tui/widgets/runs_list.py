"""`RunsList`: the run folders under `runs/`, with their stage, status, steps, last/best loss and checkpoints.
A folder that cannot be read is listed as broken with the reason (never an exception).

The folders are read in a thread worker (`list_runs` reads every run's config, checkpoints, lock and the
lines of its metrics.jsonl its numbers depend on): the title says "reading ..." meanwhile, the rows of the
last reading stay, and the result comes back as a `Loaded` message. Only the result of the latest
reading is shown: a refresh started while another reads makes the older result stale, and it is dropped.

The list owns its keys (Enter open, k compare, a attach, c chat, v chat side by side, r refresh); each
posts a message naming the highlighted run, which the app acts on (plots, attach, chat, export). The run
marked for a comparison is this widget's state.
"""
from __future__ import annotations

import os

from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import DataTable, Static

from llm_core.training import list_runs
from llm_core.training.checkpoint import checkpoint_step
from llm_core.training.runs import RunInfo

COLUMNS = ("run", "stage", "status", "steps", "last loss", "best val", "checkpoints")


def _num(value: float | None) -> str:
    return f"{value:.4f}" if value is not None else "-"


class RunsList(Vertical):
    BINDINGS = [
        Binding("enter", "open_run", "Open"),
        Binding("k", "mark_compare", "Compare"),
        Binding("a", "attach", "Attach"),
        Binding("c", "chat_run", "Chat"),
        Binding("v", "chat_compare", "Chat side by side"),
        Binding("r", "refresh_runs", "Refresh"),
    ]

    marked: reactive[RunInfo | None] = reactive(None)  # the first run of a comparison
    reading: reactive[bool] = reactive(False)  # a reading of the folders is under way (not `loading`:
    # that is Textual's own, an overlay that also takes the focus away)

    class Loaded(Message):
        """A reading of the run folders finished (in the worker): the runs, or why they could not be read."""

        def __init__(self, number: int, runs: list[RunInfo], error: str | None = None) -> None:
            super().__init__()
            self.number, self.runs, self.error = number, runs, error

    class Listed(Message):
        """The runs were read (bubbles to the app: the run form offers their checkpoints as teachers)."""

        def __init__(self, runs: list[RunInfo]) -> None:
            super().__init__()
            self.runs = runs

    class Open(Message):
        """Enter: the run's plots."""

        def __init__(self, run: RunInfo) -> None:
            super().__init__()
            self.run = run

    class Compare(Message):
        """k on a second run: the two runs' losses in one plot."""

        def __init__(self, first: RunInfo, second: RunInfo) -> None:
            super().__init__()
            self.first, self.second = first, second

    class Attach(Message):
        """a: follow the run's metrics.jsonl (a run training in another process)."""

        def __init__(self, run: RunInfo) -> None:
            super().__init__()
            self.run = run

    class Chat(Message):
        """c / v: chat with the run's checkpoint, alone or beside the current chat."""

        def __init__(self, run: RunInfo, compare: bool) -> None:
            super().__init__()
            self.run, self.compare = run, compare

    class Export(Message):
        """From the palette: export the run's checkpoint (kind 'hf' or 'adapters')."""

        def __init__(self, run: RunInfo, kind: str) -> None:
            super().__init__()
            self.run, self.kind = run, kind

    def __init__(self, root: Path, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.root = Path(root)
        self.runs: list[RunInfo] = []
        self.readings = 0  # readings started; a result whose number is older is stale
        self._had_selection: bool | None = None

    def compose(self) -> ComposeResult:
        yield Static(f"reading {self.root} ...", id="runs-title")
        yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="runs-detail")

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns(*COLUMNS)
        self.reload()

    def reload(self) -> None:
        """Read the run folders again, in a worker; the table is refilled when the reading is done."""
        self.readings += 1
        self.reading = True
        self._read_runs(self.readings)

    @work(thread=True, exclusive=True, group="runs-read", exit_on_error=False)
    def _read_runs(self, number: int) -> None:
        try:
            runs, error = list_runs(self.root), None
        except Exception as exc:  # list_runs reports broken folders itself; this is the root being unreadable
            runs, error = [], f"{type(exc).__name__}: {exc}"
        self.post_message(self.Loaded(number, runs, error))

    @on(Loaded)
    def _loaded(self, event: Loaded) -> None:
        event.stop()
        if event.number != self.readings:
            return  # a newer reading is under way: its result is the one to show
        self.reading = False
        if event.error is not None:
            self.notify(f"cannot read {self.root}: {event.error}", severity="error")
        self._fill(event.runs)
        self.post_message(self.Listed(event.runs))

    def watch_reading(self, reading: bool) -> None:
        if self.is_mounted:
            self.query_one("#runs-title", Static).update(f"reading {self.root} ..." if reading
                                                          else f"runs in {self.root}")

    def _fill(self, runs: list[RunInfo]) -> None:
        table = self.query_one(DataTable)
        keep = self.selected.name if self.selected else None
        table.clear()
        self.runs = runs
        for r in self.runs:
            if r.broken:
                table.add_row(r.name, "", "BROKEN", "", "", "", r.broken, key=r.name)
                continue
            steps = f"{r.steps}/{r.max_steps}" if r.max_steps else str(r.steps)
            ckpts = ", ".join(str(checkpoint_step(c)) for c in r.checkpoints) or "-"
            # A live lock held by another process: training elsewhere (attach with a).
            status = f"training elsewhere (PID {r.pid})" if r.pid and r.pid != os.getpid() else r.status
            table.add_row(r.name, str(r.config.get("stage", "")), status, steps, _num(r.last_loss),
                          _num(r.best_val_loss), ckpts, key=r.name)
        if not self.runs:
            self.query_one("#runs-detail", Static).update(
                f"no runs yet in {self.root}: 2 then Enter trains the default experiment, 1 sets up another run")
        elif keep:
            for i, r in enumerate(self.runs):
                if r.name == keep:
                    table.move_cursor(row=i)
        if (self.selected is not None) != self._had_selection:  # each refresh recomposes the footer
            self._had_selection = self.selected is not None
            self.refresh_bindings()

    @property
    def selected(self) -> RunInfo | None:
        table = self.query_one(DataTable)
        if not self.runs or table.cursor_row is None or not 0 <= table.cursor_row < len(self.runs):
            return None
        return self.runs[table.cursor_row]

    def focus_here(self) -> None:
        self.screen.set_focus(self.query_one(DataTable))  # now, not after the queued keys (Widget.focus defers)

    # --- keys -----------------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("refresh_runs",):
            return True
        return self.selected is not None  # the others act on the highlighted run

    def _chosen(self) -> RunInfo | None:
        """The highlighted run, if it can be acted on (a notice says why not)."""
        run = self.selected
        if run is None:
            self.notify("no run selected", severity="warning")
        elif run.broken:
            self.notify(f"{run.name} is broken: {run.broken}", severity="error")
            return None
        return run

    @on(DataTable.RowSelected)
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()  # Enter on a row: the table has the focus, so its own Enter binding fires
        self.action_open_run()

    def action_open_run(self) -> None:
        if (run := self._chosen()) is not None:
            self.post_message(self.Open(run))

    def action_mark_compare(self) -> None:
        run = self._chosen()
        if run is None:
            return
        if self.marked is None or self.marked.name == run.name:
            self.marked = run
            self.notify(f"{run.name} marked: highlight another run and press k to compare")
            return
        first, self.marked = self.marked, None
        self.post_message(self.Compare(first, run))

    def action_attach(self) -> None:
        if (run := self._chosen()) is not None:
            self.post_message(self.Attach(run))

    def action_chat_run(self) -> None:
        if (run := self._chosen()) is not None:
            self.post_message(self.Chat(run, compare=False))

    def action_chat_compare(self) -> None:
        if (run := self._chosen()) is not None:
            self.post_message(self.Chat(run, compare=True))

    def action_refresh_runs(self) -> None:
        self.reload()

    def action_export_hf(self) -> None:
        if (run := self._chosen()) is not None:
            self.post_message(self.Export(run, "hf"))

    def action_export_adapters(self) -> None:
        if (run := self._chosen()) is not None:
            self.post_message(self.Export(run, "adapters"))

    def watch_marked(self) -> None:
        self._show_detail()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail()

    def _show_detail(self) -> None:
        if not self.is_mounted:
            return
        run = self.selected
        if run is None:
            return
        if run.broken:
            text = f"{run.name}: broken ({run.broken})"
        else:
            c = run.config
            text = (f"{run.name}: {c.get('stage')} on {c.get('data')}, model {c.get('model')}, "
                    f"adapter {c.get('adapter', 'none')}, MoE experts {c.get('moe_experts', 0)}, "
                    f"peak LR {c.get('peak_lr')}, batch {c.get('batch_size')}")
            if self.marked is not None:
                text += f" | marked for compare: {self.marked.name}"
        self.query_one("#runs-detail", Static).update(text)
