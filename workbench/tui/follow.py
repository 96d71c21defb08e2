"""Moving training events to the UI without one UI call per step.

`EventBuffer`: the training thread pushes events, the UI's timers drain them in batches (Textual's
`call_from_thread` blocks the caller, so calling it per step would slow training down to the UI's pace).
`MetricsFollower`: reads the lines appended to a run's `metrics.jsonl` since the last poll, so the UI can
follow a run training in another process (`workbench train` in tmux over ssh) the same way.
"""
from __future__ import annotations

import threading
from collections import deque
from pathlib import Path
from typing import Any

from llm_core.training.events import parse_event


class EventBuffer:
    """A thread-safe queue of events: `push` from any thread, `drain` everything so far from the UI."""

    def __init__(self) -> None:
        self._events: deque[dict[str, Any]] = deque()
        self._lock = threading.Lock()
        self.pushed = 0

    def push(self, event: dict[str, Any]) -> None:
        with self._lock:
            self._events.append(event)
            self.pushed += 1

    def drain(self) -> list[dict[str, Any]]:
        with self._lock:
            events = list(self._events)
            self._events.clear()
        return events


class MetricsFollower:
    """Incremental reader of a metrics.jsonl that another process appends to.

    Only complete lines are returned (a line being written is kept for the next poll); a missing file is
    "nothing yet"; a corrupt line is skipped and counted in `corrupt`, never raised.
    """

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        self.path = path / "metrics.jsonl" if path.is_dir() else path
        self._offset = 0
        self._partial = b""
        self.corrupt = 0

    def poll(self) -> list[dict[str, Any]]:
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self._offset += len(data)
        data = self._partial + data
        *lines, self._partial = data.split(b"\n")
        events = []
        for line in lines:
            if not line.strip():
                continue
            event = parse_event(line)
            if event is None:
                self.corrupt += 1
            else:
                events.append(event)
        return events
