"""`HelpScreen` (key `?`): the keys of the focused panel and the global ones."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

PANEL_HELP = {
    "run": "Run panel: set the stage, data, starting checkpoint, model and techniques. Every field is checked "
           "as you type (the reason shows next to it); the planned learning-rate schedule redraws. "
           "Choosing a stage fills in its recipe. ctrl+s starts the run; Esc leaves a field so 1-4 switch panels.",
    "dashboard": "Dashboard: live plots of the learning rate (planned line, steps done), the pre-clip gradient "
                 "norm (threshold line, clipped steps as x), the loss (val as dots) and DPO rewards / MoE expert "
                 "load / a comparison. m smoothing, l log scale, t step or tokens axis, p pause/resume, x stop "
                 "(asks first; a checkpoint is written), c chat with the run shown. Type a beta or an LR "
                 "scale and press Enter: it applies at the next step and is recorded in metrics.jsonl. "
                 "With no run yet, Enter trains the run panel's configuration (the default experiment).",
    "runs": "Runs: every folder in runs/ (broken ones with the reason). Enter opens its plots, k marks it and "
            "k on a second run compares the losses, a follows a run training in another process, c chats with "
            "its checkpoint (a run that kept several asks which one), v opens it beside the current chat, "
            "r refreshes.",
    "chat": "Chat: the message input has the focus whenever the panel shows. Enter sends, Esc cancels "
            "(or, with nothing generating, leaves the input so 1-4 switch panels), ctrl+r regenerates, ctrl+s exports Markdown, ctrl+y copies the "
            "last answer, ctrl+t shows token probabilities, ctrl+n starts over. Modes: greedy, sample "
            "(temperature, top-k, top-p), cot (think step by step), vote (N sampled chains of thought).",
}
GLOBAL_HELP = ("1-4 switch panels (while not typing in a field), ctrl+p command palette (train:, chat:, "
               "runs:, export:), ? or F1 this help, ctrl+q quit (while a run trains it asks, then stops it "
               "cleanly and saves first). Keys of a panel apply only while the focus is in it.")


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def __init__(self, panel: str, keys: list[tuple[str, str]]) -> None:
        super().__init__()
        self.panel = panel
        self.keys = keys

    def compose(self) -> ComposeResult:
        lines = [f"[b]{self.panel}[/b]", PANEL_HELP.get(self.panel, ""), "", "[b]keys here[/b]"]
        lines += [f"  {key:<10} {description}" for key, description in self.keys]
        lines += ["", "[b]everywhere[/b]", GLOBAL_HELP, "", "Esc closes this help."]
        with VerticalScroll(id="help-box"):
            yield Static("\n".join(lines), markup=True)
