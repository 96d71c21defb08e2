"""Training throughput with the TUI attached vs the headless Trainer, same run, measured in one process.

The run: the default experiment as `workbench train` runs it (tiny preset, batch 16 x 256 tokens, both
cores), cut to `--steps` optimizer steps. Headless: `Trainer.run()`.
TUI: `make_app(...).run_test()` (a headless Textual app), the run started with the `s` key, the dashboard
visible with its live plots, until the run ends. Both report tokens/s from the trainer's own step events
(the median of the second half, so start-up is excluded); the rounds alternate to spread machine noise.
Target: TUI / headless >= 0.9. It also prints the share of one core the UI thread used while training.

Second measurement, the hot path of that UI thread: redrawing one plot (1000-step loss curve, 58 x 18
cells) as MetricPlot does it (plotext's cell matrix straight to Strips) vs textual-plotext's own render()
(plotext's ANSI string, parsed by Rich, cut into lines), same spec, same widget.

Third: keypress latency while a run trains (issue target: answered within 100 ms). `m` (smoothing, which
redraws all four plots) is pressed every half second; latency is from the key event being sent to the
end of its action (the screen repaints at the next frame). Baseline: the same key with no run training.

    .venv/bin/python benchmarks/tui_overhead.py [--steps 120] [--rounds 2] [--renders 200] [--presses 20]
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llm_core.training import Trainer, TrainConfig  # noqa: E402
from textual.app import App  # noqa: E402
from textual_plotext import PlotextPlot  # noqa: E402
from workbench.plotting import RunSeries, loss_spec  # noqa: E402
from workbench.tui.app import make_app  # noqa: E402
from workbench.tui.widgets.plot import MetricPlot  # noqa: E402


def config(out: Path, steps: int, name: str) -> TrainConfig:
    return TrainConfig(max_steps=steps, eval_every=50, checkpoint_every=10_000, out=str(out), name=name)


def tokens_per_s(events: list[dict]) -> float:
    rates = [e["tokens_per_s"] for e in events if e.get("type") == "step" and e.get("tokens_per_s")]
    return statistics.median(rates[len(rates) // 2:])


def headless(out: Path, steps: int, name: str) -> float:
    trainer = Trainer(config(out, steps, name))
    trainer.run()
    return tokens_per_s(trainer.history)


async def with_tui(out: Path, steps: int, name: str) -> tuple[float, int, float]:
    """tokens/s, dashboard plot updates, and the UI thread's CPU time / wall time while training."""
    app = make_app(out, config(out, steps, name))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("s")
        wall, cpu = time.perf_counter(), time.thread_time()  # this thread runs the app's event loop
        # Wait off the event loop (Pilot.pause would post a message to every widget each time it polls).
        await asyncio.to_thread(app.session.wait_until_done)
        ui_share = (time.thread_time() - cpu) / (time.perf_counter() - wall)
        await app.workers.wait_for_complete()
        draws = app.query_one("#dash").plot_updates
        return tokens_per_s(app.session.trainer.history), draws, ui_share


async def plot_render_ms(renders: int) -> tuple[float, float]:
    """Milliseconds per redraw of one live plot: MetricPlot's strips vs textual-plotext's render()."""
    run = RunSeries.from_events({"type": "step", "step": i, "loss": 5.0 / (1 + i / 50) + 0.1 * (i % 7),
                                 "tokens": 4096 * (i + 1)} for i in range(1000))

    class One(App):
        def compose(self):
            yield MetricPlot(id="plot")

    app = One()
    async with app.run_test(size=(58, 18)) as pilot:
        await pilot.pause()
        plot = app.query_one(MetricPlot)
        width, height = plot.content_region.size
        options = app.console.options.update_dimensions(width, height)
        ours = baseline = 0.0
        for i in range(renders):  # alternate the two so machine noise hits both alike
            plot.set_spec(loss_spec(run, smoothing=0.9 if i % 2 else 0.0))  # a new spec: a real redraw
            t = time.perf_counter()
            strips = plot._build_strips(width, height)
            ours += time.perf_counter() - t
            t = time.perf_counter()
            lines = app.console.render_lines(PlotextPlot.render(plot), options)
            baseline += time.perf_counter() - t
            if len(strips) != len(lines):
                raise RuntimeError(f"the two renders differ: {len(strips)} vs {len(lines)} lines")
    return 1000 * ours / renders, 1000 * baseline / renders


async def keypress_latency_ms(out: Path, steps: int, presses: int, train: bool) -> list[float]:
    """Milliseconds from sending `m` to the end of its action, `presses` times (while training if `train`)."""
    app = make_app(out, config(out, steps, f"latency-{train}"))
    async with app.run_test(size=(120, 40)) as pilot:
        if train:
            await pilot.press("s")
            session = app.session
            await asyncio.to_thread(lambda: session._ready.wait() and session.trainer.wait_for_state("running"))
            await asyncio.sleep(2.0)  # a few steps in, past start-up
        else:
            await pilot.press("2")
        done: list[float] = []
        toggle = app.action_smoothing

        def timed_toggle() -> None:  # the app looks actions up on the instance: this wraps the real one
            toggle()
            done.append(time.perf_counter())

        app.action_smoothing = timed_toggle  # type: ignore[method-assign]
        latencies = []
        for _ in range(presses):
            await asyncio.sleep(0.5)
            sent = time.perf_counter()
            await pilot.press("m")
            while len(done) <= len(latencies):
                await asyncio.sleep(0.001)
            latencies.append(1000 * (done[-1] - sent))
        if train:
            app.session.stop()
            await asyncio.to_thread(app.session.wait_until_done)
        await app.workers.wait_for_complete()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--renders", type=int, default=200)
    parser.add_argument("--presses", type=int, default=20)
    args = parser.parse_args()
    ours_ms, textual_plotext_ms = asyncio.run(plot_render_ms(args.renders))
    print(f"one plot redraw: MetricPlot {ours_ms:.1f} ms vs textual-plotext render() {textual_plotext_ms:.1f} ms: "
          f"{textual_plotext_ms / ours_ms:.2f}x faster")
    with tempfile.TemporaryDirectory() as tmp:
        idle = asyncio.run(keypress_latency_ms(Path(tmp), 10_000, args.presses, train=False))
        busy = asyncio.run(keypress_latency_ms(Path(tmp), 10_000, args.presses, train=True))
    print(f"keypress latency (m: redraw four plots), median / max: idle {statistics.median(idle):.0f} / "
          f"{max(idle):.0f} ms, while training {statistics.median(busy):.0f} / {max(busy):.0f} ms "
          f"(target: within 100 ms while training: {'met' if max(busy) <= 100 else 'NOT met'})")
    base, tui, updates = [], [], 0
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        for r in range(args.rounds):
            base.append(headless(out, args.steps, f"headless-{r}"))
            rate, draws, ui_share = asyncio.run(with_tui(out, args.steps, f"tui-{r}"))
            tui.append(rate)
            updates += draws
            print(f"round {r}: headless {base[-1]:,.0f} tokens/s, TUI attached {tui[-1]:,.0f} tokens/s "
                  f"({draws} dashboard plot updates; the UI thread used {ui_share:.1%} of one core)")
    ratio = statistics.median(tui) / statistics.median(base)
    print(f"TUI attached / headless: {ratio:.3f} (target >= 0.9: {'met' if ratio >= 0.9 else 'NOT met'})")


if __name__ == "__main__":
    main()
