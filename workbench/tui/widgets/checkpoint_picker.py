"""`CheckpointPicker` (keys c / v on a run that kept several checkpoints): which one to chat with, newest
first. A checkpoint whose manifest does not verify is listed with the reason and cannot be picked."""
from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option

from llm_core.errors import WorkbenchError
from llm_core.training.checkpoint import checkpoint_step, read_manifest


def checkpoint_options(checkpoints: list[Path]) -> list[Option]:
    """One option per step directory, newest first; broken ones disabled, with the reason."""
    options = []
    for i, path in enumerate(reversed(checkpoints)):
        step = checkpoint_step(path)
        label = f"step {step}" + ("  (latest)" if i == 0 else "")
        try:
            read_manifest(path)
            options.append(Option(label, id=str(path)))
        except WorkbenchError as exc:
            options.append(Option(f"step {step}  broken: {exc}", id=str(path), disabled=True))
    return options


class CheckpointPicker(ModalScreen[Path | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, run_name: str, checkpoints: list[Path]) -> None:
        super().__init__()
        self.run_name = run_name
        self.checkpoints = checkpoints

    def compose(self) -> ComposeResult:
        with Vertical(id="picker-box"):
            yield Label(f"{self.run_name}: chat with which checkpoint? (Enter picks, Esc cancels)")
            yield OptionList(*checkpoint_options(self.checkpoints), id="picker-options")

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(Path(event.option.id))

    def action_cancel(self) -> None:
        self.dismiss(None)
