"""`workbench reward-model`: train a learned reward model (a GPT with a scalar head) on preference pairs.

    workbench reward-model -c runs/sft [--data arith] [--steps 200] [--name rm]
    workbench rl -c runs/pretrain --set reward=model:runs/rm            # then RL against it
    workbench rl -c runs/pretrain --set reward=accuracy,model:runs/rm:0.5

It reports the held-out pair accuracy (the share of held-out pairs whose chosen response it scores higher).
(`--from` for `--checkpoint` still works, unlisted.)
"""
from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from llm_core.adapters import adapter_layers, merge_adapters
from llm_core.experiment import default_paths
from llm_core.rl.reward_model import train_reward_model
from llm_core.training import load_checkpoint

from .options import checkpoint_option, renamed


def register(app: typer.Typer) -> None:
    @app.command("reward-model", context_settings=renamed({"from": "checkpoint"}))
    def reward_model(
        init_from: str = checkpoint_option("Checkpoint whose network reads the responses."),
        data: str = typer.Option("arith", "--data", help="Preference JSON/JSONL (instruction, input, chosen, "
                                                          "rejected), or 'arith' for llm_core/experiment/data/arith/preferences.json."),
        steps: int = typer.Option(200, "--steps", help="Optimizer steps."),
        batch_size: int = typer.Option(8, "--batch-size", help="Pairs per step."),
        lr: float = typer.Option(1e-4, "--lr", help="AdamW learning rate."),
        out: Path = typer.Option(Path("runs"), "--out", help="Folder holding the run folders."),
        name: str = typer.Option("reward-model", "--name", help="The reward model's folder under --out."),
        seed: int = typer.Option(0, "--seed"),
    ) -> None:
        """Train a reward model with the Bradley-Terry loss; report its held-out pair accuracy."""
        console = Console()
        loaded = load_checkpoint(init_from)
        model = loaded.model
        if adapter_layers(model):
            merge_adapters(model)  # the reward model finetunes the whole network: fold the adapters in first
        path = default_paths()["preferences"] if data == "arith" else Path(data)
        every = max(1, steps // 10)
        result = train_reward_model(
            model, loaded.tokenizer, path, out / name, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
            on_step=lambda s, loss: (s % every == 0 or s == steps - 1) and console.print(
                f"step {s}: Bradley-Terry loss {loss:.4f}", highlight=False))
        console.print(f"reward model: held-out pair accuracy {result.val_accuracy:.1%} (train "
                      f"{result.train_accuracy:.1%}) after {result.steps} steps in {result.seconds:.0f} s; "
                      f"saved to {result.path}", highlight=False)
