"""The per-token probability view: layout on token boundaries, and p / log p of the token under the
keyboard cursor or the mouse."""
from __future__ import annotations

import math

from textual.app import App, ComposeResult

from workbench.tui.widgets.token_view import NEWLINE_MARK, TokenPanel, TokenView, layout_tokens, token_detail

TOKENS = [("The", 0.5), (" answer", 0.25), (" is", 0.9), (" 42", 0.01), (".\n", 0.7), ("Done", 0.99)]


def test_layout_keeps_tokens_whole_and_marks_newlines() -> None:
    lines = layout_tokens([p for p, _ in TOKENS], width=12)
    text = ["".join(c.text for c in line) for line in lines]
    assert text == ["The answer", " is 42." + NEWLINE_MARK, "Done"]
    for line in lines:  # cells are contiguous and within the width
        x = 0
        for cell in line:
            assert cell.x == x
            x += len(cell.text)
        assert x <= 12


def test_layout_splits_a_token_wider_than_the_line() -> None:
    lines = layout_tokens(["ab", "cdefghij"], width=4)
    assert ["".join(c.text for c in line) for line in lines] == ["ab", "cdef", "ghij"]
    assert {c.token for line in lines[1:] for c in line} == {1}


def test_detail_gives_p_and_natural_log_p() -> None:
    pieces, probs = [p for p, _ in TOKENS], [p for _, p in TOKENS]
    detail = token_detail(pieces, probs, 3)
    assert "token 4/6" in detail and "' 42'" in detail
    assert f"p={0.01:.3f}" in detail and f"log p={math.log(0.01):.2f}" in detail  # log p = -4.61


class TokenApp(App):
    def compose(self) -> ComposeResult:
        yield TokenPanel(id="panel")


def detail(app: App) -> str:
    return str(app.query_one("#token-detail").render())


async def test_keys_and_mouse_move_the_cursor_and_update_the_detail() -> None:
    app = TokenApp()
    async with app.run_test(size=(12, 8)) as pilot:
        panel = app.query_one("#panel", TokenPanel)
        panel.show_tokens(TOKENS)
        panel.view.focus()
        await pilot.pause()
        assert panel.view.cursor == 0 and "token 1/6" in detail(app)
        await pilot.press("right", "right")
        assert panel.view.cursor == 2 and "' is'" in detail(app) and f"log p={math.log(0.9):.2f}" in detail(app)
        await pilot.press("end")
        assert panel.view.cursor == 5 and "'Done'" in detail(app)
        await pilot.press("up")  # the line above, nearest column: ' is' starts at column 0 as 'Done' does
        assert panel.view.cursor == 2
        # Hover: the third line starts with "Done"; the second line's column 4 is inside ' 42'.
        await pilot.hover(TokenView, offset=(4, 1))
        assert panel.view.cursor == 3 and f"p={0.01:.3f}" in detail(app)
        await pilot.hover(TokenView, offset=(1, 0))
        assert panel.view.cursor == 0
