"""`RunsList`: the run folders under `runs/`, with their stage, status, steps, last/best loss and checkpoints.
A folder that cannot be read is listed as broken with the reason (never an exception); the app acts on
the highlighted run (open its plots, compare, attach, chat with its checkpoint, export).
"""
from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from llm_core.training import list_runs
from llm_core.training.checkpoint import checkpoint_step
from llm_core.training.runs import RunInfo

COLUMNS = ("run", "stage", "status", "steps", "last loss", "best val", "checkpoints")


def _num(value: float | None) -> str:
    return f"{value:.4f}" if value is not None else "-"


class RunsList(Vertical):
    def __init__(self, root: Path, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.root = Path(root)
        self.runs: list[RunInfo] = []
        self.marked: RunInfo | None = None  # first run of a comparison

    def compose(self) -> ComposeResult:
        yield Static(f"runs in {self.root}", id="runs-title")
        yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="runs-detail")

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns(*COLUMNS)
        self.reload()

    def reload(self) -> None:
        table = self.query_one(DataTable)
        keep = self.selected.name if self.selected else None
        table.clear()
        self.runs = list_runs(self.root)
        for r in self.runs:
            if r.broken:
                table.add_row(r.name, "", "BROKEN", "", "", "", r.broken, key=r.name)
                continue
            steps = f"{r.steps}/{r.max_steps}" if r.max_steps else str(r.steps)
            ckpts = ", ".join(str(checkpoint_step(c)) for c in r.checkpoints) or "-"
            table.add_row(r.name, str(r.config.get("stage", "")), r.status, steps, _num(r.last_loss),
                          _num(r.best_val_loss), ckpts, key=r.name)
        if not self.runs:
            self.query_one("#runs-detail", Static).update(f"no runs yet in {self.root}: start one (key s)")
        elif keep:
            for i, r in enumerate(self.runs):
                if r.name == keep:
                    table.move_cursor(row=i)

    @property
    def selected(self) -> RunInfo | None:
        table = self.query_one(DataTable)
        if not self.runs or table.cursor_row is None or not 0 <= table.cursor_row < len(self.runs):
            return None
        return self.runs[table.cursor_row]

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
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
