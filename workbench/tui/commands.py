"""The command palette (ctrl+p): every action of the app, namespaced `train:`, `chat:`, `runs:`, `export:`."""
from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

from .widgets.chat import CHAT_COMMANDS

# (title, help, who acts: "app" or a panel's widget id, action)
APP_COMMANDS = [
    ("train: start a run", "Start training with the run panel's settings", "app", "start"),
    ("train: pause / resume", "Pause between steps, or carry on", "app", "pause"),
    ("train: stop (writes a checkpoint)", "Stop between steps and save", "app", "stop"),
    ("train: toggle loss smoothing", "Debiased EMA over the faded raw curve", "#dash", "smoothing"),
    ("train: toggle log scale", "Log scale of the loss plots", "#dash", "log_scale"),
    ("runs: refresh the list", "Re-read runs/", "#runs-list", "refresh_runs"),
    ("runs: open the highlighted run's plots", "Plots of a past or running run", "#runs-list", "open_run"),
    ("runs: mark / compare loss curves", "Mark a run, then another, to compare", "#runs-list", "mark_compare"),
    ("runs: attach to the highlighted run", "Follow a run training in another process", "#runs-list", "attach"),
    ("chat: chat with the highlighted run", "Open its latest checkpoint in the chat panel", "#runs-list",
     "chat_run"),
    ("chat: compare with the highlighted run", "Same prompt to two checkpoints side by side", "#runs-list",
     "chat_compare"),
    ("export: Hugging Face format", "The highlighted run's checkpoint to runs/<name>/export-hf", "#runs-list",
     "export_hf"),
    ("export: adapters only", "The highlighted run's LoRA/DoRA adapters (PEFT format) to runs/<name>/export-adapters",
     "#runs-list", "export_adapters"),
]


class WorkbenchCommands(Provider):
    def _all(self) -> list[tuple[str, str, object]]:
        app = self.app
        chat = app.query_one("#chat")
        items = [(title, help, partial((app if who == "app" else app.query_one(who)).run_action, action))
                 for title, help, who, action in APP_COMMANDS]
        items += [(title, help, partial(chat.run_action, action)) for title, help, action in CHAT_COMMANDS]
        return items

    async def discover(self) -> Hits:
        for title, help, callback in self._all():
            yield DiscoveryHit(title, callback, help=help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help, callback in self._all():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, help=help)
