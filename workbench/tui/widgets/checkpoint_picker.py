"""`CheckpointPicker` (keys c / v on a run that kept several checkpoints): which one to chat with, newest
first.

The list comes from the checkpoints' manifests (one small JSON file each, read without checking the files).
Verifying a checkpoint means hashing every file it holds (SHA-256 of hundreds of MB for a real model), so
that runs in a thread worker, newest first, one `Verified` message per checkpoint; each line shows what is
known: "verifying ...", "verified", or "broken: <why>" (then it cannot be picked, like one whose manifest
does not read). Picking a checkpoint before its verification finished is allowed: loading it verifies it
again anyway (`load_checkpoint`). Closing the picker cancels the verification (between checkpoints).
"""
from __future__ import annotations

from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option
from textual.worker import get_current_worker

from llm_core.errors import WorkbenchError
from llm_core.training.checkpoint import checkpoint_step, read_manifest

VERIFYING, VERIFIED = "verifying ...", "verified"


def checkpoint_label(path: Path, latest: bool, state: str) -> str:
    """`step N  (latest)  <state>`, or `step N  broken: <why>`."""
    step = checkpoint_step(path)
    if state not in (VERIFYING, VERIFIED):
        return f"step {step}  broken: {state}"
    return f"step {step}" + ("  (latest)" if latest else "") + f"  {state}"


def manifest_states(checkpoints: list[Path]) -> dict[Path, str]:
    """Newest first: each step directory's state from its manifest alone (VERIFYING, or why it is broken)."""
    states = {}
    for path in reversed(checkpoints):
        try:
            read_manifest(path, verify=False)
            states[path] = VERIFYING
        except WorkbenchError as exc:
            states[path] = str(exc)
    return states


class CheckpointPicker(ModalScreen[Path | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    pending: reactive[int] = reactive(0)  # checkpoints whose files are still being verified

    class Verified(Message):
        """The worker checked one checkpoint's files: `error` is None when every hash matched."""

        def __init__(self, path: Path, error: str | None) -> None:
            super().__init__()
            self.path, self.error = path, error

    def __init__(self, run_name: str, checkpoints: list[Path]) -> None:
        super().__init__()
        self.run_name = run_name
        self.checkpoints = checkpoints
        self.states = manifest_states(checkpoints)  # path -> VERIFYING | VERIFIED | why it is broken
        self._latest = next(iter(self.states), None)

    def compose(self) -> ComposeResult:
        with Vertical(id="picker-box"):
            yield Label(self._title(), id="picker-title")
            yield OptionList(*(Option(checkpoint_label(path, path == self._latest, state), id=str(path),
                                      disabled=state not in (VERIFYING, VERIFIED))
                               for path, state in self.states.items()), id="picker-options")

    def _title(self) -> str:
        title = f"{self.run_name}: chat with which checkpoint? (Enter picks, Esc cancels)"
        return title + (f"\nverifying the files of {self.pending} checkpoint(s) ..." if self.pending else "")

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()
        to_verify = [path for path, state in self.states.items() if state == VERIFYING]
        self.pending = len(to_verify)
        if to_verify:  # once the list is on screen: showing the picker is itself tens of ms of the UI thread,
            self.call_after_refresh(self._verify, to_verify)  # which the hashing thread would slow down

    @work(thread=True, exclusive=True, group="verify", exit_on_error=False)
    def _verify(self, paths: list[Path]) -> None:
        worker = get_current_worker()
        for path in paths:
            if worker.is_cancelled:
                return
            try:
                read_manifest(path, verify=True)
                error = None
            except WorkbenchError as exc:
                error = str(exc)
            except Exception as exc:  # an unreadable disk is a broken line, never the end of the app
                error = f"{type(exc).__name__}: {exc}"
            self.post_message(self.Verified(path, error))

    @on(Verified)
    def _verified(self, event: Verified) -> None:
        state = VERIFIED if event.error is None else event.error
        self.states[event.path] = state
        self.pending = max(self.pending - 1, 0)
        options = self.query_one(OptionList)
        options.replace_option_prompt(str(event.path), checkpoint_label(event.path, event.path == self._latest, state))
        if event.error is not None:
            options.disable_option(str(event.path))

    def watch_pending(self) -> None:
        for title in self.query("#picker-title").results(Label):  # none before compose
            title.update(self._title())

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(Path(event.option.id))

    def action_cancel(self) -> None:
        self.dismiss(None)
