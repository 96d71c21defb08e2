"""The runs list's summary of a metrics.jsonl (llm_core.training.summary) against the full fold of every
line (RunHistory over read_metrics): the same numbers, from a handful of parsed lines."""
from __future__ import annotations

import json
import math

import pytest

from llm_core.training import read_metrics
from llm_core.training.events import RunHistory
from llm_core.training.summary import summarize_metrics
from tui_helpers import trained_run


def full_fold(path):
    h = RunHistory.from_events(read_metrics(path))
    return h.steps_done, h.last_loss, h.best_val_loss, h.status


def summary(path):
    s = summarize_metrics(path)
    return s.steps, s.last_loss, s.best_val_loss, s.status


def write(path, lines: list[str | dict], tail: str = "") -> None:
    path.write_bytes(b"".join((json.dumps(x) if isinstance(x, dict) else x).encode("utf-8", "surrogateescape")
                             + b"\n" for x in lines) + tail.encode())


def step(i, loss=1.0, **extra):
    return {"type": "step", "step": i, "loss": loss, "lr": 1e-3, "grad_norm": 1.0, **extra}


CASES = {
    "finished": [{"type": "start", "total_steps": 3}, step(0, 3.0), {"type": "eval", "step": 0, "val_loss": 2.5},
                 step(1, 2.0), {"type": "eval", "step": 1, "val_loss": 2.7}, step(2, 1.5),
                 {"type": "end", "reason": "finished", "step": 3}],
    # the last losses are not finite (written as null); an eval without a val loss; a foreign event
    "nan tail, running": [{"type": "start"}, step(0, 4.0), {"type": "eval", "step": 0, "val_loss": None},
                          step(1, 3.0), {"type": "mystery", "end": "eval"}, step(2, None), step(3, None)],
    # stopped, then resumed: the start after the end makes it running again; quoted words inside strings
    "resumed": [{"type": "start"}, step(0, 2.0, note='"end" "eval"'), {"type": "end", "reason": "stopped"},
                {"type": "eval", "step": 0, "val_loss": 1.9, "sample": 'say "end"'}, {"type": "start"},
                step(1, 1.0)],
    "crashed": [{"type": "start"}, step(0, 2.0), {"type": "end", "reason": "error", "message": "boom"}],
    "corrupt lines": [{"type": "start"}, step(0, 2.0), '{"type": "eval", "val_lo', "[1, 2]",
                      {"type": "eval", "step": 0, "val_loss": 1.25}, step(1, 1.5), "not json at all"],
    "invalid utf-8": [{"type": "start"}, step(0, 2.0), '{"type": "eval", "step": 0, "val_loss": 0.5, '
                      '"sample": "\udcff"}', step(1, 0.75)],
    "all losses nan": [{"type": "start"}, step(0, None), step(1, None)],
    "new": [],
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_summary_is_the_full_fold(tmp_path, name) -> None:
    path = tmp_path / "metrics.jsonl"
    write(path, CASES[name], tail='{"type": "end", "reason": "finished"')  # a line being written: ignored
    assert summary(path) == full_fold(path)


def test_summary_of_a_trained_run_and_of_a_missing_file(tmp_path) -> None:
    run = trained_run(tmp_path, "real", eval_every=2)
    assert summary(run / "metrics.jsonl") == full_fold(run) and full_fold(run)[3] == "finished"
    assert summary(tmp_path / "none.jsonl") == (0, None, None, "new") == full_fold(tmp_path / "none.jsonl")


def test_a_long_run_is_summarized_from_a_few_lines(tmp_path) -> None:
    path = tmp_path / "metrics.jsonl"
    lines: list[str | dict] = [{"type": "start", "total_steps": 20_000}]
    for i in range(20_000):
        lines.append(step(i, 5.0 / (1 + i) + (i % 7) / 100, tokens=64 * i))
        if i % 100 == 99:
            lines.append({"type": "eval", "step": i, "val_loss": 1.0 + ((i * 37) % 101) / 100})
    lines += [step(20_000, float("nan")), {"type": "checkpoint", "step": 20_001}]
    write(path, lines)
    s = summarize_metrics(path)
    assert (s.steps, s.last_loss, s.best_val_loss, s.status) == full_fold(path)
    assert s.steps == 20_001 and math.isfinite(s.last_loss)
    # the start, the 200 evals, and the last 4 lines back to the last finite loss (checkpoint, NaN step,
    # the last eval again, the step before it)
    assert s.parsed_lines == 1 + 200 + 4 < len(lines) / 50
