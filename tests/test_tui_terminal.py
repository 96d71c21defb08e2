"""The workbench in a real terminal (a pty read by a terminal emulator): what a user types goes where
the screen says it goes. Regression tests for issue 18: typing a chat message after `c` (or `4`) fired the
app's single-letter bindings (a attach, 2 dashboard, s start a 1500-step run, ? help, q quit)."""
from __future__ import annotations

import sys

import pytest

pytest.importorskip("pexpect")
pytest.importorskip("pyte")

from terminal_helpers import ENTER, ESC, Terminal  # noqa: E402
from tui_helpers import trained_run  # noqa: E402

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pty")

# Every letter of the keys that used to fire from the chat: s(tart) a(ttach) q(uit) 2 ? x(stop) p(ause) k c v
MESSAGE = "Mia has 52 shells. She finds 27 shells. s a q 2 ? x p k c v"


def run_names(tmp_path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "runs").iterdir() if p.is_dir())


def test_a_message_typed_after_c_and_the_checkpoint_picker_is_sent_and_starts_nothing(tmp_path) -> None:
    trained_run(tmp_path, "base", checkpoint_every=3, keep_last=3)  # two checkpoints: c opens the picker
    with Terminal(tmp_path) as term:
        # Runs (its keys in the footer once its table has the focus), the picker, then the chat panel with
        # the checkpoint loaded ...
        for key, then in (("3", "a Attach"), ("c", "chat with which checkpoint?"), (ENTER, "base (step 6)")):
            term.press(key)
            term.wait_for(then)
        term.type(MESSAGE)  # ... and the message input has the focus: every key is text
        term.press(ENTER)
        screen = term.wait_for("tok/s")  # the answer's info line: the message was sent and answered
        assert MESSAGE in screen
        assert "Message (Enter to send" in screen  # the input is empty again, still on the chat panel
        assert "keys here" not in screen  # ? did not open the help
        assert term.child.isalive()  # q did not quit
        assert run_names(tmp_path) == ["base"]  # s started no run
        term.quit()
    assert run_names(tmp_path) == ["base"]


def test_typing_after_4_goes_to_the_input_and_esc_gives_the_panel_keys_back(tmp_path) -> None:
    trained_run(tmp_path, "base")
    with Terminal(tmp_path) as term:
        term.press("4")
        term.wait_for("no checkpoint")
        term.type("s a q 2 ?")
        screen = term.wait_for("s a q 2 ?")  # typed into the message input
        assert "keys here" not in screen and term.child.isalive()
        term.press(ENTER)
        term.wait_for("open a checkpoint first")  # sent with no checkpoint: a notice, not a run
        term.press(ESC)  # Esc leaves the input: now 3 is a panel key again
        term.press("3")
        term.wait_for("runs in")
        assert run_names(tmp_path) == ["base"]
