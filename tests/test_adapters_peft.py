"""PEFT-format adapters: our LoRA/DoRA export loads in the real `peft` with equal logits, peft's own adapters
load into our model with equal logits, export -> import is exact, and bad folders give one-line errors."""
from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from llm_core import GPT, GPTConfig, load_peft_adapters, save_peft_adapters
from llm_core.adapters import adapter_layers, add_adapters, remove_adapters, set_merged
from llm_core.errors import CheckpointError, ConfigError

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

VOCAB = 40


def _gpt(seed: int = 0, **overrides) -> GPT:
    cfg = GPTConfig(vocab_size=VOCAB, context_length=16, d_model=32, n_layers=2, n_heads=4, **overrides)
    model = GPT(cfg)
    model.reset_parameters(torch.Generator().manual_seed(seed))
    with torch.no_grad():  # non-zero biases and LayerNorms, so a wrong mapping cannot hide behind zeros
        g = torch.Generator().manual_seed(seed + 100)
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.add_(torch.randn(p.shape, generator=g) * 0.1)
    return model.eval()


def _tokens() -> torch.Tensor:
    return torch.randint(0, VOCAB, (2, 12), generator=torch.Generator().manual_seed(1))


def _randomise(model: torch.nn.Module, seed: int = 5) -> None:
    """B starts at zero and DoRA's m at ||W0||: move every adapter tensor so the update is visible."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith((".A", ".B", ".m")):
                p.add_(torch.randn(p.shape, generator=g) * 0.2)


def _peft_model(base: Path, adapters: Path) -> torch.nn.Module:
    with warnings.catch_warnings():  # peft warns that it switches fan_in_fan_out per layer type
        warnings.simplefilter("ignore")
        hf = transformers.GPT2LMHeadModel.from_pretrained(base)
        return peft.PeftModel.from_pretrained(hf, adapters).eval()


def _adapted(tmp_path: Path, kind: str, targets: str, **options) -> tuple[GPT, Path]:
    """A model with random adapters; its base (before adapters) saved with our HF export."""
    model = _gpt()
    base = tmp_path / "base"
    model.save_hf(base)
    add_adapters(model, kind=kind, rank=4, alpha=8, targets=targets, **options)
    _randomise(model)
    return model, base


@pytest.mark.parametrize("kind", ["lora", "dora"])
@pytest.mark.parametrize("targets", ["attn,mlp", "attn,head"])
def test_export_loads_in_peft_with_our_logits(tmp_path, kind, targets):
    model, base = _adapted(tmp_path, kind, targets)
    out = save_peft_adapters(model, tmp_path / "adapters", base_model_name_or_path=str(base))
    config = json.loads((out / "adapter_config.json").read_text())
    assert (config["peft_type"], config["task_type"], config["r"], config["lora_alpha"]) == ("LORA", "CAUSAL_LM", 4, 8)
    assert config["use_dora"] is (kind == "dora") and config["fan_in_fan_out"] is True
    assert config["base_model_name_or_path"] == str(base) and config["bias"] == "none"
    tensors = load_file(str(out / "adapter_model.safetensors"))
    key = "base_model.model.transformer.h.0.attn.c_attn"
    assert tensors[f"{key}.lora_A.weight"].shape == (4, 32) and tensors[f"{key}.lora_B.weight"].shape == (96, 4)
    assert (f"{key}.lora_magnitude_vector" in tensors) is (kind == "dora")

    idx = _tokens()
    with torch.no_grad():
        ours = model(idx)
        theirs = _peft_model(base, out)(idx).logits
        base_logits = GPT.from_hf(base)(idx)
    assert not torch.allclose(ours, base_logits, atol=1e-2)  # the adapters change the output...
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=1e-5)  # ...and peft computes the same change


def test_peft_targets_and_alpha_for_other_choices(tmp_path):
    # Attention only, one layer only, and the tutorials' scale = alpha (rank_scaled=False): peft scales by
    # lora_alpha / r, so the export writes lora_alpha = alpha * r.
    model, base = _adapted(tmp_path, "lora", "blocks.1.attn.*", rank_scaled=False)
    out = save_peft_adapters(model, tmp_path / "adapters")
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["target_modules"] == ["transformer.h.1.attn.c_attn", "transformer.h.1.attn.c_proj"]
    assert config["lora_alpha"] == 32
    idx = _tokens()
    with torch.no_grad():
        torch.testing.assert_close(_peft_model(base, out)(idx).logits, model(idx), atol=1e-5, rtol=1e-5)
    attn, _ = _adapted(tmp_path / "attn", "dora", "attn")
    config = json.loads((save_peft_adapters(attn, tmp_path / "attn-ad") / "adapter_config.json").read_text())
    assert config["target_modules"] == ["attn.c_attn", "attn.c_proj"]  # "c_proj" alone would take the MLP's too


def test_adapters_written_by_peft_load_into_our_model(tmp_path):
    """Independent of our exporter: peft's own save_pretrained (rsLoRA scaling, DoRA, two targets)."""
    base = tmp_path / "base"
    _gpt().save_hf(base)
    config = peft.LoraConfig(r=4, lora_alpha=6, target_modules=["c_attn", "c_fc"], use_dora=True,
                             use_rslora=True, fan_in_fan_out=True, task_type="CAUSAL_LM")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = peft.get_peft_model(transformers.GPT2LMHeadModel.from_pretrained(base), config)
    with torch.no_grad():
        g = torch.Generator().manual_seed(3)
        for name, p in theirs.named_parameters():
            if "lora_" in name:
                p.add_(torch.randn(p.shape, generator=g) * 0.2)
    theirs.save_pretrained(tmp_path / "peft-adapters")
    ours = load_peft_adapters(GPT.from_hf(base), tmp_path / "peft-adapters")
    assert ours.adapter_config.kind == "dora" and ours.adapter_config.rank == 4
    assert sorted(adapter_layers(ours)) == ["blocks.0.attn.qkv", "blocks.0.mlp.fc", "blocks.1.attn.qkv", "blocks.1.mlp.fc"]
    assert math.isclose(adapter_layers(ours)["blocks.0.mlp.fc"].scale, 6 / math.sqrt(4))
    idx = _tokens()
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(idx), theirs.eval()(idx).logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["lora", "dora"])
def test_round_trip_is_exact_on_our_model_and_on_the_hf_base(tmp_path, kind):
    model, base = _adapted(tmp_path, kind, "attn,mlp")
    idx = _tokens()
    set_merged(model, True)  # the export reads the adapter tensors, merged or not
    with torch.no_grad():
        merged = model(idx)
    save_peft_adapters(model, tmp_path / "adapters")
    # The fresh models load unmerged, so compare with the unmerged forward: the same arithmetic, exact on
    # any CPU. The merged forward (one matmul with W + delta) rounds differently, by ~1e-6 at fp32.
    set_merged(model, False)
    with torch.no_grad():
        expected = model(idx)
        torch.testing.assert_close(merged, expected, atol=1e-5, rtol=1e-5)
        for fresh in (_gpt(), GPT.from_hf(base)):
            load_peft_adapters(fresh, tmp_path / "adapters")
            assert fresh.adapter_config.targets == "attn,mlp" and fresh.adapter_config.kind == kind
            torch.testing.assert_close(fresh.eval()(idx), expected, atol=1e-6, rtol=1e-6)
        # Onto a model that already has the same adapters: their weights are replaced.
        again = add_adapters(_gpt(), kind=kind, rank=4, alpha=8)
        torch.testing.assert_close(load_peft_adapters(again, tmp_path / "adapters")(idx), expected, atol=1e-6, rtol=1e-6)


def test_remove_adapters_gives_back_the_exact_base():
    model = _gpt()
    idx = _tokens()
    with torch.no_grad():
        before = model(idx)
        add_adapters(model, kind="dora", rank=2, targets="attn,mlp,head")
        _randomise(model)
        set_merged(model, True)
        remove_adapters(model)
        assert not adapter_layers(model) and model.adapter_config is None
        assert model.lm_head.weight is model.tok_emb.weight  # the tie survives
        assert torch.equal(model(idx), before)


def _error(folder: Path, model: GPT | None = None) -> str:
    with pytest.raises(CheckpointError) as info:
        load_peft_adapters(model if model is not None else _gpt(), folder)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_bad_folders_are_one_line_errors_naming_file_and_field(tmp_path):
    model, _ = _adapted(tmp_path, "dora", "attn,mlp")
    good = save_peft_adapters(model, tmp_path / "good")
    config_text = (good / "adapter_config.json").read_text()
    tensors = load_file(str(good / "adapter_model.safetensors"))

    def variant(name: str, config_changes: dict | None = None, tensor_changes: dict | None = None,
                drop: str | None = None) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        if drop != "adapter_config.json":
            (folder / "adapter_config.json").write_text(json.dumps({**json.loads(config_text), **(config_changes or {})}))
        if drop != "adapter_model.safetensors":
            save_file({**tensors, **(tensor_changes or {})}, str(folder / "adapter_model.safetensors"))
        return folder

    assert "adapter_config.json: file not found" in _error(variant("no-config", drop="adapter_config.json"))
    assert "adapter_model.safetensors: file not found" in _error(variant("no-weights", drop="adapter_model.safetensors"))
    msg = _error(variant("prefix", {"peft_type": "PREFIX_TUNING"}))
    assert "adapter_config.json: peft_type 'PREFIX_TUNING' is not supported" in msg
    msg = _error(variant("rank", {"r": 2}))
    assert "adapter_model.safetensors" in msg and "lora_A.weight has shape [4, 32], expected [2, 32]" in msg
    assert "r=2 from adapter_config.json" in msg
    msg = _error(variant("targets", {"target_modules": ["c_attn"]}))
    assert "adapter_config.json: target_modules ['c_attn'] does not select 'transformer.h.0.attn.c_proj'" in msg
    assert "use_dora" in _error(variant("lora", {"use_dora": False}))
    assert "bias 'all' is not supported" in _error(variant("bias", {"bias": "all"}))
    assert "rank_pattern" in _error(variant("pattern", {"rank_pattern": {"c_attn": 8}}))
    key = "base_model.model.transformer.h.0.attn.c_attn.lora_B.weight"
    msg = _error(variant("shape", tensor_changes={key: torch.zeros(90, 4)}))
    assert f"{key} has shape [90, 4], expected [96, 4]" in msg
    msg = _error(variant("stray", tensor_changes={"base_model.model.transformer.wte.lora_A.weight": torch.zeros(4, 40)}))
    assert "unexpected tensor 'base_model.model.transformer.wte.lora_A.weight'" in msg
    # A model of another width: the shapes say so.
    assert "expected [4, 48]" in _error(good, GPT(GPTConfig(vocab_size=VOCAB, context_length=16, d_model=48,
                                                                  n_layers=2, n_heads=4)))
    # The same shapes but other base weights: the fingerprint of the export says so, and nothing is added.
    other = _gpt(seed=1)
    assert "exported from other base weights" in _error(good, other)
    assert not adapter_layers(other)
    # A model that already has other adapters.
    assert "differ from the model's" in _error(good, add_adapters(_gpt(), kind="dora", rank=2))


def test_export_refuses_models_without_a_gpt2_layout():
    with pytest.raises(ConfigError, match="no adapters"):
        save_peft_adapters(_gpt(), "unused")
    moe = add_adapters(_gpt(moe_experts=2, moe_top_k=1), rank=2)
    with pytest.raises(ConfigError, match="Mixture-of-Experts"):
        save_peft_adapters(moe, "unused")
