"""Exporting a checkpoint: a complete Hugging Face GPT-2 folder (adapters merged into plain Linear weights;
weights, config, generation config and the run's tokenizer, see `llm_core.hf`), the LoRA/DoRA adapters alone
in the PEFT format (`adapters.peft_format`), or both: then the GPT-2 folder holds the base weights without
the adapters, and the adapter folder names it as `base_model_name_or_path`, which is what
`peft.PeftModel.from_pretrained(GPT2LMHeadModel.from_pretrained(HF), ADAPTERS)` needs.

Shared by `workbench export` and the TUI's `export:` commands.
"""
from __future__ import annotations

from pathlib import Path

from .adapters import adapter_layers, merge_adapters, remove_adapters, save_peft_adapters
from .errors import ConfigError
from .training import load_checkpoint


def export_checkpoint(checkpoint: str | Path, hf: str | Path | None = None,
                      adapters: str | Path | None = None) -> str:
    """Export `checkpoint` (a run folder or a step folder) to `hf`, `adapters` or both (see the module doc);
    return a one-line description of what was written."""
    if hf is None and adapters is None:
        raise ConfigError("export: give --hf DIR, --adapters DIR or both")
    loaded = load_checkpoint(checkpoint)
    model = loaded.model
    written = []
    if adapters is not None:
        if not adapter_layers(model):
            raise ConfigError(f"{loaded.path}: this checkpoint has no adapters to export (its adapter setting is none)")
        base = str(Path(hf).resolve()) if hf is not None else loaded.config.init_from
        save_peft_adapters(model, adapters, base_model_name_or_path=base)
        written.append(f"its adapters in the PEFT format to {adapters}")
        if hf is not None:
            remove_adapters(model)  # the base the adapters apply to
    if hf is not None:
        if adapter_layers(model):
            merge_adapters(model)  # the HF format has plain Linear weights: fold the adapters in
        files = model.save_hf(hf, loaded.tokenizer)
        what = "the base weights" if adapters is not None else "the model"
        tok = loaded.tokenizer
        written.append(f"{what} in the Hugging Face GPT-2 format to {hf}: {', '.join(files)} (tokenizer "
                       f"{tok.name!r}, {tok.n_vocab} tokens; eos = bos = pad = {tok.eot_id})")
    return f"wrote {loaded.path} (step {loaded.step}): " + " and ".join(written)
