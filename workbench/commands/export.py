"""`workbench export`: a checkpoint to the Hugging Face GPT-2 format, its adapters in the PEFT format, or both.

    workbench export runs/demo --hf out/demo-hf          # config.json + model.safetensors (adapters merged)
    workbench export runs/demo-lora --adapters out/lora  # adapter_config.json + adapter_model.safetensors
    workbench export runs/demo-lora --hf out/base --adapters out/lora   # the base (no adapters) + the adapters
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from llm_core.export import export_checkpoint


def export(
    checkpoint: Path = typer.Argument(..., help="a run folder (its latest valid checkpoint) or a step directory"),
    hf: Optional[Path] = typer.Option(None, "--hf", help="write the Hugging Face GPT-2 format to this folder"),
    adapters: Optional[Path] = typer.Option(None, "--adapters", help="write the LoRA/DoRA adapters here (PEFT format)"),
) -> None:
    """Export a checkpoint's weights (Hugging Face GPT-2 folder), its adapters (PEFT folder), or both."""
    typer.echo(export_checkpoint(checkpoint, hf, adapters))


def register(app: typer.Typer) -> None:
    app.command("export")(export)
