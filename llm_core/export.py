"""Exporting a checkpoint: a complete Hugging Face GPT-2 folder (adapters merged into plain Linear weights;
weights, config, generation config and the run's tokenizer, see `llm_core.hf`) or the LoRA/DoRA adapters
alone (a small file checked against the base model's hash when loaded back).

Shared by `workbench export` and the TUI's `export:` commands.
"""
from __future__ import annotations

from pathlib import Path

from .adapters import adapter_layers, merge_adapters, save_adapters
from .errors import ConfigError
from .training import load_checkpoint


def export_checkpoint(checkpoint: str | Path, hf: str | Path | None = None,
                      adapters: str | Path | None = None) -> str:
    """Export `checkpoint` (a run folder or a step folder) to exactly one of `hf` / `adapters`; return a
    one-line description of what was written."""
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
    written = model.save_hf(hf, loaded.tokenizer)
    tok = loaded.tokenizer
    return (f"wrote {loaded.path} (step {loaded.step}) in the Hugging Face GPT-2 format to {hf}: "
            f"{', '.join(written)} (tokenizer {tok.name!r}, {tok.n_vocab} tokens; eos = bos = pad = {tok.eot_id})")
