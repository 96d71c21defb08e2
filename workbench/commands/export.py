"""`workbench export`: a checkpoint to the Hugging Face GPT-2 format, its adapters in the PEFT format, or both.

    workbench export -c runs/demo --hf out/demo-hf          # weights (adapters merged), configs, tokenizer files
    workbench export -c runs/demo-lora --adapters out/lora  # adapter_config.json + adapter_model.safetensors
    workbench export -c runs/demo-lora --hf out/base --adapters out/lora   # the base (no adapters) + the adapters

The checkpoint used to be a positional argument (`workbench export runs/demo --hf DIR`): that still works.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from llm_core.export import export_checkpoint

from .options import CHECKPOINT_HELP, checkpoint_option, legacy_positional


def export(
    ctx: typer.Context,
    checkpoint: Optional[Path] = checkpoint_option(CHECKPOINT_HELP + " Required.", required=False),
    hf: Optional[Path] = typer.Option(
        None, "--hf", help="write a Hugging Face GPT-2 folder here (model, configs, tokenizer: transformers loads it)"),
    adapters: Optional[Path] = typer.Option(None, "--adapters", help="write the LoRA/DoRA adapters here (PEFT format)"),
) -> None:
    """Export a checkpoint's weights (Hugging Face GPT-2 folder), its adapters (PEFT folder), or both."""
    typer.echo(export_checkpoint(legacy_positional(ctx, checkpoint), hf, adapters))


def register(app: typer.Typer) -> None:
    # allow_extra_args: the old positional checkpoint (legacy_positional reads it from ctx.args).
    app.command("export", context_settings={"allow_extra_args": True})(export)
