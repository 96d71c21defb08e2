"""Run folders: creating them, writing and reading `metrics.jsonl`, and listing the runs under a root.

`read_metrics` tolerates a partially written last line, so the UI can follow a live run; `list_runs`
reports a broken folder (missing/invalid config, unreadable metrics) with a reason instead of raising.
A run's status, steps and losses come from `summary.summarize_metrics`: the numbers of `events.RunHistory`
(the fold the plots use) from the few lines that decide them, so listing a 100k-step run does not parse
100k lines. Its "running" is then checked against the run's lock (`lock.py`): no live holder means the
process died without its end event ("interrupted"), a holder other than this process means it trains
elsewhere (`RunInfo.pid`).

Every file rewritten in place (config.json at each start, metrics.jsonl when a resume trims it) is
written to a temporary name, fsynced and renamed over the old one, so a crash leaves the old or the new
file, never half of one.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..io import write_atomic
from ..tokenizer import Tokenizer, save_tokenizer_ref
from .checkpoint import clean_temporary, list_checkpoints
from .config import TrainConfig
from .events import Event, parse_event
from .loading import TOKENIZER_DIR
from .lock import RunLock, lock_holder
from .summary import summarize_metrics

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"


def _json_safe(value: Any) -> Any:
    """NaN/inf are not JSON: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


class MetricsWriter:
    """Appends one JSON object per line and flushes it, so readers see every event as it happens."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file = open(self.path, "a", encoding="utf-8")

    def write(self, event: Event) -> None:
        self._file.write(json.dumps(_json_safe(event), allow_nan=False) + "\n")
        self._file.flush()

    def sync(self) -> None:
        """Force the lines written so far to disk (at checkpoints: the log never ends before its checkpoint)."""
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


def read_metrics(path: str | Path) -> list[Event]:
    """Events of a metrics.jsonl (or of a run folder). A last line without its newline (being written) is
    ignored; a malformed complete line is skipped."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    lines = text.split("\n")
    complete = lines[:-1]  # the part after the last newline is an unfinished line (or empty)
    events = [parse_event(line) for line in complete if line.strip()]
    return [e for e in events if e is not None]


def truncate_metrics(path: str | Path, step: int) -> None:
    """Drop events after checkpoint `step` (steps >= step) so a resumed run does not log them twice."""
    path = Path(path)
    if not path.is_file():
        return
    keep = []
    for event in read_metrics(path):
        s = event.get("step")
        if isinstance(s, int) and (s > step if event.get("type") == "checkpoint" else s >= step):
            continue
        if event.get("type") in ("start", "end") and isinstance(s, int) and s > step:
            continue
        keep.append(json.dumps(event))
    write_atomic(path, "".join(line + "\n" for line in keep))


def _check_new(path: Path) -> None:
    if (path / "checkpoints").is_dir() or (path / METRICS_FILE).is_file():
        raise ConfigError(f"TrainConfig.name: run folder {str(path)!r} already exists (use --resume to continue it)",
                          field="name")


def make_run_dir(config: TrainConfig, create: bool = True) -> Path:
    """`out/name`, or `out/<stage>-<timestamp>[-k]` when no name is given; a named run must be new."""
    root = Path(config.out)
    if config.name:
        path = root / config.name
        _check_new(path)
    else:
        base = f"{config.stage}-{time.strftime('%Y%m%d-%H%M%S')}"
        path, k = root / base, 2
        while path.exists():
            path, k = root / f"{base}-{k}", k + 1
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def claim_new_run_dir(config: TrainConfig) -> tuple[Path, RunLock]:
    """Create the run folder of a new run and take its lock, before anything is written into it.

    Two processes starting the same named run at once: the lock lets one through and refuses the other
    (RunLockedError naming the holder's PID); the "already exists" check is repeated under the lock, so
    the loser cannot slip in after the winner has finished either. Timestamped names are made unique by
    an exclusive mkdir."""
    root = Path(config.out)
    if config.name:
        path = root / config.name  # the lock first: a live holder is named even if its folder exists
    else:
        base = f"{config.stage}-{time.strftime('%Y%m%d-%H%M%S')}"
        path, k = root / base, 2
        root.mkdir(parents=True, exist_ok=True)
        while True:
            try:
                path.mkdir()
                break
            except FileExistsError:
                path, k = root / f"{base}-{k}", k + 1
    lock = RunLock(path).acquire()
    try:
        _check_new(path)
    except ConfigError:
        lock.release()
        raise
    return path, lock


def prepare_run_dir(run_dir: Path, full_config: dict[str, Any], tokenizer: Tokenizer | None) -> None:
    """Create the folder, drop temporary checkpoint folders of an interrupted save, write config.json and
    (once) the tokenizer, so the run can be reproduced and its checkpoints are self-contained."""
    run_dir.mkdir(parents=True, exist_ok=True)
    clean_temporary(run_dir)
    write_atomic(run_dir / CONFIG_FILE, json.dumps(full_config, indent=2, sort_keys=True) + "\n")
    if tokenizer is not None and not (run_dir / TOKENIZER_DIR).is_dir():
        save_tokenizer_ref(tokenizer, run_dir / TOKENIZER_DIR)


@dataclass
class RunInfo:
    name: str
    path: Path
    config: dict[str, Any] = field(default_factory=dict)
    steps: int = 0  # optimizer steps logged
    max_steps: int | None = None
    last_loss: float | None = None
    best_val_loss: float | None = None
    checkpoints: list[str] = field(default_factory=list)
    status: str = "unknown"  # running | interrupted | finished | stopped | error | broken | new
    broken: str | None = None  # why the folder could not be read
    pid: int | None = None  # the live process training it (0: alive, PID unknown), None when nobody is
    modified: float = 0.0


def read_run(path: str | Path) -> RunInfo:
    path = Path(path)
    info = RunInfo(name=path.name, path=path)
    try:
        info.modified = path.stat().st_mtime
        config_file = path / CONFIG_FILE
        if not config_file.is_file():
            info.status, info.broken = "broken", f"{config_file.name} is missing"
            return info
        try:
            config = json.loads(config_file.read_text())
            if not isinstance(config, dict):
                raise ValueError("not an object")
        except (ValueError, UnicodeDecodeError) as exc:
            info.status, info.broken = "broken", f"{config_file.name} is not valid JSON ({exc})"
            return info
        info.config = config
        info.max_steps = config.get("max_steps") if isinstance(config.get("max_steps"), int) else None
        info.checkpoints = [p.name for p in list_checkpoints(path)]
        summary = summarize_metrics(path / METRICS_FILE)
        info.steps, info.last_loss, info.best_val_loss = summary.steps, summary.last_loss, summary.best_val_loss
        info.pid = lock_holder(path)
        info.status = summary.status
        if info.pid is not None:
            info.status = "running"  # a live holder: training, starting up, or resuming an ended run
        elif info.pid is None and info.status == "running":
            info.status = "interrupted"  # a start event, no end event, and no process holding the lock
    except OSError as exc:
        info.status, info.broken = "broken", f"{type(exc).__name__}: {exc}"
    return info


def _run_folders(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]


def list_runs(root: str | Path = "runs") -> list[RunInfo]:
    """Every run folder under `root`, newest first. Never raises for a broken folder (see `RunInfo.broken`)."""
    runs = [read_run(p) for p in _run_folders(Path(root))]
    return sorted(runs, key=lambda r: r.modified, reverse=True)


def has_runs(root: str | Path = "runs") -> bool:
    """Whether `list_runs(root)` would list anything: one directory listing, no run folder read."""
    return bool(_run_folders(Path(root)))
