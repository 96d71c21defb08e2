"""`workbench export`: a checkpoint to the Hugging Face GPT-2 format, or its adapters alone.

    workbench export runs/demo --hf out/demo-hf          # weights (adapters merged), configs, tokenizer files
    workbench export runs/demo-lora --adapters out/lora  # adapter.safetensors + adapter.json (small)
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from llm_core.export import export_checkpoint


def export(
    checkpoint: Path = typer.Argument(..., help="a run folder (its latest valid checkpoint) or a step directory"),
    hf: Optional[Path] = typer.Option(
        None, "--hf", help="write a Hugging Face GPT-2 folder here (model, configs, tokenizer: transformers loads it)"),
    adapters: Optional[Path] = typer.Option(None, "--adapters", help="write only the LoRA/DoRA adapters here"),
) -> None:
    """Export a checkpoint's weights (Hugging Face GPT-2 folder) or its adapters."""
    typer.echo(export_checkpoint(checkpoint, hf, adapters))


def register(app: typer.Typer) -> None:
    app.command("export")(export)
