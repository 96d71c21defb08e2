"""Hugging Face GPT-2 import/export: logits parity with transformers, lossless round trips, clear errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from llm_core import GPT, GPTConfig
from llm_core.errors import CheckpointError

transformers = pytest.importorskip("transformers")

SHAPE = dict(n_embd=64, n_layer=2, n_head=4, n_positions=32, vocab_size=100)


def _hf_model(**overrides) -> "transformers.GPT2LMHeadModel":
    torch.manual_seed(0)  # transformers initialises from the global generator
    config = transformers.GPT2Config(**{**SHAPE, "bos_token_id": 99, "eos_token_id": 99, **overrides})
    model = transformers.GPT2LMHeadModel(config).eval()
    # Non-trivial LayerNorm and bias values so a missed tensor or a wrong transpose changes the logits.
    with torch.no_grad():
        g = torch.Generator().manual_seed(1)
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1 + (1.0 if "ln" in name and "weight" in name else 0.0))
    return model


def _tokens() -> torch.Tensor:
    return torch.randint(0, 100, (2, 16), generator=torch.Generator().manual_seed(2))


@pytest.fixture
def hf_folder(tmp_path: Path) -> tuple[Path, "transformers.GPT2LMHeadModel"]:
    model = _hf_model()
    folder = tmp_path / "hf"
    model.save_pretrained(folder, safe_serialization=True)
    return folder, model


def test_import_matches_transformers_logits(hf_folder):
    folder, hf = hf_folder
    ours = GPT.from_hf(folder)
    assert ours.config.d_model == 64 and ours.config.n_layers == 2 and ours.config.context_length == 32
    idx = _tokens()
    with torch.no_grad():
        expected = hf(idx).logits
        got = ours.eval()(idx)
    assert got.shape == (2, 16, 100)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_round_trip_is_lossless_and_loadable_by_transformers(hf_folder, tmp_path):
    folder, hf = hf_folder
    ours = GPT.from_hf(folder)
    out = tmp_path / "export"
    ours.save_hf(out)
    again = GPT.from_hf(out)
    idx = _tokens()
    with torch.no_grad():
        assert torch.equal(again(idx), ours.eval()(idx))
        reloaded = transformers.GPT2LMHeadModel.from_pretrained(out).eval()
        torch.testing.assert_close(reloaded(idx).logits, hf(idx).logits, atol=1e-5, rtol=1e-5)
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "gpt2" and config["architectures"] == ["GPT2LMHeadModel"]


def test_keys_without_transformer_prefix_and_old_mask_buffers(hf_folder, tmp_path):
    folder, hf = hf_folder
    tensors = {k.removeprefix("transformer."): v for k, v in load_file(folder / "model.safetensors").items()}
    tensors["h.0.attn.bias"] = torch.ones(1, 1, 32, 32)  # what old transformers versions saved
    tensors["h.0.attn.masked_bias"] = torch.tensor(-1e4)
    old = tmp_path / "old"
    old.mkdir()
    (old / "config.json").write_text((folder / "config.json").read_text())
    save_file(tensors, str(old / "model.safetensors"), metadata={"format": "pt"})
    idx = _tokens()
    with torch.no_grad():
        torch.testing.assert_close(GPT.from_hf(old)(idx), hf(idx).logits, atol=1e-4, rtol=1e-4)


def _rewrite(folder: Path, edit) -> None:
    tensors = load_file(folder / "model.safetensors")
    edit(tensors)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})


def test_bad_checkpoints_name_file_and_tensor(hf_folder):
    folder, _ = hf_folder
    _rewrite(folder, lambda t: t.pop("transformer.h.1.mlp.c_fc.weight"))
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*missing tensor 'h\.1\.mlp\.c_fc\.weight'"):
        GPT.from_hf(folder)
    _rewrite(folder, lambda t: t.update({"transformer.h.1.mlp.c_fc.weight": torch.zeros(64, 100)}))
    with pytest.raises(CheckpointError, match=r"h\.1\.mlp\.c_fc\.weight.*shape \(64, 100\).*\(64, 256\)"):
        GPT.from_hf(folder)
    _rewrite(folder, lambda t: t.update({"transformer.h.1.mlp.c_fc.weight": torch.zeros(64, 256),
                                          "transformer.h.9.extra": torch.zeros(1)}))
    with pytest.raises(CheckpointError, match=r"unexpected tensor 'transformer\.h\.9\.extra'"):
        GPT.from_hf(folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"model\.safetensors: file not found"):
        GPT.from_hf(folder)


def test_bad_config(hf_folder):
    folder, _ = hf_folder
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "activation_function": "relu"}))
    with pytest.raises(CheckpointError, match=r"config\.json: activation_function 'relu'"):
        GPT.from_hf(folder)
    del config["n_embd"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"config\.json: missing key 'n_embd'"):
        GPT.from_hf(folder)
    (folder / "config.json").unlink()
    with pytest.raises(CheckpointError, match=r"config\.json: file not found"):
        GPT.from_hf(folder)


def test_untied_head_and_no_qkv_bias_export(tmp_path):
    cfg = GPTConfig(vocab_size=100, context_length=32, d_model=64, n_layers=2, n_heads=4,
                    tie_weights=False, qkv_bias=False)
    torch.manual_seed(3)
    model = GPT(cfg).eval()
    model.save_hf(tmp_path)
    idx = _tokens()
    with torch.no_grad():
        reloaded = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
        torch.testing.assert_close(reloaded(idx).logits, model(idx), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(GPT.from_hf(tmp_path)(idx), model(idx), atol=0, rtol=0)


def test_export_refuses_moe(tmp_path):
    cfg = GPTConfig(vocab_size=100, context_length=32, d_model=64, n_layers=2, n_heads=4, moe_experts=2)
    try:
        model = GPT(cfg)
    except ImportError:
        pytest.skip("llm_core.moe is not available yet")
    with pytest.raises(CheckpointError, match="Mixture-of-Experts"):
        model.save_hf(tmp_path)


def test_export_refuses_unmerged_adapters(tmp_path):
    class LoRALinear(torch.nn.Module):  # stands in for llm_core.adapters.LoRALinear
        def __init__(self, base: torch.nn.Linear) -> None:
            super().__init__()
            self.base = base
            self.lora_a = torch.nn.Parameter(torch.zeros(4, base.in_features))

    model = GPT(GPTConfig(vocab_size=100, context_length=32, d_model=64, n_layers=2, n_heads=4))
    model.blocks[0].attn.qkv = LoRALinear(model.blocks[0].attn.qkv)
    with pytest.raises(CheckpointError, match="LoRALinear adapters.*merge"):
        model.save_hf(tmp_path)
    assert not (tmp_path / "model.safetensors").exists()


def test_pickle_checkpoints_are_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", **SHAPE}))
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(CheckpointError, match="pickle checkpoints are not loaded"):
        GPT.from_hf(tmp_path)
