"""Training throughput with the TUI attached vs the headless Trainer, same run, measured in one process.

The run: the default experiment as `workbench train` runs it (tiny preset, batch 16 x 256 tokens, both
cores), cut to `--steps` optimizer steps. Headless: `Trainer.run()`.
TUI: `make_app(...).run_test()` (a headless Textual app), the run started with the `s` key, the dashboard
visible with its live plots, until the run ends. Both report tokens/s from the trainer's own step events
(the median of the second half, so start-up is excluded); the rounds alternate to spread machine noise.
Target: TUI / headless >= 0.9.

    .venv/bin/python benchmarks/tui_overhead.py [--steps 120] [--rounds 2]
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llm_core.training import Trainer, TrainConfig  # noqa: E402
from workbench.tui.app import make_app  # noqa: E402


def config(out: Path, steps: int, name: str) -> TrainConfig:
    return TrainConfig(max_steps=steps, eval_every=50, checkpoint_every=10_000, out=str(out), name=name)


def tokens_per_s(events: list[dict]) -> float:
    rates = [e["tokens_per_s"] for e in events if e.get("type") == "step" and e.get("tokens_per_s")]
    return statistics.median(rates[len(rates) // 2:])


def headless(out: Path, steps: int, name: str) -> float:
    trainer = Trainer(config(out, steps, name))
    trainer.run()
    return tokens_per_s(trainer.history)


async def with_tui(out: Path, steps: int, name: str) -> tuple[float, int]:
    app = make_app(out, config(out, steps, name))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("s")
        # Wait off the event loop (Pilot.pause would post a message to every widget each time it polls).
        await asyncio.to_thread(app.session.wait_until_done)
        await app.workers.wait_for_complete()
        draws = app.query_one("#dash").plot_updates
        return tokens_per_s(app.session.trainer.history), draws


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    base, tui, updates = [], [], 0
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        for r in range(args.rounds):
            base.append(headless(out, args.steps, f"headless-{r}"))
            rate, draws = asyncio.run(with_tui(out, args.steps, f"tui-{r}"))
            tui.append(rate)
            updates += draws
            print(f"round {r}: headless {base[-1]:,.0f} tokens/s, TUI attached {tui[-1]:,.0f} tokens/s "
                  f"({draws} dashboard plot updates)")
    ratio = statistics.median(tui) / statistics.median(base)
    print(f"TUI attached / headless: {ratio:.3f} (target >= 0.9: {'met' if ratio >= 0.9 else 'NOT met'})")


if __name__ == "__main__":
    main()
