"""`workbench rl`: reinforcement learning with GRPO from a checkpoint (verifiable rewards).

    workbench rl -c runs/pretrain [--data arith] [--adapter lora|dora] [--out DIR] [--set key=value ...]

A Trainer run with stage "rl" (same run folder, checkpoints, metrics.jsonl and resume as `workbench
train`). Settings start from the RL recipe (`llm_core.training.stages.RL_RECIPE`), then `--set`. The main
knobs: `group_size` (G), `reward` (accuracy,format), `kl_beta`, `clip_eps`, `mu`, `advantage`
(std / none / rloo), `rl_prompt` (neutral: the bare problem, R1-Zero style; cot: with the cue; mixed:
the two in turn).
Besides the progress line it prints the reward, accuracy, KL and step-by-step share as it goes, and
each evaluation's held-out greedy accuracies. (`--from` for `--checkpoint` and `--lora` / `--dora` for
`--adapter` still work, unlisted.)
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

from llm_core.config import parse_overrides
from llm_core.errors import WorkbenchError
from llm_core.training import TrainConfig, Trainer, stage_config

from .options import AdapterKind, adapter_option, checkpoint_option, hidden_flag, pick_adapter, renamed, set_option
from .train import _print_estimates, print_stage_metrics, run_to_end


def build_rl_config(init_from: str, data: str, adapter: str, out: Optional[str], sets: list[str]) -> TrainConfig:
    values: dict[str, Any] = parse_overrides(TrainConfig, sets)
    if values.pop("stage", "rl") != "rl":
        raise WorkbenchError("stage: workbench rl runs stage 'rl'")
    values.pop("init_from", None)
    # The flags win over --set, except at their defaults: --set adapter=lora / data=F work too.
    if data != "arith" or "data" not in values:
        values["data"] = data
    if adapter != "none" or "adapter" not in values:
        values["adapter"] = adapter
    if out:
        values["out"] = out
    return stage_config("rl", init_from=init_from, **values)


def rl_line(event: dict[str, Any]) -> str:
    return (f"step {event['step']}: reward {event['reward_mean']:.3f} (std {event['reward_std']:.3f}) "
            f"accuracy {event['accuracy']:.1%} step-by-step {event['step_by_step_share']:.0%} "
            f"kl {event['kl']:.4f} length {event['completion_length']:.0f} "
            f"no-signal groups {event['zero_std_fraction']:.0%} clip {event['clip_fraction']:.1%}")


def print_rl_metrics(console: Console, trainer: Trainer, lines: int = 20) -> None:
    """Print about `lines` RL metric lines over the run, and every eval's held-out greedy accuracies."""
    print_stage_metrics(console, trainer, "reward_mean", rl_line, "eval_neutral_accuracy", lambda e: (
        f"eval @ step {e['step']}: greedy accuracy neutral {e['eval_neutral_accuracy']:.1%} "
        f"(step by step {e['eval_step_by_step_share']:.0%}), CoT {e['eval_cot_accuracy']:.1%}"), lines)


def register(app: typer.Typer) -> None:
    @app.command("rl", context_settings=renamed({"from": "checkpoint"}))
    def rl(
        init_from: str = checkpoint_option("Checkpoint to start from (run folder or step folder)."),
        data: str = typer.Option("arith", "--data", help="Prompts with answers: an Alpaca JSON/JSONL file (answer "
                                                          "read from 'answer' or from the output's answer line), "
                                                          "or 'arith'."),
        adapter: AdapterKind = adapter_option("the KL reference is then the base weights"),
        lora: bool = hidden_flag("--lora"),
        dora: bool = hidden_flag("--dora"),
        out: Optional[str] = typer.Option(None, "--out", help="Folder holding the run folders (default runs)."),
        sets: list[str] = set_option("group_size=8"),
        estimate_steps: int = typer.Option(1, "--estimate-steps", help="Steps timed for the time estimate (0 = skip)."),
    ) -> None:
        """Reinforcement learning with GRPO: G sampled answers per prompt, rewarded by rules (accuracy, format)."""
        trainer = Trainer(build_rl_config(init_from, data, pick_adapter(adapter, lora, dora), out, sets))
        console = Console(quiet=not trainer.ctx.is_main)
        c = trainer.config
        console.print(f"GRPO: {c.batch_size} prompts x G={c.group_size} completions a step, reward {c.reward}, "
                      f"advantage {c.advantage}, kl_beta {c.kl_beta:g}, clip {c.clip_eps:g}, mu {c.mu}, "
                      f"prompts {c.rl_prompt}")
        _print_estimates(console, trainer, trainer.estimate(measure_steps=max(estimate_steps, 0)))
        print_rl_metrics(console, trainer)
        run_to_end(console, trainer)
