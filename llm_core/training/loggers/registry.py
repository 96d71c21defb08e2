"""The trackers by name (`LOGGERS`: csv, tensorboard, wandb, plus any `register_logger` adds) and
`LoggerSet`, the one object through which the Trainer feeds them.

`TrainConfig.loggers` names the trackers of a run; `check_logger_names` (called by its `__post_init__`)
refuses an unknown name, and `build_loggers` (called by the Trainer before it builds anything) refuses a
tracker whose optional package is missing, in one line naming the extra that installs it. Only names
are checked at config time: a run's config.json that names tensorboard still loads (for chat, eval or
export) on a machine without it.
"""
from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import Callable, Iterable

from ...errors import ConfigError
from ..events import Event
from .base import SCALAR_EVENTS, Logger, RunStart, scalars


@dataclass(frozen=True)
class LoggerSpec:
    name: str
    factory: Callable[[], Logger]
    writes: str  # where its output goes, relative to the run folder (shown by the CLI)
    package: str | None = None  # the import a tracker needs beyond llm-workbench's own dependencies
    extra: str | None = None  # the llm-workbench optional extra that installs `package`

    def require(self) -> None:
        """Refuse (one line) when the optional package is not installed. Found, not imported (wandb takes
        half a second to import): cheap enough for the TUI's run form to check as the field is typed."""
        if self.package is None or importlib.util.find_spec(self.package) is not None:
            return
        install = f"pip install 'llm-workbench[{self.extra}]'" if self.extra else f"pip install {self.package}"
        raise ConfigError(f"loggers: {self.name} needs the package {self.package!r}: {install}", field="loggers")


def _lazy(module: str, name: str) -> Callable[[], Logger]:
    """A factory importing its module on first use: config.py imports this registry to check names, and
    csv_logger imports runs.py, which imports config.py; importing the trackers here would be a cycle."""
    def make() -> Logger:
        return getattr(importlib.import_module(module, __package__), name)()
    return make


LOGGERS: dict[str, LoggerSpec] = {}


def register_logger(spec: LoggerSpec) -> None:
    """Add (or replace) a tracker by name, e.g. an in-house one: `TrainConfig(loggers=("mine",))` then
    works once this has run."""
    if not spec.name or "," in spec.name or spec.name != spec.name.strip() or spec.name == "none":
        raise ConfigError(f"loggers: {spec.name!r} is not a valid tracker name")
    LOGGERS[spec.name] = spec


register_logger(LoggerSpec("csv", _lazy(".csv_logger", "CSVLogger"), "metrics.csv, eval_metrics.csv"))
register_logger(LoggerSpec("tensorboard", _lazy(".tensorboard_logger", "TensorBoardLogger"), "tensorboard/",
                           package="tensorboard", extra="tensorboard"))
register_logger(LoggerSpec("wandb", _lazy(".wandb_logger", "WandbLogger"), "wandb/", package="wandb",
                           extra="wandb"))


def check_logger_names(names: Iterable[str]) -> tuple[str, ...]:
    """The names as a tuple without repeats ("none" alone = no tracker); ConfigError on an unknown one."""
    names = tuple(dict.fromkeys(str(n).strip() for n in names))
    if names == ("none",):
        return ()
    for name in names:
        if name not in LOGGERS:
            raise ConfigError(f"unknown logger {name!r} (known: {', '.join(LOGGERS)})", field="loggers")
    return names


def require_packages(names: Iterable[str]) -> None:
    """ConfigError (one line naming the extra to install) when a tracker of `names` lacks its package."""
    for name in check_logger_names(names):
        LOGGERS[name].require()


def build_loggers(names: Iterable[str]) -> "LoggerSet":
    """The trackers of `names`, checked for their packages first (`require_packages`)."""
    require_packages(names)
    return LoggerSet([LOGGERS[name].factory() for name in check_logger_names(names)])


class LoggerSet:
    """Fans a run's events out to its trackers: a start event opens them, step and eval events go out as
    `scalars`, a checkpoint event flushes them; `close` ends them (the Trainer calls it when the run ends,
    before its end event, and again, failed, when the run died). A second start (run() called again, or
    a resumed run) opens new sessions."""

    def __init__(self, loggers: list[Logger]) -> None:
        self.loggers = loggers
        self._open: list[Logger] = []

    def __call__(self, event: Event) -> None:
        kind = event.get("type")
        if kind == "start":
            self.close()
            run = RunStart.from_event(event)
            for logger in self.loggers:
                logger.open(run)
                self._open.append(logger)
        elif kind in SCALAR_EVENTS and self._open:
            values = scalars(event)
            if values:
                for logger in self._open:
                    logger.log(kind, int(event["step"]), values)
        elif kind == "checkpoint":
            for logger in self._open:
                logger.flush()

    def close(self, failed: bool = False) -> None:
        """Close every open tracker (all of them, even when one fails; then the first error is raised)."""
        errors: list[Exception] = []
        opened, self._open = self._open, []
        for logger in reversed(opened):
            try:
                logger.close(failed)
            except Exception as exc:  # the others must still close
                errors.append(exc)
        if errors:
            raise errors[0]
