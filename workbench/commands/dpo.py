"""`workbench dpo`: preference tuning with Direct Preference Optimization from a checkpoint.

    workbench dpo -c runs/sft --data arith --beta 0.1 [--adapter lora|dora] [--out DIR] [--set key=value ...]

The run is a Trainer run with stage "dpo" (same run folder, checkpoints, metrics.jsonl and resume as
`workbench train`; continue it with `workbench train --resume RUN`). Settings start from the DPO recipe
(`llm_core.dpo.DPO_RECIPE`), then an optional `--config` file (JSON or YAML), then `--set`, then the explicit
flags. (`--from` for `--checkpoint` and `--lora` / `--dora` for `--adapter` still work, unlisted.)
Besides the training progress line, it prints the DPO metrics (reward margin / accuracy, policy
log-probs) and the collapse alarms.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

from llm_core.config import parse_overrides
from llm_core.dpo import dpo_config
from llm_core.errors import ConfigError, WorkbenchError
from llm_core.config_files import read_config_file
from llm_core.training import TrainConfig, Trainer

from .options import (AdapterKind, adapter_option, checkpoint_option, config_option, hidden_flag, pick_adapter,
                      renamed, set_option)
from .train import _print_estimates, print_stage_metrics, run_to_end


def _read_config_keys(path: Path) -> dict[str, Any]:
    """The keys a JSON or YAML config file sets (only those: the rest keep the DPO recipe's values)."""
    data = read_config_file(path, ConfigError, expected="a mapping of TrainConfig keys")
    data.pop("model_config", None)  # a run's config.json also records the model shape
    return data


def build_dpo_config(
    init_from: str, data: str, beta: Optional[float], adapter: str, out: Optional[str],
    config_file: Optional[Path], sets: list[str],
) -> TrainConfig:
    values: dict[str, Any] = {}
    if config_file is not None:
        values.update(_read_config_keys(config_file))
    values.update(parse_overrides(TrainConfig, sets))
    explicit: dict[str, Any] = {"data": data}
    if beta is not None:
        explicit["beta"] = beta
    if adapter != "none":
        explicit["adapter"] = adapter
    if out:
        explicit["out"] = out
    values.update(explicit)
    if values.get("stage", "dpo") != "dpo":
        raise WorkbenchError(f"stage: workbench dpo runs stage 'dpo', got {values['stage']!r}")
    values.pop("stage", None)
    values.pop("init_from", None)
    return dpo_config(init_from, **values)


def _dpo_line(event: dict[str, Any]) -> str:
    loss = event.get("loss")
    return (
        f"step {event['step']}: loss {loss:.4f} " if loss is not None else f"step {event['step']}: loss nan "
    ) + (
        f"beta {event['beta']:g} reward_margin {event['reward_margin']:.4f} "
        f"reward_accuracy {event['reward_accuracy']:.1%} chosen_reward {event['chosen_reward']:.4f} "
        f"rejected_reward {event['rejected_reward']:.4f} logp chosen {event['policy_chosen_logp']:.2f} "
        f"rejected {event['policy_rejected_logp']:.2f}"
    )


def print_dpo_metrics(console: Console, trainer: Trainer, lines: int = 20) -> None:
    """Print about `lines` DPO metric lines over the run (and every eval's reward metrics)."""
    print_stage_metrics(console, trainer, "reward_margin", _dpo_line, "val_reward_accuracy", lambda e: (
        f"eval @ step {e['step']}: val_reward_accuracy {e['val_reward_accuracy']:.1%} "
        f"val_reward_margin {e['val_reward_margin']:.4f}"), lines)


def register(app: typer.Typer) -> None:
    @app.command("dpo", context_settings=renamed({"from": "checkpoint"}))
    def dpo(
        init_from: str = checkpoint_option("Checkpoint to start from (run folder or step folder)."),
        data: str = typer.Option("arith", "--data", help="Preference JSON/JSONL (instruction, input, chosen, "
                                                          "rejected), or 'arith' for llm_core/experiment/data/arith/preferences.json."),
        beta: Optional[float] = typer.Option(None, "--beta", help="DPO temperature (default 0.1); higher = stay "
                                                                   "closer to the reference."),
        adapter: AdapterKind = adapter_option("the reference is then the base weights, no copy"),
        lora: bool = hidden_flag("--lora"),
        dora: bool = hidden_flag("--dora"),
        out: Optional[str] = typer.Option(None, "--out", help="Folder holding the run folders (default runs)."),
        config: Optional[Path] = config_option(),
        sets: list[str] = set_option("max_steps=100"),
        estimate_steps: int = typer.Option(2, "--estimate-steps", help="Steps timed for the time estimate (0 = skip)."),
    ) -> None:
        """Preference-tune a checkpoint with DPO (reward margin and accuracy shown as it trains)."""
        cfg = build_dpo_config(init_from, data, beta, pick_adapter(adapter, lora, dora), out, config, sets)
        trainer = Trainer(cfg)
        console = Console(quiet=not trainer.ctx.is_main)
        obj = trainer.objective
        console.print(f"DPO: beta {obj.beta:g}, reference = "
                      + ("the base weights with adapters off (no copy)" if obj.reference == "adapters"
                         else "a frozen copy of the starting model"))
        _print_estimates(console, trainer, trainer.estimate(measure_steps=max(estimate_steps, 0)))
        print_dpo_metrics(console, trainer)
        run_to_end(console, trainer)
