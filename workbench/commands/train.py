"""`workbench train` (headless training with a live progress line) and `workbench runs` (the run folders).

train: a TrainConfig from the defaults (the embedded default experiment), an optional JSON or YAML `--config`, and
`--set key=value` overrides; or `--resume RUN` to continue a run from its latest valid checkpoint (with
`--set max_steps=N` to extend it), or `--resume RUN/checkpoints/step-N` to continue from an older one. Memory
and time estimates are printed before the first step.

Ctrl-C, SIGTERM (schedulers, `docker stop`) and SIGHUP (a closed ssh session) all ask the trainer to stop
after the current step, which writes a checkpoint and an end event naming the signal; the command then
exits 128 + the signal's number (130, 143, 129), not 0 like a finished run. The handlers are installed
here, in the CLI, for the time the run trains: `llm_core` itself never touches signal handling.
"""
from __future__ import annotations

import os
import queue
import signal
import threading
from pathlib import Path
from typing import Any, Callable, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from llm_core.config import parse_overrides
from llm_core.errors import ConfigError, WorkbenchError
from llm_core.training import TrainConfig, Trainer, build_trainer, list_runs, stage_config
from llm_core.training.distributed import shutdown
from llm_core.training.estimate import format_bytes
from llm_core.training.loggers import LOGGERS

from .options import config_option, set_option


STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


def _build_trainer(config: Optional[Path], sets: list[str], out: Optional[str], resume: Optional[Path],
                   force: bool = False) -> Trainer:
    if resume is not None:
        overrides = parse_overrides(TrainConfig, sets)
        if out:
            overrides["out"] = out
        return Trainer.resume(resume, force=force, **overrides)
    if config is not None:
        base = TrainConfig.from_file(config)
    else:  # the stage's recipe (finetuning stages start gentler than pretraining), then the overrides
        wanted = parse_overrides(TrainConfig, sets)
        base = stage_config(wanted.get("stage", "pretrain"), adapter=wanted.get("adapter", "none"))
    return build_trainer(base.with_overrides(sets, **({"out": out} if out else {})), force=force)


def print_notices(console: Console, trainer: Trainer) -> None:
    """The setup's one-line warnings (a corrupt checkpoint skipped, newer ones moved aside)."""
    for notice in trainer.notices:
        console.print(f"warning: {notice}", style="yellow", markup=False, highlight=False)


def _print_estimates(console: Console, trainer: Trainer, estimate: dict[str, Any]) -> None:
    cfg = trainer.config
    model = trainer.model
    console.print(
        f"[bold]{cfg.stage}[/] run [cyan]{trainer.run_dir}[/]: model {cfg.model} "
        f"({model.num_parameters() / 1e6:.2f}M parameters, {model.num_parameters(trainable_only=True) / 1e6:.2f}M "
        f"trainable), {len(trainer.train_data)} training / "
        f"{len(trainer.val_data) if trainer.val_data is not None else 0} validation examples, device {trainer.device}"
    )
    mem = estimate["memory_bytes"]
    console.print(
        "memory estimate: "
        + ", ".join(f"{k} {format_bytes(v)}" for k, v in mem.items() if k != "total")
        + f" = [bold]{format_bytes(mem['total'])}[/]"
    )
    if cfg.loggers:
        console.print("trackers: " + ", ".join(f"{n} -> {LOGGERS[n].writes}" for n in cfg.loggers)
                      + f" (in {trainer.run_dir})", markup=False, highlight=False)
    if "seconds_per_step" in estimate:
        minutes = estimate["remaining_seconds"] / 60
        console.print(
            f"time estimate: {estimate['seconds_per_step']:.3f} s/step, {estimate['tokens_per_s']:,.0f} tokens/s "
            f"-> [bold]{minutes:.1f} min[/] for steps {trainer.step}..{cfg.max_steps - 1}"
        )


class _StopOnSignals:
    """While active, SIGINT / SIGTERM / SIGHUP ask `trainer` to stop between steps (the first signal is
    recorded for the end event and the exit status); the previous handlers come back on exit. Only the main
    thread may install handlers: elsewhere (a test calling from a thread) this does nothing."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is None:
            self.received = signum
        self.trainer.stop(cause=signal.Signals(signum).name)

    def __enter__(self) -> "_StopOnSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _follow(console: Console, trainer: Trainer) -> dict[str, Any]:
    """Run the trainer on this thread and show its events from a display thread; a stop signal requests a
    clean stop.

    Training stays on the calling (main) thread because torch's CPU ops run their parallel regions on
    OpenMP, whose worker threads belong to the thread that opens a region. The main thread has such a team
    as soon as it has run any torch op; a training loop on a second thread then gets a team of its own,
    libgomp counts more threads than cores, and its threads stop spin-waiting between regions: the default
    experiment trained 14-17% slower that way (28,000 vs 32,000-34,000 tokens/s, one process, 2 cores)."""
    events: queue.Queue = queue.Queue()
    trainer.subscribe(events.put)
    trained = threading.Event()
    columns = (
        TextColumn("[bold]step"), MofNCompleteColumn(), BarColumn(bar_width=24),
        TextColumn("loss {task.fields[loss]}  lr {task.fields[lr]}  |g| {task.fields[grad]}  "
                   "{task.fields[tps]} tok/s"),
        TextColumn("ETA"), TimeRemainingColumn(),
    )
    end: dict[str, Any] = {}
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("train", total=trainer.config.max_steps, completed=trainer.step,
                                 loss="-", lr="-", grad="-", tps="-")

        def show() -> None:
            announced = False
            while True:
                if trainer.stop_cause and not announced:
                    announced = True
                    _quietly(progress.console.print, f"[yellow]{trainer.stop_cause}: stopping after the current "
                                                     "step (a checkpoint will be written)...[/]")
                try:
                    event = events.get(timeout=0.2)
                except queue.Empty:
                    if trained.is_set():
                        break
                    continue
                if event["type"] == "end":
                    end.update(event)
                _quietly(_show, progress, task, event)

        display = threading.Thread(target=show, name="progress", daemon=True)
        display.start()
        try:
            trainer.run()
        finally:
            trained.set()  # the display drains what is queued, then returns
            display.join()
    return end


def _quietly(fn: Any, *args: Any) -> None:
    """Show something, unless the terminal is gone (SIGHUP: a closed ssh session): training goes on."""
    try:
        fn(*args)
    except OSError:
        pass


def _show(progress: Progress, task: Any, event: dict[str, Any]) -> None:
    kind = event["type"]
    if kind == "step":
        loss, grad = event["loss"], event["grad_norm"]
        progress.update(
            task, completed=event["step"] + 1, loss=f"{loss:.4f}" if loss is not None else "nan",
            lr=f"{event['lr']:.2e}", grad=f"{grad:.2f}" if grad is not None else "nan",
            tps=f"{event['tokens_per_s']:,.0f}",
        )
    elif kind == "eval" and event.get("train_loss") is not None:  # (RL evaluates by accuracy: its own line)
        val = f"{event['val_loss']:.4f}" if event["val_loss"] is not None else "-"
        progress.console.print(
            f"eval @ step {event['step']}: train {event['train_loss']:.4f} val {val} "
            f"clipped {event['clip_fraction']:.0%} | sample: ...{event['sample'][-80:]!r}", markup=False,
        )
    elif kind == "alarm" and event["kind"] != "resume":  # resume notices were printed before the start
        progress.console.print(f"alarm ({event['kind']}): {event['message']}", style="red", markup=False)
    elif kind == "checkpoint":
        progress.console.print(f"checkpoint: {event['path']}", markup=False)


def print_stage_metrics(console: Console, trainer: Trainer, step_key: str, step_line: Callable[[dict], str],
                        eval_key: str, eval_line: Callable[[dict], str], lines: int = 20) -> None:
    """Print a stage's own metrics: about `lines` step lines over the run (those with `step_key`), and every
    eval event that has `eval_key`."""
    every = max(1, trainer.config.max_steps // max(lines, 1))
    last = trainer.config.max_steps - 1

    def listen(event: dict) -> None:
        if event["type"] == "step" and step_key in event and (event["step"] % every == 0 or event["step"] == last):
            console.print(step_line(event), markup=False, highlight=False)
        elif event["type"] == "eval" and eval_key in event:
            console.print(eval_line(event), markup=False, highlight=False)

    trainer.subscribe(listen)


def run_to_end(console: Console, trainer: Trainer) -> None:
    """Train with the progress display, shut the process group down, and report the end in one line.

    A run stopped by a signal exits 128 + its number after its checkpoint and end event are written."""
    signals = _StopOnSignals(trainer)
    try:
        with signals:
            end = _follow(console, trainer)
    finally:
        shutdown(trainer.ctx)
    if trainer.state == "failed":
        raise trainer.failure or WorkbenchError(trainer.error or end.get("message", "training failed"))
    best = f", best val loss {trainer.best_val_loss:.4f}" if trainer.best_val_loss is not None else ""
    _quietly(console.print, f"[green]{end.get('message', 'done')}[/]{best}; run folder: {trainer.run_dir}")
    if signals.received is not None and end.get("reason") == "stopped":
        raise typer.Exit(128 + signals.received)


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train(
        config: Optional[Path] = config_option(),
        sets: list[str] = set_option("max_steps=500"),
        out: Optional[str] = typer.Option(None, "--out", help="Folder holding the run folders (default runs)."),
        resume: Optional[Path] = typer.Option(None, "--resume", help="Continue this run folder from its latest checkpoint."),
        estimate_steps: int = typer.Option(2, "--estimate-steps", help="Steps timed for the time estimate (0 = skip)."),
        force: bool = typer.Option(False, "--force", help="Start even if the memory estimate exceeds this machine's."),
    ) -> None:
        """Train a model (pretraining, instruction finetuning or DPO) with a live progress display."""
        if config is not None and resume is not None:
            raise WorkbenchError("--config and --resume exclude each other (a resumed run uses its own config.json)")
        trainer = _build_trainer(config, sets, out, resume, force)
        console = Console(quiet=not trainer.ctx.is_main)
        print_notices(console, trainer)
        _print_estimates(console, trainer, trainer.estimate(measure_steps=max(estimate_steps, 0)))
        run_to_end(console, trainer)

    @app.command("runs")
    def runs(root: Path = typer.Option(Path("runs"), "--root", help="Folder holding the run folders.")) -> None:
        """List training runs with their status, losses and checkpoints."""
        if not root.is_dir():  # a mistyped --root is not "no runs yet"
            raise ConfigError(f"{root}: no such folder (--root names the folder holding the run folders)")
        infos = list_runs(root)
        console = Console()
        if not infos:
            console.print(f"no runs in {root}")
            return
        table = Table("name", "stage", "status", "steps", "last loss", "best val", "checkpoints")
        here = os.getpid()
        for r in infos:
            if r.broken:
                table.add_row(r.name, "", "[red]broken[/]", "", "", "", r.broken)
                continue
            steps = f"{r.steps}/{r.max_steps}" if r.max_steps else str(r.steps)
            table.add_row(
                r.name, str(r.config.get("stage", "")),
                f"running (PID {r.pid})" if r.pid and r.pid != here else r.status, steps,
                f"{r.last_loss:.4f}" if r.last_loss is not None else "-",
                f"{r.best_val_loss:.4f}" if r.best_val_loss is not None else "-",
                f"{len(r.checkpoints)} (latest {r.checkpoints[-1]})" if r.checkpoints else "0",
            )
        console.print(table)
