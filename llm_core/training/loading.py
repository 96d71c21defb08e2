"""`load_checkpoint`: a trained model (with its tokenizer and config) from a run folder, a step directory or
a Hugging Face GPT-2 folder (`workbench export --hf`'s output, or transformers' `save_pretrained` + its tokenizer)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..bpe import TOKENIZER_JSON
from ..errors import CheckpointError
from ..hf import is_hf_folder, load_hf
from ..hf_tokenizer import HF_TOKENIZER_FILE, is_hf_tokenizer_folder
from ..model import GPT
from ..tokenizer import Tokenizer, load_tokenizer
from .builders import model_from_configs
from .checkpoint import CHECKPOINTS, MANIFEST, latest_checkpoint, load_weights, read_manifest
from .config import MODEL_CONFIG_KEY, TrainConfig

TOKENIZER_DIR = "tokenizer"


@dataclass
class LoadedCheckpoint:
    model: GPT
    tokenizer: Tokenizer
    config: TrainConfig
    step: int
    path: Path  # the step directory that was loaded


def resolve_step_dir(path: str | Path) -> Path:
    """A step directory as given, or the latest valid checkpoint of a run folder."""
    path = Path(path)
    if (path / MANIFEST).is_file():
        return path
    if path.is_dir() and (path / CHECKPOINTS).is_dir():
        step_dir = latest_checkpoint(path)
        if step_dir is None:
            raise CheckpointError(f"{path}: no valid checkpoint in {path / CHECKPOINTS}")
        return step_dir
    if not path.exists():
        raise CheckpointError(f"{path}: no such run folder or checkpoint")
    raise CheckpointError(f"{path}: neither a run folder (no {CHECKPOINTS}/) nor a checkpoint (no {MANIFEST})")


def run_dir_of(step_dir: Path) -> Path:
    return step_dir.parent.parent  # runs/<name>/checkpoints/step-XXXXXXXX


def load_checkpoint(path: str | Path, device: str | None = None) -> LoadedCheckpoint:
    """Rebuild the model recorded in the checkpoint's manifest (adapters and MoE included), load and verify
    its weights, and load the run's tokenizer. A Hugging Face folder gives its model and the tokenizer in
    it (see `load_hf_checkpoint`). Raises CheckpointError / DataError (one line) on any problem."""
    if is_hf_folder(path) and not (Path(path) / MANIFEST).is_file():
        return load_hf_checkpoint(path, device)
    step_dir = resolve_step_dir(path)
    manifest = read_manifest(step_dir)
    raw = manifest["config"]
    model_config = raw.get(MODEL_CONFIG_KEY)
    if not isinstance(model_config, dict):
        raise CheckpointError(f"{step_dir / MANIFEST}: config has no {MODEL_CONFIG_KEY}")
    config = TrainConfig.from_dict(raw, where=str(step_dir / MANIFEST))
    model = model_from_configs(model_config, config)
    load_weights(model, step_dir)
    tokenizer_dir = run_dir_of(step_dir) / TOKENIZER_DIR
    if not tokenizer_dir.is_dir():
        raise CheckpointError(f"{tokenizer_dir}: missing (the run's tokenizer)")
    tokenizer = load_tokenizer(tokenizer_dir)
    if tokenizer.n_vocab > model.config.vocab_size:
        raise CheckpointError(
            f"{tokenizer_dir}: tokenizer has {tokenizer.n_vocab} tokens, the model only {model.config.vocab_size}"
        )
    model.eval()
    if device is not None:
        model.to(device)
    return LoadedCheckpoint(model=model, tokenizer=tokenizer, config=config, step=manifest["step"], path=step_dir)


def load_hf_checkpoint(folder: str | Path, device: str | None = None) -> LoadedCheckpoint:
    """A Hugging Face GPT-2 folder as a checkpoint: `GPT.from_hf` plus the tokenizer of the folder (a GPT-2
    vocabulary becomes the builtin "gpt2"). It has no training history: step 0, and a `TrainConfig` that only
    records the model's shape and where its tokenizer comes from."""
    folder = Path(folder)
    model = load_hf(folder)
    if not (is_hf_tokenizer_folder(folder) or (folder / TOKENIZER_JSON).is_file()):
        raise CheckpointError(f"{folder / HF_TOKENIZER_FILE}: file not found (the model's tokenizer: export with "
                              "`workbench export CKPT --hf DIR`, or save the tokenizer there with save_pretrained)")
    tokenizer = load_tokenizer(folder)
    if tokenizer.n_vocab > model.config.vocab_size:
        raise CheckpointError(
            f"{folder}: tokenizer has {tokenizer.n_vocab} tokens, the model (config.json) only "
            f"{model.config.vocab_size}"
        )
    c = model.config
    config = TrainConfig(d_model=c.d_model, n_layers=c.n_layers, n_heads=c.n_heads, context_length=c.context_length,
                         tokenizer=tokenizer.builtin or str(folder), name=folder.name)
    if device is not None:
        model.to(device)
    return LoadedCheckpoint(model=model, tokenizer=tokenizer, config=config, step=0, path=folder)
