"""What the experiment trackers cost per step: the default experiment trained briefly with
`loggers=csv,tensorboard,wandb` (those whose optional package is installed; the others are named and
skipped), the time spent inside each tracker measured call by call.

    python benchmarks/tracker_overhead.py                  # 100 steps, eval every 50, checkpoint every 50
    python benchmarks/tracker_overhead.py --steps 300 --loggers csv,tensorboard

Each tracker of the run's `LoggerSet` is wrapped in a timer (open, log, flush, close), so the numbers are
the trackers' own cost, not the noise between two training runs on shared cores. The run is written to a
temporary folder; W&B runs offline unless WANDB_MODE says otherwise.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llm_core.errors import ConfigError  # noqa: E402
from llm_core.training import Trainer, stage_config  # noqa: E402
from llm_core.training.loggers.registry import LOGGERS  # noqa: E402


class Timed:
    """A tracker whose calls are timed (seconds per method, calls per method)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def _timed(self, method: str, *args: Any) -> None:
        started = time.perf_counter()
        getattr(self.inner, method)(*args)
        self.seconds[method] += time.perf_counter() - started
        self.calls[method] += 1

    def open(self, run: Any) -> None:
        self._timed("open", run)

    def log(self, kind: str, step: int, values: dict) -> None:
        self._timed("log", kind, step, values)

    def flush(self) -> None:
        self._timed("flush")

    def close(self, failed: bool = False) -> None:
        self._timed("close", failed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--loggers", default=None,
                        help="comma-separated trackers (default: csv,tensorboard,wandb, those installed)")
    args = parser.parse_args()
    loggers = args.loggers
    if loggers is None:  # the default: every tracker whose optional package is here, the rest named
        loggers = []
        for name in ("csv", "tensorboard", "wandb"):
            try:
                LOGGERS[name].require()
                loggers.append(name)
            except ConfigError as exc:
                print(f"skipped: {exc}")
        loggers = ",".join(loggers)
    with tempfile.TemporaryDirectory() as out:
        config = stage_config("pretrain").with_overrides(
            [f"loggers={loggers}", f"max_steps={args.steps}", f"eval_every={args.steps // 2}",
             f"checkpoint_every={args.steps // 2}", f"out={out}", "name=bench"])
        trainer = Trainer(config)
        timed = [Timed(x) for x in trainer._loggers.loggers]
        trainer._loggers.loggers = timed
        started = time.perf_counter()
        trainer.run()
        wall = time.perf_counter() - started
    print(f"{args.steps} steps of the default experiment: {wall:.1f} s wall, {trainer.elapsed:.1f} s in steps "
          f"({trainer.elapsed / args.steps * 1000:.0f} ms/step)")
    print(f"{'tracker':12} {'log ms/call':>12} {'% of step':>10} {'open s':>8} {'flush ms':>9} {'close s':>8}")
    for name, t in zip(config.loggers, timed):
        per_log = t.seconds["log"] / max(t.calls["log"], 1) * 1000
        per_flush = t.seconds["flush"] / max(t.calls["flush"], 1) * 1000
        share = t.seconds["log"] / trainer.elapsed * 100
        print(f"{name:12} {per_log:12.3f} {share:9.2f}% {t.seconds['open']:8.2f} {per_flush:9.2f} "
              f"{t.seconds['close']:8.2f}")


if __name__ == "__main__":
    from script_errors import run_script

    run_script(main)
