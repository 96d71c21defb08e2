"""`workbench distill`: a small student learns from a teacher, by its logits or by its verified traces.

    workbench distill -c runs/pretrain [--student tiny-student | --student CKPT] [--mode logits|traces]
                      [--out DIR] [--set key=value ...]

logits: a Trainer run of stage "distill" (the teacher runs frozen in every step; same run folder, checkpoints,
metrics.jsonl and resume as `workbench train`; continue it with `workbench train --resume RUN`). Knobs:
`kd_temperature`, `kd_alpha`, `kd_reverse`, `data` (text: all tokens; instruction JSON: response tokens).
traces: the teacher first writes `trace_samples` worked solutions per problem of the instruction file, the
verified ones go to RUN/traces.json (stats in RUN/traces_stats.json), then the student is SFT'd on them.
Settings start from the distill recipe (`llm_core.training.stages.DISTILL_RECIPE`), then `--set`.
The teacher is `--checkpoint/-c`, the option every command names its checkpoint with (`--teacher` still
works, unlisted).
"""
from __future__ import annotations

from typing import Any, Optional

import typer
from rich.console import Console

from llm_core.config import parse_overrides
from llm_core.distill import STATS_FILE
from llm_core.distill.recipe import distill_config
from llm_core.errors import WorkbenchError
from llm_core.io import read_json_object
from llm_core.training import TrainConfig, Trainer, build_trainer

from .options import DistillMode, checkpoint_option, renamed, set_option
from .train import _print_estimates, run_to_end


def build_distill_config(teacher: str, student: str, mode: str, out: Optional[str], sets: list[str]) -> TrainConfig:
    values: dict[str, Any] = parse_overrides(TrainConfig, sets)
    if values.pop("stage", "distill") != "distill":
        raise WorkbenchError("stage: workbench distill runs stage 'distill'")
    for key in ("teacher", "distill_mode", "init_from"):
        if key in values:
            raise WorkbenchError(f"{key}: set it with --checkpoint / --mode / --student, not --set")
    if out:
        values["out"] = out
    return distill_config(teacher, student, mode, **values)


def print_distill_metrics(console: Console, trainer: Trainer, lines: int = 20) -> None:
    every = max(1, trainer.config.max_steps // max(lines, 1))
    last = trainer.config.max_steps - 1

    def listen(event: dict[str, Any]) -> None:
        if event["type"] == "step" and "ce_loss" in event and (event["step"] % every == 0 or event["step"] == last):
            console.print(f"step {event['step']}: kd_loss {event['kd_loss']:.4f} ce_loss {event['ce_loss']:.4f}",
                          markup=False, highlight=False)

    trainer.subscribe(listen)


def register(app: typer.Typer) -> None:
    @app.command("distill", context_settings=renamed({"teacher": "checkpoint"}))
    def distill(
        teacher: str = checkpoint_option("The teacher checkpoint (run folder or step folder)."),
        student: str = typer.Option("tiny-student", "--student", help="A model preset (fresh student, the "
                                                                       "teacher's tokenizer) or a checkpoint."),
        mode: DistillMode = typer.Option("logits", "--mode", help="logits (match the teacher's distributions) or "
                                                                  "traces (SFT on its verified worked solutions)."),
        out: Optional[str] = typer.Option(None, "--out", help="Folder holding the run folders (default runs)."),
        sets: list[str] = set_option("kd_alpha=0.9"),
        estimate_steps: int = typer.Option(1, "--estimate-steps", help="Steps timed for the time estimate (0 = skip)."),
    ) -> None:
        """Distil a teacher into a small student, by logits (Hinton et al.) or by verified traces (R1-style)."""
        config = build_distill_config(teacher, student, mode, out, sets)
        console = Console()
        if mode == "traces":
            console.print(f"traces: the teacher writes {config.trace_samples} solutions per problem "
                          f"(temperature {config.trace_temperature:g}); only verified ones are kept", markup=False)
            trainer = build_trainer(config)  # the teacher writes and verifies its traces first
            stats = read_json_object(trainer.run_dir / STATS_FILE, WorkbenchError)
            console.print(f"{stats['kept']} traces kept of {stats['sampled']} sampled (acceptance "
                          f"{stats['acceptance_rate']:.1%}); {stats['problems_with_trace']}/{stats['problems']} "
                          f"problems have one; {stats['seconds']:.0f} s, {stats['tokens_per_s']:.0f} tokens/s",
                          markup=False)
        else:
            trainer = build_trainer(config)
            c = trainer.config
            console.print(f"logits: T={c.kd_temperature:g}, alpha={c.kd_alpha:g}, "
                          f"{'reverse' if c.kd_reverse else 'forward'} KL; student "
                          f"{trainer.model.num_parameters():,} parameters, teacher "
                          f"{trainer.objective.teacher.num_parameters():,}", markup=False)
        _print_estimates(console, trainer, trainer.estimate(measure_steps=max(estimate_steps, 0)))
        print_distill_metrics(console, trainer)
        run_to_end(console, trainer)
