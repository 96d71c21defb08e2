"""`TrainingSession`: one training run driven from the UI, off the UI thread.

The Trainer runs in a worker thread; its events go into an `EventBuffer` that the UI drains on timers.
Every event also checks `should_stop` (the worker's cancellation flag): a thread worker does not stop by
itself, so cancelling the worker becomes `trainer.stop()` at the next step boundary, which always writes a
checkpoint. This module knows nothing about Textual: the app passes `should_stop`.
"""
from __future__ import annotations

import threading
from typing import Any, Callable

from llm_core.training import TrainConfig, Trainer, build_trainer

from .follow import EventBuffer


class TrainingSession:
    def __init__(self, config: TrainConfig, buffer: EventBuffer | None = None) -> None:
        self.config = config
        self.buffer = buffer or EventBuffer()
        self.trainer: Trainer | None = None
        self.error: str | None = None
        self.end: dict[str, Any] | None = None
        self._ready = threading.Event()  # set once the trainer exists (or failed to build)
        self._stop_early = False  # a stop requested while the trainer was still being built
        self.pause_requested = False

    # --- the worker's body ----------------------------------------------------------------------------
    def run(self, should_stop: Callable[[], bool] = lambda: False) -> dict[str, Any] | None:
        """Build the trainer and train (blocking: call from a worker thread). Returns the end event."""
        try:
            self.trainer = build_trainer(self.config)  # the stage's way (trace distillation writes traces first)
        except Exception as exc:  # bad data path, broken init checkpoint...: shown in the UI, never raised
            self.error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, ValueError) else str(exc)
            self.buffer.push({"type": "end", "reason": "error", "message": self.error, "step": 0})
            self._ready.set()
            return None
        trainer = self.trainer

        def on_event(event: dict[str, Any]) -> None:
            self.buffer.push(event)
            if should_stop():
                trainer.stop()

        trainer.subscribe(on_event)
        try:  # a couple of measured steps on a copy: the start event carries the ETA before step 1
            trainer.estimate(measure_steps=2)
        except Exception:  # no estimate is no reason not to train; the ETA then comes from the steps
            pass
        self._ready.set()
        if self._stop_early or should_stop():
            trainer.stop()
        try:
            self.end = trainer.run()
        except Exception as exc:  # already reported as an end event by the trainer
            self.error = f"{type(exc).__name__}: {exc}"
        if trainer.error:
            self.error = trainer.error
        return self.end

    # --- control (any thread) -------------------------------------------------------------------------
    @property
    def state(self) -> str:
        if self.trainer is None:
            return "failed" if self.error else "starting"
        return self.trainer.state

    @property
    def active(self) -> bool:
        return self.state in ("starting", "idle", "running", "paused", "stopping")

    def pause(self) -> None:
        if self.trainer is not None:
            self.pause_requested = True
            self.trainer.pause()

    def resume(self) -> None:
        if self.trainer is not None:
            self.pause_requested = False
            self.trainer.resume_training()

    def stop(self) -> None:
        """Stop between steps; the trainer writes a checkpoint before it ends."""
        self._stop_early = True
        if self.trainer is not None:
            self.trainer.resume_training()  # a paused run must wake up to stop
            self.trainer.stop()

    def set_beta(self, beta: float) -> None:
        if self.trainer is None:
            raise ValueError("beta: no run is training")
        self.trainer.set_beta(beta)

    def set_lr_scale(self, scale: float) -> None:
        if self.trainer is None:
            raise ValueError("lr scale: no run is training")
        self.trainer.set_lr_scale(scale)

    def wait_until_done(self, timeout: float | None = None) -> bool:
        """Block until the trainer has ended (finished, stopped or failed)."""
        if not self._ready.wait(timeout):
            return False
        if self.trainer is None:
            return True
        return self.trainer.wait_for_state("finished", "failed", timeout=timeout)
