"""Hugging Face GPT-2 checkpoints: import into `GPT` and export from it.

The format is what transformers' `GPT2LMHeadModel.save_pretrained` writes: `config.json` plus
`model.safetensors` (or shards listed in `model.safetensors.index.json`); an export with its tokenizer also
gets `generation_config.json` (end-of-text as eos / bos / pad, so `generate` stops) and the tokenizer files
of `llm_core.hf_tokenizer`, making a folder `AutoTokenizer` / `AutoModelForCausalLM` load as is. Two
things differ from our model:
- names: `transformer.h.{i}.attn.c_attn` is our `blocks.{i}.attn.qkv`, and so on (see `_name_map`);
- layout: GPT-2 was written with a `Conv1D` layer that stores its weight as (in, out), the transpose of
  `nn.Linear`'s (out, in), so those four matrices per block are transposed on the way in and out.
The output head is tied to the token embedding, so checkpoints normally omit `lm_head.weight`.

Weights are read and written with safetensors only: loading a file never runs pickled code.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .errors import CheckpointError
from .hf_tokenizer import save_hf_tokenizer
from .io import read_json_object, replace_atomic, write_atomic

if TYPE_CHECKING:
    from .model import GPT, GPTConfig
    from .tokenizer import Tokenizer

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
GENERATION_CONFIG_FILE = "generation_config.json"
# Both are the tanh approximation of GELU, which is what our MLP computes.
SUPPORTED_ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh")
# Causal-mask buffers that old transformers versions saved with the weights; we build the mask ourselves.
_IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias")
_CONV1D = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")


def _name_map(config: "GPTConfig") -> dict[str, tuple[str, bool]]:
    """Our parameter name -> (HF name without the "transformer." prefix, stored transposed?)."""
    names = {"tok_emb.weight": ("wte.weight", False), "pos_emb.weight": ("wpe.weight", False)}
    pairs = [("ln1", "ln_1"), ("attn.qkv", "attn.c_attn"), ("attn.proj", "attn.c_proj"), ("ln2", "ln_2"),
             ("mlp.fc", "mlp.c_fc"), ("mlp.proj", "mlp.c_proj")]
    for i in range(config.n_layers):
        for ours, theirs in pairs:
            for kind in ("weight", "bias"):
                names[f"blocks.{i}.{ours}.{kind}"] = (f"h.{i}.{theirs}.{kind}", kind == "weight" and theirs in _CONV1D)
    names["ln_f.weight"] = ("ln_f.weight", False)
    names["ln_f.bias"] = ("ln_f.bias", False)
    if not config.tie_weights:
        names["lm_head.weight"] = ("lm_head.weight", False)
    return names


def _read_config(folder: Path, dropout: float) -> tuple["GPTConfig", dict[str, Any]]:
    from .model import GPTConfig

    path = folder / CONFIG_FILE
    hf = read_json_object(path, CheckpointError)
    if hf.get("model_type", "gpt2") != "gpt2":
        raise CheckpointError(f"{path}: model_type {hf['model_type']!r} is not 'gpt2'")
    activation = hf.get("activation_function", "gelu_new")
    if activation not in SUPPORTED_ACTIVATIONS:
        raise CheckpointError(
            f"{path}: activation_function {activation!r} is not supported (use {' or '.join(SUPPORTED_ACTIVATIONS)})"
        )
    # Variants of the attention that our model does not implement.
    for key, expected in (("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx", False),
                          ("add_cross_attention", False)):
        if hf.get(key, expected) != expected:
            raise CheckpointError(f"{path}: {key}={hf[key]!r} is not supported (needs {expected})")
    try:
        config = GPTConfig(
            vocab_size=hf["vocab_size"],
            context_length=hf.get("n_positions", hf.get("n_ctx")),
            d_model=hf["n_embd"],
            n_layers=hf["n_layer"],
            n_heads=hf["n_head"],
            d_ff=hf.get("n_inner") or 0,
            dropout=dropout,
            qkv_bias=True,
            tie_weights=bool(hf.get("tie_word_embeddings", True)),
            layer_norm_eps=float(hf.get("layer_norm_epsilon", 1e-5)),
        )
    except KeyError as exc:
        raise CheckpointError(f"{path}: missing key {exc.args[0]!r}") from None
    except (ValueError, TypeError) as exc:  # ConfigError is a ValueError
        raise CheckpointError(f"{path}: {exc}") from None
    return config, hf


def _weight_files(folder: Path) -> list[Path]:
    single = folder / WEIGHTS_FILE
    if single.is_file():
        return [single]
    index = folder / INDEX_FILE
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
            return [folder / name for name in sorted(set(weight_map.values()))]
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
            raise CheckpointError(f"{index}: not a valid safetensors index (no 'weight_map')") from None
    if (folder / "pytorch_model.bin").is_file():
        raise CheckpointError(
            f"{folder / 'pytorch_model.bin'}: pickle checkpoints are not loaded; re-save with safe_serialization=True"
        )
    raise CheckpointError(f"{single}: file not found")


def _strip_prefix(key: str) -> str:
    return key[len("transformer."):] if key.startswith("transformer.") else key


def load_hf(folder: str | Path, dropout: float = 0.0) -> "GPT":
    """Build a `GPT` from a Hugging Face GPT-2 folder. `dropout` is ours to choose (HF keeps three)."""
    from .model import GPT

    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: not a folder")
    config, _ = _read_config(folder, dropout)
    files = _weight_files(folder)
    expected = {hf: (ours, transposed) for ours, (hf, transposed) in _name_map(config).items()}
    model = GPT(config)
    params = dict(model.named_parameters(remove_duplicate=False))
    loaded: dict[str, Path] = {}
    with torch.no_grad():
        for file in files:
            try:
                handle = safe_open(str(file), framework="pt")
            except FileNotFoundError:
                raise CheckpointError(f"{file}: file not found") from None
            except Exception as exc:  # safetensors raises its own error types for corrupt headers
                raise CheckpointError(f"{file}: not a readable safetensors file ({exc})") from None
            with handle:
                for key in handle.keys():
                    name = _strip_prefix(key)
                    if name.endswith(_IGNORED_SUFFIXES) or (name == "lm_head.weight" and config.tie_weights):
                        continue  # mask buffers; a tied head is the embedding already loaded
                    if name not in expected:
                        raise CheckpointError(f"{file}: unexpected tensor {key!r} for a GPT-2 model")
                    ours, transposed = expected[name]
                    tensor = handle.get_tensor(key)
                    if transposed:
                        tensor = tensor.t()
                    param = params[ours]
                    if tensor.shape != param.shape:
                        want = tuple(reversed(param.shape)) if transposed else tuple(param.shape)
                        got = tuple(reversed(tensor.shape)) if transposed else tuple(tensor.shape)
                        raise CheckpointError(f"{file}: tensor {key!r} has shape {got}, config.json implies {want}")
                    param.copy_(tensor)
                    loaded[name] = file
    missing = [hf for hf in expected if hf not in loaded]
    if missing:
        raise CheckpointError(f"{files[0]}: missing tensor {missing[0]!r} ({len(missing)} missing in all)")
    model.eval()
    return model


def hf_config(config: "GPTConfig", eos_token_id: int | None = None) -> dict[str, Any]:
    """config.json contents for `config`, loadable by transformers' GPT2Config."""
    if eos_token_id is None and config.vocab_size == 50257:
        eos_token_id = 50256  # GPT-2's <|endoftext|>
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "activation_function": "gelu_new",
        "vocab_size": config.vocab_size,
        "n_positions": config.context_length,
        "n_ctx": config.context_length,
        "n_embd": config.d_model,
        "n_layer": config.n_layers,
        "n_head": config.n_heads,
        "n_inner": config.d_ff or None,
        "layer_norm_epsilon": config.layer_norm_eps,
        "resid_pdrop": config.dropout,
        "embd_pdrop": config.dropout,
        "attn_pdrop": config.dropout,
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "tie_word_embeddings": config.tie_weights,
        "bos_token_id": eos_token_id,
        "eos_token_id": eos_token_id,
        "use_cache": True,
        "dtype": "float32",
    }


def is_hf_folder(path: str | Path) -> bool:
    """Does `path` look like a Hugging Face model folder (config.json next to weights)?"""
    path = Path(path)
    return (path / CONFIG_FILE).is_file() and any(
        (path / name).is_file() for name in (WEIGHTS_FILE, INDEX_FILE, "pytorch_model.bin"))


def generation_config(eos_token_id: int) -> dict[str, Any]:
    """generation_config.json: `generate` stops at end-of-text and pads with it (GPT-2 has no pad token)."""
    return {"bos_token_id": eos_token_id, "eos_token_id": eos_token_id, "pad_token_id": eos_token_id}


def save_hf(model: "GPT", folder: str | Path, tokenizer: "Tokenizer | None" = None,
            eos_token_id: int | None = None) -> list[str]:
    """Write the Hugging Face GPT-2 folder of `model`; return the names of the files written.

    `config.json` + `model.safetensors` always (what `GPT2LMHeadModel.from_pretrained` loads), plus
    `generation_config.json` when the end-of-text id is known (from `tokenizer`, `eos_token_id`, or GPT-2's
    vocabulary size), plus the tokenizer's files (`llm_core.hf_tokenizer.save_hf_tokenizer`) with `tokenizer`.
    Every file is replaced atomically."""
    config = model.config
    kinds = {type(m).__name__ for m in model.modules()}
    adapters = sorted(k for k in kinds if "LoRA" in k or "DoRA" in k)
    if adapters:
        raise CheckpointError(
            f"cannot export a model with {'/'.join(adapters)} adapters to GPT-2 format: "
            "merge them first (merge_adapters)"
        )
    if config.moe_experts:
        raise CheckpointError(
            f"cannot export a Mixture-of-Experts model (moe_experts={config.moe_experts}) to GPT-2 format"
        )
    if tokenizer is not None:
        if tokenizer.n_vocab > config.vocab_size:
            raise CheckpointError(f"cannot export: the tokenizer has {tokenizer.n_vocab} tokens, the model only "
                                  f"{config.vocab_size}")
        eos_token_id = tokenizer.eot_id
    state = model.state_dict()
    names = _name_map(config)
    extra = sorted(set(state) - set(names) - ({"lm_head.weight"} if config.tie_weights else set()))
    if extra:
        raise CheckpointError(f"cannot export to GPT-2 format: parameter {extra[0]!r} has no GPT-2 equivalent")
    tensors: dict[str, torch.Tensor] = {}
    for ours, (hf, transposed) in names.items():
        if ours not in state:  # qkv_bias=False: GPT-2 always has the bias, and a zero bias is the same model
            tensors[f"transformer.{hf}"] = torch.zeros(3 * config.d_model, dtype=torch.float32)
            continue
        tensor = state[ours].detach().to("cpu", torch.float32)
        tensor = tensor.t() if transposed else tensor
        key = hf if hf == "lm_head.weight" else f"transformer.{hf}"
        # safetensors refuses views and shared storage: give every tensor its own contiguous copy.
        tensors[key] = tensor.contiguous().clone()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    hf_cfg = hf_config(config, eos_token_id)
    write_atomic(folder / CONFIG_FILE, json.dumps(hf_cfg, indent=2) + "\n")

    def write_weights(tmp: Path) -> None:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
        # safetensors creates its file owner-only (0600); an export is for sharing: the mode (umask) of the
        # config file just written, like every other file of the folder.
        os.chmod(tmp, (folder / CONFIG_FILE).stat().st_mode & 0o777)

    replace_atomic(folder / WEIGHTS_FILE, write_weights)
    (folder / INDEX_FILE).unlink(missing_ok=True)  # a sharded export written here before is not this model
    written = [CONFIG_FILE, WEIGHTS_FILE]
    if hf_cfg["eos_token_id"] is not None:
        write_atomic(folder / GENERATION_CONFIG_FILE, json.dumps(generation_config(hf_cfg["eos_token_id"]), indent=2)
                     + "\n")
        written.append(GENERATION_CONFIG_FILE)
    if tokenizer is not None:
        written += save_hf_tokenizer(tokenizer, folder, model_max_length=config.context_length)
    return written
