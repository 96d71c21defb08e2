"""Event transport to the UI: the thread-safe buffer and the metrics.jsonl follower (attach)."""
from __future__ import annotations

import json
import subprocess
import sys
import threading

from workbench.tui.follow import EventBuffer, MetricsFollower


def test_buffer_collects_from_threads_and_drains_once() -> None:
    buffer = EventBuffer()
    threads = [threading.Thread(target=lambda k=k: [buffer.push({"k": k, "i": i}) for i in range(500)])
               for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    events = buffer.drain()
    assert len(events) == 2000 and buffer.drain() == []
    assert [e["i"] for e in events if e["k"] == 2] == list(range(500))  # per-thread order kept


def test_follower_reads_only_new_complete_lines(tmp_path) -> None:
    follower = MetricsFollower(tmp_path)  # a run folder whose metrics.jsonl does not exist yet
    assert follower.poll() == []
    path = tmp_path / "metrics.jsonl"
    with path.open("w") as f:
        f.write(json.dumps({"type": "step", "step": 0}) + "\n" + '{"type": "step", "st')
    assert [e["step"] for e in follower.poll()] == [0]  # the half-written line waits
    with path.open("a") as f:
        f.write('ep": 1}\n' + "not json\n" + "[1, 2]\n" + json.dumps({"type": "step", "step": 2}) + "\n")
    assert [e["step"] for e in follower.poll()] == [1, 2]
    assert follower.corrupt == 2 and follower.poll() == []


def test_importing_llm_core_does_not_import_textual() -> None:
    code = "import sys, llm_core, llm_core.training, llm_core.engine, llm_core.dpo; " \
           "print(sorted(m for m in ('textual', 'rich', 'typer') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
