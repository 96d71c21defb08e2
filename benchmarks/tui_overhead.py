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

Third: keypress latency while a run trains (issue target: answered within 100 ms). `m` (loss smoothing)
is pressed every half second; latency is from the key event being sent until its action ran, and until
the plots it changed are redrawn on screen. Baseline: the same key on a finished 1000-step run, nothing training.

    .venv/bin/python benchmarks/tui_overhead.py [--steps 80] [--rounds 4] [--renders 200] [--presses 20]
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llm_core.training import Trainer, TrainConfig  # noqa: E402
from textual import events  # noqa: E402
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
    """The headless Trainer, run on a thread of its own that ends with it. Not on the main thread: torch's
    OpenMP keeps one pool of threads per thread that ran a parallel op, and an idle pool of the main thread
    slowed training on the TUI's worker thread by 15% (2 cores: libgomp then has more threads than CPUs and
    its waiting threads sleep instead of spinning). The `workbench` TUI runs no torch op on its main thread."""
    history: list[list[dict]] = []

    def train() -> None:
        trainer = Trainer(config(out, steps, name))
        trainer.run()
        history.append(trainer.history)

    thread = threading.Thread(target=train, name="headless")
    thread.start()
    thread.join()
    if not history:
        raise RuntimeError(f"the headless run {name} failed (its traceback is above)")
    return tokens_per_s(history[0])


async def with_tui(out: Path, steps: int, name: str) -> tuple[float, int, float]:
    """tokens/s, dashboard plot updates, and the UI thread's CPU time / wall time while training."""
    app = make_app(out, config(out, steps, name))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()  # the app mounted
        await pilot.press("1", "ctrl+s")  # the run form, then start
        wall, cpu = time.perf_counter(), time.thread_time()  # this thread runs the app's event loop
        # Wait off the event loop (Pilot.pause would post a message to every widget each time it polls).
        await asyncio.to_thread(app.session.wait_until_done)
        ui_share = (time.thread_time() - cpu) / (time.perf_counter() - wall)
        await app.workers.wait_for_complete()
        draws = app.query_one("#dash").plot_updates
        return tokens_per_s(app.session.trainer.history), draws, ui_share


async def plot_render_ms(renders: int) -> tuple[float, float]:
    """Milliseconds per redraw of one live plot: MetricPlot's strips vs textual-plotext's render()."""
    run = synthetic_run(1000)

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


def synthetic_run(steps: int) -> RunSeries:
    return RunSeries.from_events({"type": "step", "step": i, "loss": 5.0 / (1 + i / 50) + 0.1 * (i % 7),
                                  "lr": 1e-3, "grad_norm": 1.0 + (i % 13) / 10, "tokens": 4096 * (i + 1)}
                                 for i in range(steps))


async def keypress_latency_ms(out: Path, steps: int, presses: int, train: bool) -> list[tuple[float, float]]:
    """Milliseconds from sending `m` until its action ran, and until the plots it changed are redrawn on
    screen, `presses` times, while a run trains (`train`) or with a finished 1000-step run shown."""
    app = make_app(out, config(out, steps, f"latency-{train}"))
    async with app.run_test(size=(120, 40)) as pilot:
        dash = app.query_one("#dash")
        if train:
            await pilot.pause()
            await pilot.press("1", "ctrl+s")  # the run form, then start
            session = app.session
            await asyncio.to_thread(lambda: session._ready.wait() and session.trainer.wait_for_state("running"))
            await asyncio.sleep(2.0)  # a few steps in, past start-up
        else:
            await pilot.press("2")
            dash.show_run(synthetic_run(1000))
        plots = list(dash.query(MetricPlot))
        toggled: list[float] = []
        toggle = dash.action_smoothing  # the dashboard owns the key (its binding, its action)

        def counted_toggle() -> None:  # Textual looks actions up on the instance: this wraps the real one
            toggle()
            toggled.append(time.perf_counter())

        dash.action_smoothing = counted_toggle  # type: ignore[method-assign]
        latencies = []
        for i in range(presses):
            await asyncio.sleep(0.5)
            drawn = [p.draws for p in plots]
            sent = time.perf_counter()
            # What a terminal keypress becomes (Pilot.press would add its own waits for idleness).
            app._driver.send_message(events.Key("m", "m"))
            while len(toggled) <= i:
                if time.perf_counter() - sent > 5.0:
                    raise RuntimeError(f"key m not handled within 5 s (focus on {app.focused!r})")
                await asyncio.sleep(0.001)
            changed = [p for p, d in zip(plots, drawn) if p.draws > d]
            while any(p._strips is None for p in changed):  # render_line rebuilds them on the next frame
                await asyncio.sleep(0.001)
            latencies.append((1000 * (toggled[i] - sent), 1000 * (time.perf_counter() - sent)))
        if train:
            app.session.stop()
            await asyncio.to_thread(app.session.wait_until_done)
        await app.workers.wait_for_complete()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--renders", type=int, default=200)
    parser.add_argument("--presses", type=int, default=20)
    args = parser.parse_args()
    ours_ms, textual_plotext_ms = asyncio.run(plot_render_ms(args.renders))
    print(f"one plot redraw: MetricPlot {ours_ms:.1f} ms vs textual-plotext render() {textual_plotext_ms:.1f} ms: "
          f"{textual_plotext_ms / ours_ms:.2f}x faster")
    with tempfile.TemporaryDirectory() as tmp:
        idle = asyncio.run(keypress_latency_ms(Path(tmp), 10_000, args.presses, train=False))
        busy = asyncio.run(keypress_latency_ms(Path(tmp), 10_000, args.presses, train=True))
    for label, i in (("handled (action ran)", 0), ("redrawn on screen", 1)):
        still, busy_ms = [x[i] for x in idle], [x[i] for x in busy]
        print(f"keypress m {label}, median / max: nothing training {statistics.median(still):.0f} / "
              f"{max(still):.0f} ms, while training {statistics.median(busy_ms):.0f} / {max(busy_ms):.0f} ms "
              f"(target within 100 ms while training: {'met' if max(busy_ms) <= 100 else 'NOT met'})")
    base, tui, updates = [], [], 0
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        for r in range(args.rounds):
            base.append(headless(out, args.steps, f"headless-{r}"))
            rate, draws, ui_share = asyncio.run(with_tui(out, args.steps, f"tui-{r}"))
            tui.append(rate)
            updates += draws
            print(f"round {r}: headless {base[-1]:,.0f} tokens/s, TUI attached {tui[-1]:,.0f} tokens/s "
                  f"({draws} plot updates; the UI thread used {ui_share:.1%} of one core)")
    # Each round pairs a headless run with the TUI run right after it, so slow drifts of the shared machine
    # cancel within a pair; the median pair ratio ignores one-off hiccups.
    pairs = [t / b for t, b in zip(tui, base)]
    ratio = statistics.median(pairs)
    print(f"TUI attached / headless: {ratio:.3f}, median of the rounds' ratios "
          f"({', '.join(f'{p:.2f}' for p in pairs)}) (target >= 0.9: {'met' if ratio >= 0.9 else 'NOT met'})")


if __name__ == "__main__":
    main()
