"""`workbench export`: a checkpoint to the Hugging Face GPT-2 format, or its adapters alone.

    workbench export runs/demo --hf out/demo-hf          # config.json + model.safetensors (adapters merged)
    workbench export runs/demo-lora --adapters out/lora  # adapter.safetensors + adapter.json (small)
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from llm_core.adapters import adapter_layers, merge_adapters, save_adapters
from llm_core.errors import ConfigError
from llm_core.training import load_checkpoint


def export_checkpoint(checkpoint: Path, hf: Optional[Path] = None, adapters: Optional[Path] = None) -> str:
    """Do the export (shared by the CLI and the TUI's `export:` commands); return what was written."""
    if (hf is None) == (adapters is None):
        raise ConfigError("export: give exactly one of --hf DIR or --adapters DIR")
    loaded = load_checkpoint(checkpoint)
    model = loaded.model
    if adapters is not None:
        if not adapter_layers(model):
            raise ConfigError(f"{loaded.path}: this checkpoint has no adapters to export (its adapter setting is none)")
        save_adapters(model, adapters)
        return f"wrote the adapters of {loaded.path} to {adapters}"
    if adapter_layers(model):
        merge_adapters(model)  # the HF format has plain Linear weights: fold the adapters in
    model.save_hf(hf)
    return f"wrote {loaded.path} (step {loaded.step}) in the Hugging Face GPT-2 format to {hf}"


def export(
    checkpoint: Path = typer.Argument(..., help="a run folder (its latest valid checkpoint) or a step directory"),
    hf: Optional[Path] = typer.Option(None, "--hf", help="write the Hugging Face GPT-2 format to this folder"),
    adapters: Optional[Path] = typer.Option(None, "--adapters", help="write only the LoRA/DoRA adapters here"),
) -> None:
    """Export a checkpoint's weights (Hugging Face GPT-2 folder) or its adapters."""
    typer.echo(export_checkpoint(checkpoint, hf, adapters))


def register(app: typer.Typer) -> None:
    app.command("export")(export)
