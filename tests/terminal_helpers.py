"""Drive the workbench through a real terminal: a pseudo-terminal (pexpect) whose output is interpreted
by a terminal emulator (pyte), so a test sees the screen a user sees and types keys the way a user does,
with no Pilot in between (focus, bindings and key parsing are the real ones)."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pexpect
import pyte

ROOT = Path(__file__).resolve().parents[1]  # this checkout's code, whatever the installed package points at

CTRL_Q = "\x11"
ESC = "\x1b"
ENTER = "\r"


class Terminal:
    """`python -m workbench.cli` (the TUI) in a pty of `size` (columns, lines), in folder `cwd`."""

    def __init__(self, cwd: Path, size: tuple[int, int] = (110, 32), args: tuple[str, ...] = ()) -> None:
        columns, lines = size
        self.screen = pyte.Screen(columns, lines)
        self.stream = pyte.ByteStream(self.screen)
        env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(columns), "LINES": str(lines),
               "TEXTUAL_ANIMATIONS": "none", "NO_COLOR": "",
               "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
        env.pop("TEXTUAL", None)  # no devtools
        self.child = pexpect.spawn(sys.executable, ["-m", "workbench.cli", *args], cwd=str(cwd), env=env,
                                   dimensions=(lines, columns), encoding=None, timeout=1)

    def pump(self, seconds: float = 0.1) -> None:
        """Feed whatever the app has written so far into the emulator."""
        end = time.monotonic() + seconds
        while True:
            try:
                self.stream.feed(self.child.read_nonblocking(65536, timeout=max(0.0, end - time.monotonic())))
            except pexpect.TIMEOUT:
                pass
            except pexpect.EOF:
                return
            if time.monotonic() >= end:
                return

    @property
    def text(self) -> str:
        return "\n".join(self.screen.display)

    def wait_for(self, needle: str, timeout: float = 60.0) -> str:
        """Pump until `needle` is on the screen; the screen's text, or an AssertionError showing it."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.pump(0.2)
            if needle in self.text:
                return self.text
            if not self.child.isalive():
                break
        raise AssertionError(f"{needle!r} never appeared on the screen:\n{self.text}")

    def type(self, text: str, pause: float = 0.02) -> None:
        """Type like a person: one key at a time (so each goes through the app's key handling alone)."""
        for ch in text:
            self.child.send(ch)
            self.pump(pause)

    def press(self, key: str) -> None:
        self.child.send(key)
        # A lone Esc must reach the app before the next key, or the two read as one Alt+key sequence:
        # give a busy app time to read it on its own.
        self.pump(1.0 if key == ESC else 0.2)

    def close(self) -> None:
        if self.child.isalive():
            self.child.terminate(force=True)

    def __enter__(self) -> "Terminal":
        self.wait_for("1 Run")  # the app is up
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def quit(self) -> None:
        """ctrl+q, and wait for the process to end."""
        self.child.send(CTRL_Q)
        self.child.expect(pexpect.EOF, timeout=20)
