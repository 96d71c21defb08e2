"""What the runs list shows of a run (status, steps, last loss, best val loss), read from its
`metrics.jsonl` without parsing every line.

Folding every event (`events.RunHistory`) costs one JSON parse per line: most of a second for a 100k-step
run, to show four numbers. Those numbers depend on few lines:
- the status on the last `start` or `end` event,
- the best validation loss on the `eval` events,
- the steps done and the last finite loss on the last step lines: steps are logged in increasing order
  (a resume first truncates the log to its checkpoint, `runs.truncate_metrics`), so the last step line
  carries the highest step.
So the file is read as bytes and only these lines are parsed: the lines where the bytes `"start"`,
`"end"` or `"eval"` occur (the writer, `json.dumps`, spells an event's type as that quoted word; a match
elsewhere in a line costs one parse, never a wrong number: each parsed line's `type` is checked), and
step lines backwards from the end of the file until one with a finite loss. The parsed events go through
`RunHistory`, the same fold as the plots, in file order, so the numbers are the fold's: a test compares
the two on the same files. The rules of `runs.read_metrics` hold: a last line without its newline is
being written and is ignored, a malformed line is skipped.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from .events import RunHistory, parse_event

# An event type that the summary needs from anywhere in the file (step lines come from the tail).
_MARKERS = re.compile(rb'"(?:start|end|eval)"')
_WANTED = ("start", "end", "eval")


@dataclass(frozen=True)
class MetricsSummary:
    steps: int = 0  # optimizer steps logged (the highest step + 1)
    last_loss: float | None = None  # the last finite training loss
    best_val_loss: float | None = None
    status: str = "new"  # new | running | finished | stopped | error (RunHistory.status)
    parsed_lines: int = 0  # how many lines were parsed (to keep the claim above honest in a test)


def _parse(line: bytes):
    # Decoded like read_metrics decodes the file: invalid UTF-8 becomes U+FFFD, not a skipped line.
    return parse_event(line.decode("utf-8", errors="replace"))


def summarize_metrics(path: str | Path) -> MetricsSummary:
    """The summary of a metrics.jsonl (a missing file is a new run). Raises OSError if it cannot be read."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return MetricsSummary()
    end = data.rfind(b"\n") + 1  # complete lines only: after the last newline a line is being written
    history = RunHistory()
    parsed = 0
    line_end = -1
    for match in _MARKERS.finditer(data, 0, end):
        if match.start() < line_end:
            continue  # a second marker on a line already read
        lo = data.rfind(b"\n", 0, match.start()) + 1
        line_end = data.find(b"\n", match.end())  # found: data[end - 1] is a newline
        event = _parse(data[lo:line_end])
        parsed += 1
        if event is not None and event.get("type") in _WANTED:
            history.add(event)
    tail: list[dict] = []  # the last step lines, newest first
    hi = end - 1  # the newline that ends the line being looked at
    while hi > 0:
        lo = data.rfind(b"\n", 0, hi) + 1
        line, hi = data[lo:hi], lo - 1
        if not line.strip():
            continue
        event = _parse(line)
        parsed += 1
        # A step line without its step number is not counted (the trainer always writes it).
        if event is None or event.get("type") != "step" or not isinstance(event.get("step"), int):
            continue
        tail.append(event)
        loss = event.get("loss")
        if isinstance(loss, (int, float)) and not isinstance(loss, bool) and math.isfinite(loss):
            break
    for event in reversed(tail):
        history.add(event)
    return MetricsSummary(steps=history.steps_done, last_loss=history.last_loss,
                          best_val_loss=history.best_val_loss, status=history.status, parsed_lines=parsed)
