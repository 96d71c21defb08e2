"""`Confirm`: a yes/no question in a modal, for the actions that end or replace work (stop a run, quit
while one trains). Enter or y answers yes; Esc or n answers no. Being modal, it also swallows whatever
the user was typing when it opened, so no key after it reaches a panel by accident."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label


class Confirm(ModalScreen[bool]):
    BINDINGS = [
        Binding("enter,y", "answer(True)", "Yes"),
        Binding("escape,n", "answer(False)", "No"),
    ]

    def __init__(self, question: str, yes: str = "yes", no: str = "no") -> None:
        super().__init__()
        self.question = question
        self.yes, self.no = yes, no

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box"):
            yield Label(self.question, id="confirm-question")
            yield Label(f"Enter / y: {self.yes}    Esc / n: {self.no}", id="confirm-keys")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
