"""Thread-safe control of a training loop: pause / resume / stop and live changes, applied between steps.

The loop runs in one thread and calls `boundary()` before every step; any other thread (the TUI, a signal
handler) posts requests. A request is only recorded here; the loop applies it at the boundary, so a step
never sees a setting change half-way (the learning rate of a step is the one its event reports).
"""
from __future__ import annotations

import threading
from typing import Callable

STATES = ("idle", "running", "paused", "stopping", "finished", "failed")


class LoopControl:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._pause_requested = False
        self._stop_requested = False
        self._pending_lr_scale: float | None = None
        self._pending_tunables: dict[str, float] = {}
        self._state = "idle"

    @property
    def state(self) -> str:
        return self._state

    def set_state(self, state: str) -> None:
        with self._cond:
            self._state = state
            self._cond.notify_all()

    def wait_for_state(self, *states: str, timeout: float | None = None) -> bool:
        """Block until the loop is in one of `states` (True) or `timeout` passes (False)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._state in states, timeout=timeout)

    def request(self, pause: bool | None = None, stop: bool = False, lr_scale: float | None = None,
                tunable: tuple[str, float] | None = None) -> None:
        """Record requests (already validated by the caller) for the next boundary."""
        with self._cond:
            if pause is not None:
                self._pause_requested = pause
            self._stop_requested = self._stop_requested or stop
            if lr_scale is not None:
                self._pending_lr_scale = lr_scale
            if tunable is not None:
                self._pending_tunables[tunable[0]] = tunable[1]
            self._cond.notify_all()

    def boundary(self, set_lr_scale: Callable[[float], None], set_tunable: Callable[[str, float], None]) -> bool:
        """Between steps: wait while paused (unless stopping), apply pending changes; True = stop now."""
        with self._cond:
            while self._pause_requested and not self._stop_requested:
                if self._state != "paused":
                    self._state = "paused"
                    self._cond.notify_all()
                self._cond.wait()
            if self._state == "paused":
                self._state = "running"
                self._cond.notify_all()
            if self._pending_lr_scale is not None:
                set_lr_scale(self._pending_lr_scale)
                self._pending_lr_scale = None
            for name, value in self._pending_tunables.items():
                set_tunable(name, value)
            self._pending_tunables.clear()
            return self._stop_requested
