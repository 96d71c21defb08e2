"""`TokenPanel`: the last answer token by token, each on a background from red (improbable) to green
(probable), with the probability and log-probability of the token under the mouse or the keyboard cursor.

p is the probability the model gave the token it produced, after the turn's sampling settings
(temperature / top-k / top-p), at that position of the answer (llm_core.engine.conversation). The layout
is our own word-wrap on token boundaries, so the cell under the mouse maps back to exactly one token.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from rich.cells import cell_len
from rich.style import Style
from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.geometry import Region, Size
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Static

NEWLINE_MARK = "⏎"


@dataclass(frozen=True)
class Cell:
    """Where one piece of a token sits: line, first column, text (a token may span lines)."""

    token: int
    line: int
    x: int
    text: str


def layout_tokens(pieces: list[str], width: int) -> list[list[Cell]]:
    """Lines of at most `width` cells. A token that does not fit moves to the next line; a newline inside a
    token is shown as ⏎ and breaks the line; a token wider than a line is split."""
    width = max(width, 1)
    lines: list[list[Cell]] = [[]]
    x = 0

    def place(token: int, text: str) -> None:
        nonlocal x
        while text:
            if x and x + cell_len(text) > width:
                lines.append([])
                x = 0
            fit = text
            while cell_len(fit) > width - x:  # only for a token wider than a whole line
                fit = fit[:-1]
            lines[-1].append(Cell(token, len(lines) - 1, x, fit))
            x += cell_len(fit)
            text = text[len(fit):]

    for i, piece in enumerate(pieces):
        parts = piece.split("\n")
        for k, part in enumerate(parts):
            last = k == len(parts) - 1
            place(i, part if last else part + NEWLINE_MARK)
            if not last:
                lines.append([])
                x = 0
    if not lines[-1] and len(lines) > 1:
        lines.pop()
    return lines


def probability_style(p: float) -> Style:
    red, green = int(200 * (1 - p)) + 40, int(160 * p) + 40
    return Style(bgcolor=f"rgb({red},{green},60)", color="white")


def token_detail(pieces: list[str], probs: list[float], index: int) -> str:
    """One line on token `index`: its text, p and log p (natural log)."""
    if not pieces:
        return "no answer yet"
    p = probs[index]
    return (f"token {index + 1}/{len(pieces)}  {pieces[index]!r}  p={p:.3f}  log p={math.log(max(p, 1e-12)):.2f}"
            "   (←/→ or the mouse)")


class TokenView(Widget, can_focus=True):
    """The shaded tokens; the cursor token is underlined and reversed."""

    DEFAULT_CSS = "TokenView { height: auto; }"
    BINDINGS = [
        Binding("left", "move(-1)", "Previous token", show=False),
        Binding("right", "move(1)", "Next token", show=False),
        Binding("up", "line(-1)", "Line up", show=False),
        Binding("down", "line(1)", "Line down", show=False),
        Binding("home", "jump(0)", "First token", show=False),
        Binding("end", "jump(-1)", "Last token", show=False),
    ]

    class CursorMoved(Message):
        def __init__(self, index: int) -> None:
            super().__init__()
            self.index = index

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.pieces: list[str] = []
        self.probs: list[float] = []
        self.cursor = 0
        self._lines: list[list[Cell]] = []
        self._width = -1

    def show_tokens(self, token_probs: list[tuple[str, float]]) -> None:
        self.pieces = [piece for piece, _ in token_probs]
        self.probs = [p for _, p in token_probs]
        self._lines, self._width = [], -1
        self.set_cursor(0)
        self.refresh(layout=True)

    def lines(self, width: int) -> list[list[Cell]]:
        if width != self._width:
            self._lines, self._width = layout_tokens(self.pieces, width), width
        return self._lines

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return len(self.lines(width)) if self.pieces else 1

    def render(self) -> Text:
        if not self.pieces:
            return Text("no answer yet", style="dim")
        text = Text(no_wrap=True)
        for n, line in enumerate(self.lines(self.content_region.width)):
            if n:
                text.append("\n")
            for cell in line:
                style = probability_style(self.probs[cell.token])
                if cell.token == self.cursor:
                    style += Style(reverse=True, underline=True, bold=True)
                text.append(cell.text, style=style)
        return text

    # --- cursor ---------------------------------------------------------------------------------------
    def set_cursor(self, index: int) -> None:
        if not self.pieces:
            return
        self.cursor = max(0, min(index, len(self.pieces) - 1))
        self.refresh()
        self.post_message(self.CursorMoved(self.cursor))
        line = self.line_of(self.cursor)
        if line is not None and isinstance(self.parent, VerticalScroll):
            self.parent.scroll_to_region(Region(0, line, 1, 1), animate=False)

    def line_of(self, index: int) -> int | None:
        for cell in (c for line in self._lines for c in line):
            if cell.token == index:
                return cell.line
        return None

    def token_at(self, x: int, y: int) -> int | None:
        lines = self._lines
        if not 0 <= y < len(lines):
            return None
        for cell in lines[y]:
            if cell.x <= x < cell.x + cell_len(cell.text):
                return cell.token
        return None

    def action_move(self, step: int) -> None:
        self.set_cursor(self.cursor + step)

    def action_jump(self, index: int) -> None:
        self.set_cursor(index if index >= 0 else len(self.pieces) - 1)

    def action_line(self, step: int) -> None:
        line = self.line_of(self.cursor)
        if line is None:
            return
        x = next(c.x for c in self._lines[line] if c.token == self.cursor)
        target = max(0, min(line + step, len(self._lines) - 1))
        cells = self._lines[target]
        if cells:  # the token on that line closest to the same column
            self.set_cursor(min(cells, key=lambda c: abs(c.x - x)).token)

    def on_mouse_move(self, event: events.MouseMove) -> None:
        offset = event.get_content_offset(self)
        token = self.token_at(offset.x, offset.y) if offset is not None else None
        if token is not None and token != self.cursor:
            self.set_cursor(token)


class TokenPanel(Vertical):
    """Token view (scrolls when the answer is long) over the detail line of the cursor token."""

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="token-scroll"):
            yield TokenView(id="token-view")
        yield Static("no answer yet", id="token-detail")

    @property
    def view(self) -> TokenView:
        return self.query_one("#token-view", TokenView)

    def show_tokens(self, token_probs: list[tuple[str, float]]) -> None:
        self.view.show_tokens(token_probs)

    def on_token_view_cursor_moved(self, message: TokenView.CursorMoved) -> None:
        view = self.view
        self.query_one("#token-detail", Static).update(token_detail(view.pieces, view.probs, message.index))
