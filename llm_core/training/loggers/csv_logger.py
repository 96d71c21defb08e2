"""The CSV tracker: `metrics.csv` (one row per step event) and `eval_metrics.csv` (one row per eval event)
in the run folder, comma-separated with a header row (RFC 4180, Python's `csv` module).

Columns: `step`, then the event's scalars (`base.scalars`) in the order the trainer writes them, e.g.
step, epoch, lr, loss, grad_norm, clipped, tokens, tokens_per_s, elapsed, then the stage's own (DPO
margins, RL rewards, `expert_load/0`...). A key that first appears mid-run (`lr_scale` after the user
changed it) widens the header: the file is rewritten once with the new column, earlier rows empty
there. An empty cell is a value the event did not have (or null in metrics.jsonl: non-finite).

Rows are buffered and flushed (fsynced) at every checkpoint and at the end. A resumed run drops the rows
of steps at or after its start step first, as `runs.truncate_metrics` does for metrics.jsonl, so the
steps replayed after the checkpoint appear once; the rewrite is atomic (`runs.write_atomic`).
"""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import IO

from ..runs import write_atomic
from .base import RunStart, Scalar

FILES = {"step": "metrics.csv", "eval": "eval_metrics.csv"}


def _cell(value: Scalar | None) -> str:
    # repr: the shortest text that reads back as the same float (what json.dumps writes, too)
    return "" if value is None else repr(value) if isinstance(value, float) else str(value)


class CSVTable:
    """One CSV file of rows keyed by step, appended to; `columns[0]` is always "step"."""

    def __init__(self, path: Path, start_step: int) -> None:
        self.path = path
        self.columns: list[str] = ["step"]
        kept: list[list[str]] = []
        rows = self._read() if path.is_file() else []
        if rows and rows[0][:1] == ["step"]:  # a resumed run's table: its header, the rows before the resume
            self.columns = rows[0]
            kept = [r for r in rows[1:] if (s := _step_of(r)) is not None and s < start_step]
        self._rewrite(kept)  # (a new table: just the header)
        self._file: IO[str] = open(path, "a", encoding="utf-8", newline="")
        self._writer = csv.writer(self._file)
        self._closed = False

    def _read(self) -> list[list[str]]:
        with open(self.path, encoding="utf-8", newline="") as f:
            return list(csv.reader(f))

    def _rewrite(self, rows: list[list[str]]) -> None:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(self.columns)
        writer.writerows(rows)
        write_atomic(self.path, buffer.getvalue())

    def write(self, step: int, values: dict[str, Scalar]) -> None:
        new = [k for k in values if k not in self.columns]
        if new:
            self._widen(new)
        self._writer.writerow([str(step)] + [_cell(values.get(c)) for c in self.columns[1:]])

    def _widen(self, new: list[str]) -> None:
        """Rewrite the file with `new` columns appended to the header (earlier rows empty there)."""
        self._file.close()
        rows = self._read()[1:]
        self.columns += new
        self._rewrite([r + [""] * (len(self.columns) - len(r)) for r in rows])
        self._file = open(self.path, "a", encoding="utf-8", newline="")
        self._writer = csv.writer(self._file)

    def sync(self) -> None:
        if not self._closed:
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        if not self._closed:
            self.sync()
            self._file.close()
            self._closed = True


def _step_of(row: list[str]) -> int | None:
    try:
        return int(row[0])
    except (ValueError, IndexError):
        return None


class CSVLogger:
    """`loggers=("csv",)`: metrics.csv and eval_metrics.csv in the run folder (no extra package)."""

    def __init__(self) -> None:
        self.tables: dict[str, CSVTable] = {}

    def open(self, run: RunStart) -> None:
        self.tables = {kind: CSVTable(run.run_dir / name, run.start_step) for kind, name in FILES.items()}

    def log(self, kind: str, step: int, values: dict[str, Scalar]) -> None:
        self.tables[kind].write(step, values)

    def flush(self) -> None:
        for table in self.tables.values():
            table.sync()

    def close(self, failed: bool = False) -> None:
        tables, self.tables = self.tables, {}
        for table in tables.values():
            table.close()
