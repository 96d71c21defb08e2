"""Keys while a big run loads (issue 16): key-press-to-handled latency in the TUI while it reads a
100k-step run, before (the loads on the UI thread, as the app did them) and after (in workers), one process.

The run folder, in a temporary directory: `metrics.jsonl` written like the trainer writes it (a start event
with the config, `--steps` step lines with every field, an eval with its sample and per-layer gradient
norms every 50 steps, checkpoint events, an end event: about 24 MB for 100k steps), and `--checkpoints`
real checkpoints saved by `save_checkpoint` (a `--preset` model's safetensors and an AdamW state of full
size: 360 MB each for gpt2-mini).

The app runs headless (`run_test`). A thread presses a key every 20 ms the way a terminal does (through
the driver's `process_message`, like its input thread), bound to an action that records when it ran;
latency = ran - pressed, for the presses sent while a load is under way. The loads:
- runs list: reading the runs folder (`r`). Before: `list_runs` folding every metrics line, on the UI thread.
- plots: opening the run's dashboard until its four plots are drawn. Before: `RunSeries.from_run`, the
  planned LR, the four specs and their drawing on the UI thread (the old `show_run`).
- attach: following the run (its history read first). Before: the follower's first poll folded on the UI thread.
- checkpoints: the chat's checkpoint picker until every checkpoint's SHA-256 is checked. Before: every
  manifest verified while the picker was composed.
The baseline: the same presses for a second with nothing loading. Each load is measured `--rounds` times
before and after, alternated; the latencies are pooled (max and median over every press of the rounds).

    .venv/bin/python benchmarks/tui_responsiveness.py [--steps 100000] [--checkpoints 3] [--preset gpt2-mini]
        [--rounds 3]
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import random
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from textual import events  # noqa: E402
from textual.binding import Binding  # noqa: E402

import llm_core.training.runs as runs_module  # noqa: E402
import workbench.tui.widgets.dashboard as dashboard_module  # noqa: E402
import workbench.tui.widgets.plot as plot_module  # noqa: E402
from llm_core.model import GPT, GPTConfig  # noqa: E402
from llm_core.training import TrainConfig, list_runs, planned_schedule, read_metrics  # noqa: E402
from llm_core.training.checkpoint import list_checkpoints, read_manifest, save_checkpoint  # noqa: E402
from llm_core.training.config import MODEL_CONFIG_KEY  # noqa: E402
from llm_core.training.events import RunHistory  # noqa: E402
from llm_core.training.summary import MetricsSummary  # noqa: E402
from workbench.plotting import RunSeries  # noqa: E402
from workbench.tui.app import WorkbenchApp  # noqa: E402
from workbench.tui.follow import MetricsFollower  # noqa: E402
from workbench.tui.widgets.checkpoint_picker import CheckpointPicker  # noqa: E402
from workbench.tui.widgets.plot import MetricPlot  # noqa: E402
from workbench.tui.widgets.runs_list import RunsList  # noqa: E402

PRESS_EVERY = 0.02
TARGET_MS = 100


# --- the run folder -----------------------------------------------------------------------------------
def write_run(root: Path, steps: int, checkpoints: int, preset: str) -> Path:
    run = root / "big"
    run.mkdir(parents=True)
    config = TrainConfig(max_steps=steps, eval_every=50, checkpoint_every=max(steps // checkpoints, 1),
                         name="big", out=str(root)).to_dict()
    (run / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    lrs, rng = planned_schedule(TrainConfig.from_dict(config)), random.Random(0)
    layers = {"tok_emb": 0.0, "pos_emb": 0.0, **{f"blocks.{i}": 0.0 for i in range(4)}, "ln_f": 0.0}
    with open(run / "metrics.jsonl", "w") as f:
        f.write(json.dumps({"type": "start", "stage": "pretrain", "run_dir": str(run), "start_step": 0,
                            "total_steps": steps, "parameters": 1927296, "trainable_parameters": 1927296,
                            "world_size": 1, "device": "cpu", "train_examples": 9500, "val_examples": 500,
                            "config": config, "estimates": None}) + "\n")
        for s in range(steps):
            loss = 5.5 / (1 + s / 2000) + 0.3 + rng.random() * 0.1
            grad = 0.4 + rng.random() + (20.0 if rng.random() < 1e-4 else 0.0)
            f.write(json.dumps({"type": "step", "step": s, "epoch": s // 600, "lr": lrs[s], "loss": loss,
                                "grad_norm": grad, "clipped": grad > 1.0, "tokens": 4096 * (s + 1),
                                "tokens_per_s": 11000 + rng.random() * 900, "elapsed": 0.37 * (s + 1),
                                "lm_loss": loss}) + "\n")
            if s % 50 == 49:
                f.write(json.dumps({"type": "eval", "step": s, "train_loss": loss, "val_loss": loss + 0.05,
                                    "sample": "Ruby has 63 cards. She gives 18 away. The answer is 45.",
                                    "layer_grad_norms": {k: rng.random() for k in layers},
                                    "clip_fraction": 0.1}) + "\n")
        for step in range(1, checkpoints + 1):
            f.write(json.dumps({"type": "checkpoint", "step": step * steps // checkpoints,
                                "path": str(run / "checkpoints" / f"step-{step * steps // checkpoints:08d}")}) + "\n")
        f.write(json.dumps({"type": "end", "reason": "finished", "step": steps,
                            "message": f"finished at step {steps} of {steps}"}) + "\n")
    model = GPT(GPTConfig.preset(preset))
    optimizer = torch.optim.AdamW(model.parameters())
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()  # allocates both moments: the state file has its real size
    full = {**config, MODEL_CONFIG_KEY: asdict(model.config)}
    for step in range(1, checkpoints + 1):
        save_checkpoint(run, step * steps // checkpoints, model, {"optimizer": optimizer.state_dict()}, full)
    return run


# --- the old paths, on the UI thread --------------------------------------------------------------------
def full_fold_summary(path) -> MetricsSummary:
    """What read_run did before: every line of metrics.jsonl parsed and folded."""
    h = RunHistory.from_events(read_metrics(path))
    return MetricsSummary(h.steps_done, h.last_loss, h.best_val_loss, h.status)


@contextlib.contextmanager
def old_paths():
    """The app as it was: runs summarized by the full fold, plots built and drawn inline whatever their size."""
    saved = runs_module.summarize_metrics, dashboard_module.BACKGROUND_STEPS, plot_module.BACKGROUND_POINTS
    runs_module.summarize_metrics = full_fold_summary
    dashboard_module.BACKGROUND_STEPS = plot_module.BACKGROUND_POINTS = math.inf
    try:
        yield
    finally:
        runs_module.summarize_metrics, dashboard_module.BACKGROUND_STEPS, plot_module.BACKGROUND_POINTS = saved


# --- the app and the presses --------------------------------------------------------------------------
class ProbedApp(WorkbenchApp):
    CSS_PATH = Path(sys.modules[WorkbenchApp.__module__].__file__).parent / WorkbenchApp.CSS_PATH  # not ours
    BINDINGS = [*WorkbenchApp.BINDINGS, Binding("f12", "probe", show=False, priority=True)]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.handled: list[float] = []

    def action_probe(self) -> None:
        self.handled.append(time.perf_counter())


class Presser(threading.Thread):
    """Presses f12 every PRESS_EVERY seconds from its own thread, like a terminal driver's input thread."""

    def __init__(self, app: ProbedApp) -> None:
        super().__init__(daemon=True)
        self.app, self.sent, self.stop = app, [], threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.sent.append(time.perf_counter())
            self.app._driver.process_message(events.Key("f12", None))
            self.stop.wait(PRESS_EVERY)


async def measure(app: ProbedApp, trigger: Callable[[], None], done: Callable[[], bool]) -> tuple[float, list[float]]:
    """Seconds from `trigger` until `done()`, and the latencies (ms) of the presses sent meanwhile."""
    app.handled.clear()
    presser = Presser(app)
    presser.start()
    await asyncio.sleep(0.1)
    start = time.perf_counter()
    trigger()  # the old paths block right here, on the UI thread
    while not done():
        await asyncio.sleep(0.002)
    load = time.perf_counter() - start
    presser.stop.set()
    presser.join()
    while len(app.handled) < len(presser.sent):
        await asyncio.sleep(0.005)
    latencies = [1000 * (h - s) for s, h in zip(presser.sent, app.handled) if start <= s <= start + load]
    return load, latencies


def plots_drawn(app: ProbedApp, series_name: str) -> Callable[[], bool]:
    def done() -> bool:
        dash = app.query_one("#dash")
        return dash.run is not None and dash.run.name == series_name and all(
            p.up_to_date and p.points > 0 and p._strips is not None for p in dash.query(MetricPlot))
    return done


async def scenario(root: Path, run: Path, name: str, old: bool) -> tuple[float, list[float]]:
    app = ProbedApp(root, TrainConfig(out=str(root)))
    async with app.run_test(size=(120, 40)) as pilot:
        runs = app.query_one("#runs-list", RunsList)
        # Start-up done: the first reading of the runs (in the worker either way) and the app's gc.freeze().
        while not runs.runs or runs.reading or not gc.get_freeze_count():
            await pilot.pause(0.02)
        info = runs.runs[0]
        dash = app.query_one("#dash")

        async def show_dashboard() -> None:
            while True:  # (at start-up the run form's first focus can still bring its panel back)
                app.action_panel("dashboard")
                await pilot.pause(0.2)
                if app.panel == "dashboard" and dash.is_on_screen:
                    return
        if name == "idle":  # the baseline: presses with nothing loading, for a second
            until = time.perf_counter() + 1.0
            return await measure(app, lambda: None, lambda: time.perf_counter() >= until)
        if name == "runs list":
            if old:
                def trigger():
                    with old_paths():
                        runs._fill(list_runs(root))
                return await measure(app, trigger, lambda: True)
            return await measure(app, runs.reload, lambda: not runs.reading)
        if name == "plots":
            await show_dashboard()
            if old:
                def trigger():
                    with old_paths():
                        dash.show_run(RunSeries.from_run(run), info.status, run)
                return await measure(app, trigger, plots_drawn(app, "big"))
            return await measure(app, lambda: dash.open_run_dir(run, info.status), plots_drawn(app, "big"))
        if name == "attach":
            await show_dashboard()
            if old:
                def trigger():
                    with old_paths():
                        series = RunSeries("big")
                        app.follower = MetricsFollower(run)
                        for e in app.follower.poll():
                            series.add(e)
                        app.followed = series
                        app._show(series, "attached", run)
                return await measure(app, trigger, plots_drawn(app, "big"))
            return await measure(app, lambda: app.post_message(RunsList.Attach(info)), plots_drawn(app, "big"))
        if name == "checkpoints":
            checkpoints = list_checkpoints(run)
            if old:
                return await measure(app, lambda: [read_manifest(p) for p in checkpoints], lambda: True)
            pickers: list[CheckpointPicker] = []

            def open_picker() -> None:
                pickers.append(CheckpointPicker("big", checkpoints))
                app.push_screen(pickers[0])

            return await measure(app, open_picker, lambda: bool(pickers) and pickers[0].pending == 0
                                 and pickers[0].is_mounted)
    raise ValueError(name)


def describe(latencies: list[float]) -> str:
    if not latencies:
        return "no key pressed during the load"
    return f"keys max {max(latencies):.0f} / median {statistics.median(latencies):.0f} ms ({len(latencies)} presses)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--checkpoints", type=int, default=3)
    parser.add_argument("--preset", default="gpt2-mini")
    parser.add_argument("--rounds", type=int, default=3, help="each load measured this many times, before and after")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "runs"
        t = time.perf_counter()
        run = write_run(root, args.steps, args.checkpoints, args.preset)
        size = (run / "metrics.jsonl").stat().st_size / 1e6
        ckpt = sum(f.stat().st_size for f in (run / "checkpoints").rglob("*") if f.is_file()) / 1e6
        print(f"run folder: {args.steps:,} steps, metrics.jsonl {size:.1f} MB, {args.checkpoints} checkpoints of "
              f"{args.preset} ({ckpt:,.0f} MB in all), written in {time.perf_counter() - t:.1f} s")
        idle = asyncio.run(scenario(root, run, "idle", old=False))
        print(f"{'idle':12s} nothing loading: {describe(idle[1])}")
        worst = 0.0
        for name in ("runs list", "plots", "attach", "checkpoints"):
            results = {False: ([], []), True: ([], [])}
            for _ in range(args.rounds):  # alternated, so machine noise hits both alike
                for old in (True, False):
                    load, latencies = asyncio.run(scenario(root, run, name, old=old))
                    results[old][0].append(load)
                    results[old][1].extend(latencies)
            worst = max([worst, *results[False][1]])
            for old, label in ((True, "before"), (False, "after: ")):
                loads, latencies = results[old]
                print(f"{name if old else '':12s} {label} load {statistics.median(loads):.2f} s (median of "
                      f"{len(loads)}), {describe(latencies)}")
        print(f"worst key latency while loading, after: {worst:.0f} ms "
              f"(target {TARGET_MS} ms: {'met' if worst <= TARGET_MS else 'NOT met'})")


if __name__ == "__main__":
    main()
