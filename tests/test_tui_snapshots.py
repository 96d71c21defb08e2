"""Snapshots of the main screens (pytest-textual-snapshot) at fixed sizes, dark and light themes, over a
committed synthetic run (tests/fixtures/demo-runs), so the content is deterministic.
Update after an intended change: `.venv/bin/python -m pytest tests/test_tui_snapshots.py --snapshot-update`."""
from __future__ import annotations

from pathlib import Path

import pytest

from llm_core.training import TrainConfig
from tui_helpers import run_shown, runs_listed
from workbench.tui.app import make_app

TESTS = Path(__file__).parent


@pytest.fixture(autouse=True)
def _in_tests_folder(monkeypatch) -> None:
    monkeypatch.chdir(TESTS)  # the runs folder is shown as given: a relative path keeps the machine's out


def demo_app(theme: str = "textual-dark"):
    app = make_app("fixtures/demo-runs", TrainConfig(max_steps=300))
    app.theme = theme
    return app


async def _unfocus(pilot) -> None:
    pilot.app.set_focus(None)  # no blinking cursor in the picture
    await pilot.pause()


@pytest.mark.parametrize("size, theme", [((80, 24), "textual-dark"), ((120, 36), "textual-light")])
def test_run_panel(snap_compare, size, theme) -> None:
    assert snap_compare(demo_app(theme), terminal_size=size, run_before=_unfocus)


def test_dashboard_of_a_past_run(snap_compare) -> None:
    async def open_demo(pilot) -> None:
        await pilot.press("3")
        await runs_listed(pilot)  # the folders and then the run are read in workers
        await pilot.press("enter")
        await run_shown(pilot)
        await _unfocus(pilot)

    assert snap_compare(demo_app(), terminal_size=(100, 32), run_before=open_demo)


def test_runs_panel_small_terminal(snap_compare) -> None:
    async def runs(pilot) -> None:
        await pilot.press("3")
        await runs_listed(pilot)
        await pilot.pause()

    assert snap_compare(demo_app("textual-light"), terminal_size=(80, 24), run_before=runs)


def test_chat_panel(snap_compare) -> None:
    async def chat(pilot) -> None:
        await pilot.press("4")
        await _unfocus(pilot)

    assert snap_compare(demo_app(), terminal_size=(80, 24), run_before=chat)


def test_chat_token_view_small_terminal(snap_compare) -> None:
    """The token view at 80x24: shaded tokens, the cursor on the third, its p and log p below."""
    async def tokens(pilot) -> None:
        await pilot.press("4")
        panel = pilot.app.query_one("#chat-tokens")
        panel.display = True
        panel.show_tokens([("Ruby", 0.91), (" has", 0.85), (" 63", 0.12), (" cards", 0.6), (".\n", 0.97),
                           ("The answer is", 0.99), (" 45", 0.33), (".", 0.98)])
        await pilot.pause()
        panel.view.action_move(2)  # what two presses of -> do when the view has the focus
        await _unfocus(pilot)

    assert snap_compare(demo_app(), terminal_size=(80, 24), run_before=tokens)
