"""`ChatPane`: multi-turn chat with a checkpoint (and optionally a second one side by side).

Generation runs in thread workers; text pieces land in a buffer that a 50 ms timer moves into the view
(never one UI call per token), and the view follows the bottom only if the user was already there. Esc
cancels; regenerate, export as Markdown and copy (OSC 52 through Textual) act on the last answer. Under
each answer: tokens/s, the cached tokens reused and, where the bf16 screen read the head, its fp32 logits a
step; for majority vote, the tally and every sample in a collapsible; the token view
(widgets/token_view.py) shades each token of the last answer by its probability and gives p and log p of
the token under the mouse or the cursor.

Whatever a worker raises (a bad checkpoint, or torch itself: out of memory, a shape error) is shown in the
chat, as an error line and a notification, and never reaches Textual (an unhandled worker error would exit
the app). After a failed answer the engine's KV cache is dropped (a forward pass that raised may have left
it half-written); the conversation so far is kept.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Collapsible, Input, Label, Select, Static

from llm_core.engine import MODES, REASONING_MODES, ChatOptions, Conversation, Engine, Turn
from llm_core.errors import WorkbenchError
from llm_core.training import load_checkpoint

from .token_view import TokenPanel

CHAT_COMMANDS = [
    ("chat: regenerate the last answer", "Answer the last message again", "regenerate"),
    ("chat: export as Markdown", "Write the conversation to a .md file", "export_chat"),
    ("chat: copy the last answer", "Copy to the clipboard (OSC 52)", "copy_last"),
    ("chat: cancel generation", "Stop the answer being generated", "cancel"),
    ("chat: token probabilities", "Show the last answer shaded by token probability", "token_view"),
    ("chat: new conversation", "Forget the history (and the cache)", "new_chat"),
    ("chat: close the comparison", "Back to one checkpoint", "close_compare"),
]


NO_CHECKPOINT = "no checkpoint: Esc 3, then c on a run; no run yet: Esc 2, then Enter trains one"


def describe_error(exc: BaseException) -> str:
    """One line: our errors are written for the user; anything else (torch's) is named by its type."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, WorkbenchError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass
class Pending:
    """Text streamed by a worker and not yet shown (guarded by a lock)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    pieces: list[str] = field(default_factory=list)

    def push(self, piece: str) -> None:
        with self.lock:
            self.pieces.append(piece)

    def take(self) -> str:
        with self.lock:
            text = "".join(self.pieces)
            self.pieces.clear()
        return text


class ChatColumn(Vertical):
    """The transcript of one checkpoint."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.conversation: Conversation | None = None
        self.pending = Pending()
        self.current: Static | None = None
        self.current_text = ""
        self.busy = False
        self.cancel = threading.Event()

    def compose(self) -> ComposeResult:
        yield Label(NO_CHECKPOINT, classes="chat-title")
        yield VerticalScroll(classes="transcript")

    @property
    def transcript(self) -> VerticalScroll:
        return self.query_one(".transcript", VerticalScroll)

    def set_title(self, text: str) -> None:
        self.query_one(".chat-title", Label).update(text)

    def add(self, widget: Static | Collapsible) -> None:
        self.transcript.mount(widget)
        self.transcript.scroll_end(animate=False)

    def flush(self) -> None:
        """Move streamed text into the view; follow the bottom only if the user is already there."""
        text = self.pending.take()
        if not text or self.current is None:
            return
        at_bottom = self.transcript.scroll_y >= self.transcript.max_scroll_y - 1
        self.current_text += text
        self.current.update(Text(self.current_text))
        if at_bottom:
            self.transcript.scroll_end(animate=False)


class ChatPane(Vertical):
    BINDINGS = [
        Binding("escape", "cancel", "Cancel", show=True, priority=True),  # before queued keys (see the app)
        Binding("ctrl+r", "regenerate", "Regenerate"),
        Binding("ctrl+s", "export_chat", "Export .md"),
        Binding("ctrl+y", "copy_last", "Copy"),
        Binding("ctrl+t", "token_view", "Token probs"),
        Binding("ctrl+n", "new_chat", "New chat"),
    ]

    def __init__(self, export_dir: Path | None = None, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.export_dir = export_dir or Path.cwd()
        self.checkpoints: dict[str, Path] = {}
        self.last_turn: Turn | None = None

    def compose(self) -> ComposeResult:
        with Horizontal(id="chat-options"):
            yield Label("mode", classes="label short")
            yield Select([(m, m) for m in MODES], value="greedy", allow_blank=False, id="chat-mode")
            yield Label("N", classes="label tiny")
            yield Input("8", id="chat-n")
            yield Label("temp", classes="label tiny")
            yield Input("0.8", id="chat-temperature")
            yield Label("top-k", classes="label tiny")
            yield Input("", placeholder="off", id="chat-top-k")
            yield Label("top-p", classes="label tiny")
            yield Input("", placeholder="off", id="chat-top-p")
        with Horizontal(id="chat-columns"):
            yield ChatColumn(id="chat-a")
            yield ChatColumn(id="chat-b")
        yield TokenPanel(id="chat-tokens")
        yield Input(placeholder="Message (Enter to send, Esc to cancel)", id="chat-input")

    def focus_here(self) -> None:
        """Showing the chat always puts the focus in the message input, so typing is typing."""
        self.screen.set_focus(self.query_one("#chat-input", Input))  # now: Widget.focus would defer it past queued keys

    def on_mount(self) -> None:
        self.query_one("#chat-b").display = False
        self.query_one("#chat-tokens").display = False
        # Streamed text is moved into the view every 50 ms, only while something is being generated.
        self._flush_timer = self.set_interval(0.05, self._flush, pause=True)

    # --- checkpoints ----------------------------------------------------------------------------------
    def open_checkpoint(self, path: Path) -> None:
        self._load(self.query_one("#chat-a", ChatColumn), Path(path))

    def open_compare(self, path: Path | None) -> None:
        column = self.query_one("#chat-b", ChatColumn)
        if path is None:
            column.display = False
            column.conversation = None
            return
        column.display = True
        self._load(column, Path(path))

    def _load(self, column: ChatColumn, path: Path) -> None:
        column.set_title(f"loading {path} ...")
        self._load_worker(column, path)

    @work(thread=True, group="chat-load", exit_on_error=False)
    def _load_worker(self, column: ChatColumn, path: Path) -> None:
        try:
            loaded = load_checkpoint(path)  # a run folder: its newest checkpoint that verifies
            name = f"{loaded.path.parent.parent.name} (step {loaded.step})"  # runs/<name>/checkpoints/step-N
            conversation = Conversation(Engine(loaded.model, loaded.tokenizer), name=name)
        except Exception as exc:
            message = f"cannot open {path}: {describe_error(exc)}"

            def failed() -> None:
                column.set_title(message)
                self.notify(message, severity="error")

            self.app.call_from_thread(failed)
            return

        def ready() -> None:
            column.conversation = conversation
            column.set_title(f"{name}: {loaded.model.num_parameters() / 1e6:.2f}M parameters")

        self.app.call_from_thread(ready)

    # --- options --------------------------------------------------------------------------------------
    def options(self) -> ChatOptions:
        def number(widget_id: str, cast, allow_empty: bool = False):
            text = self.query_one(widget_id, Input).value.strip()
            if allow_empty and not text:
                return None
            try:
                return cast(text)
            except ValueError:
                raise WorkbenchError(f"{widget_id[6:]}: not a number: {text!r}") from None

        mode = self.query_one("#chat-mode", Select).value
        n = number("#chat-n", int)  # N is the beam width in the beam mode, the samples in vote and best
        return ChatOptions(mode=str(mode), n=n, width=n, temperature=number("#chat-temperature", float),
                           top_k=number("#chat-top-k", int, True), top_p=number("#chat-top-p", float, True))

    # --- sending --------------------------------------------------------------------------------------
    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "chat-input":
            return
        text = event.value.strip()
        if not text:
            return
        columns = self._ready_columns()
        if not columns:
            self.notify("open a checkpoint first (Runs panel: 3, then c)", severity="warning")
            return
        try:
            options = self.options()
        except WorkbenchError as exc:
            self.notify(str(exc), severity="error")
            return
        event.input.value = ""
        for column in columns:
            column.add(Static(Text(text), classes="msg user"))
            self._start(column, lambda c=column, o=options: c.conversation.reply(text, o, c.cancel, c.pending.push))

    def _ready_columns(self) -> list[ChatColumn]:
        return [c for c in self.query(ChatColumn) if c.display and c.conversation is not None and not c.busy]

    def _start(self, column: ChatColumn, job) -> None:
        column.busy = True
        column.cancel.clear()
        column.current_text = ""
        column.current = Static("", classes="msg model")
        column.add(column.current)
        self._flush_timer.resume()
        self._generate(column, job)

    @work(thread=True, group="chat-generate", exit_on_error=False)
    def _generate(self, column: ChatColumn, job) -> None:
        try:
            turn = job()
        except Exception as exc:
            if column.conversation is not None:
                column.conversation.engine.reset()  # this worker is the only user of the engine now
            self.app.call_from_thread(self._finish, column, None, describe_error(exc))
            return
        self.app.call_from_thread(self._finish, column, turn, None)

    def _flush(self) -> None:
        for column in self.query(ChatColumn):
            column.flush()

    def _finish(self, column: ChatColumn, turn: Turn | None, error: str | None) -> None:
        column.flush()
        column.busy = False
        if not any(c.busy for c in self.query(ChatColumn)):
            self._flush_timer.pause()
        if error is not None:
            column.add(Static(Text(f"error: {error}"), classes="msg error"))
            self.notify(error, title="generation failed", severity="error")
            return
        if turn is None:
            return
        if column.current is not None and not column.current_text:
            column.current.update(Text(turn.answer or "(no answer)"))
        info = f"{turn.new_tokens} tokens, {turn.tokens_per_s:.1f} tok/s, cache reused: {turn.reused_tokens} tokens"
        if note := turn.screen_note():
            info += f", {note}"
        if turn.cancelled:
            info = "cancelled | " + info
        if turn.mode in REASONING_MODES:
            info = f"answer: {turn.final if turn.final is not None else '(none)'} | " + info
        column.add(Static(info, classes="msg info"))
        if turn.vote is not None:
            vote = turn.vote
            tally = ", ".join(f"{a} x{c}" for a, c in vote.tally.items()) or "no answers"
            head = f"tie between {', '.join(map(str, vote.tied))}" if vote.tie else f"winner {vote.answer}"
            samples = [Collapsible(Static(Text(s.text)), title=f"sample {s.index}: answer {s.answer}",
                                   collapsed=True) for s in vote.samples]
            column.add(Collapsible(*samples, title=f"votes: {tally} | {head} | no answer "
                                                   f"{vote.no_answer_share:.0%} | saved {vote.saved} of {vote.n}",
                                   collapsed=False, classes="vote"))
        if turn.beams is not None:
            tok = column.conversation.engine.tokenizer
            beams = [Collapsible(Static(Text(tok.decode_bytes(b.ids).decode("utf-8", errors="replace"))),
                                 title=f"beam {i + 1}: log p {b.logprob:.2f}, score {b.score:.2f}"
                                       + ("" if b.stopped else " (cut at the budget)"), collapsed=True)
                     for i, b in enumerate(turn.beams.beams)]
            column.add(Collapsible(*beams, title=f"beams: {len(beams)}, best first | {turn.beams.tokens} tokens decoded",
                                   collapsed=False, classes="vote"))
        if turn.scored is not None:
            scored = turn.scored
            order = sorted(range(len(scored.samples)), key=lambda i: (-scored.scores[i], i))
            samples = [Collapsible(Static(Text(scored.samples[i].text)),
                                   title=f"sample {scored.samples[i].index}: score {scored.scores[i]:.2f}, "
                                         f"answer {scored.samples[i].answer}"
                                         + (" (kept)" if scored.samples[i] is scored.best else ""), collapsed=True)
                       for i in order]
            right = sum(v == max(scored.scores) for v in scored.scores)
            column.add(Collapsible(*samples, title=f"best of {len(samples)}: kept answer {scored.best.answer} "
                                                   f"(score {max(scored.scores):.2f}, {right} at that score)",
                                   collapsed=False, classes="vote"))
        if column.id == "chat-a":
            self.last_turn = turn
            if self.query_one("#chat-tokens", TokenPanel).display:
                self._show_tokens(turn)

    # --- actions --------------------------------------------------------------------------------------
    def action_cancel(self) -> None:
        """Esc: stop the answer being generated; with nothing generating, leave the input (so the panel
        keys 1-4 apply; typing a letter in the chat panel goes back to it)."""
        busy = [c for c in self.query(ChatColumn) if c.busy]
        for column in busy:
            column.cancel.set()
        if not busy:
            self.screen.set_focus(self.query_one("#chat-a", ChatColumn).transcript)  # now, not deferred

    def on_key(self, event) -> None:
        """A letter typed while the focus is elsewhere in the chat panel goes into the message input
        (digits stay panel keys there)."""
        focused = self.app.focused
        if isinstance(focused, Input) or not event.is_printable or not event.character:
            return
        if event.character.isdigit() or event.character == "?":
            return
        field = self.query_one("#chat-input", Input)
        field.focus()
        field.insert_text_at_cursor(event.character)
        event.stop()
        event.prevent_default()

    def action_regenerate(self) -> None:
        columns = [c for c in self._ready_columns() if c.conversation and c.conversation.turns]
        if not columns:
            self.notify("nothing to regenerate", severity="warning")
            return
        options = self.options()
        for column in columns:
            self._start(column, lambda c=column, o=options: c.conversation.regenerate(o, c.cancel, c.pending.push))

    def action_export_chat(self) -> Path | None:
        column = self.query_one("#chat-a", ChatColumn)
        if column.conversation is None or not column.conversation.turns:
            self.notify("nothing to export yet", severity="warning")
            return None
        self.export_dir.mkdir(parents=True, exist_ok=True)
        path = self.export_dir / f"chat-{len(list(self.export_dir.glob('chat-*.md'))) + 1}.md"
        path.write_text(column.conversation.to_markdown())
        self.notify(f"chat written to {path}")
        return path

    def action_copy_last(self) -> None:
        if self.last_turn is None:
            self.notify("no answer to copy", severity="warning")
            return
        self.app.copy_to_clipboard(self.last_turn.answer)
        self.notify("last answer copied (OSC 52)")

    def action_token_view(self) -> None:
        """Show (and focus) the token view of the last answer, or hide it and go back to the input."""
        panel = self.query_one("#chat-tokens", TokenPanel)
        panel.display = not panel.display
        if panel.display:
            if self.last_turn is not None:
                self._show_tokens(self.last_turn)
            panel.view.focus()
        else:
            self.screen.set_focus(self.query_one("#chat-input", Input))  # now: Widget.focus would defer it past queued keys

    def _show_tokens(self, turn: Turn) -> None:
        self.query_one("#chat-tokens", TokenPanel).show_tokens(turn.token_probs)

    def action_new_chat(self) -> None:
        for column in self.query(ChatColumn):
            if column.conversation is not None:
                column.conversation.reset()
            column.transcript.remove_children()
        self.last_turn = None

    def action_close_compare(self) -> None:
        self.open_compare(None)
