"""Hugging Face GPT-2 import/export: logits parity with transformers, lossless round trips, clear errors."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from llm_core import GPT, GPTConfig
from llm_core.errors import CheckpointError
from llm_core.io import read_text_file

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


# --- A complete folder: tokenizer files, end-of-text ids, generation that stops --------------------------------
from llm_core import load_tokenizer  # noqa: E402
from llm_core.errors import DataError  # noqa: E402
from llm_core.experiment import default_paths  # noqa: E402
from llm_core.hf_tokenizer import save_hf_tokenizer  # noqa: E402
from llm_core.training import load_checkpoint  # noqa: E402

# Unicode (accents, CJK, emoji, a combining mark, NBSP, em space), digit runs, whitespace runs at the start,
# middle and end, contractions, punctuation runs, control characters.
VARIED = [
    "Hello world", "Tom has 12 apples. He buys 25 more. How many apples does Tom have?", "12345 + 678 = 13023",
    "x=3.14159e-10", "naïve café — “quotes” 😀🙂 日本語のテキスト", "e\u0301 ß ﬁ Ünïcödé", "don't I'll we've they're",
    "  leading", "trailing   ", "a   b\t\tc\n\n\nd", "\r\n\r\n", "\u00a0nbsp\u2003em\u200bzw", "", " ", "\n",
    "    def f(x):\n\treturn x**2  # comment", "!!!???...,,,", "mixed123abc456 7 8 9", "a" * 60,
    "\x00\x01\x7f control", "'quoted' \"double\" `back`", "1+1=2\n2*3=6\n", "😀😀😀 ",
]


def _hf_ids_equal_ours(tok, folder: Path, texts: list[str]) -> None:
    hf_tok = transformers.AutoTokenizer.from_pretrained(folder)
    for text in texts:
        assert hf_tok(text)["input_ids"] == tok.encode(text), repr(text)
    assert hf_tok.eos_token_id == hf_tok.bos_token_id == hf_tok.pad_token_id == tok.eot_id
    assert hf_tok.decode(tok.encode(VARIED[4])) == VARIED[4]


def test_project_bpe_converts_to_a_fast_tokenizer_with_our_ids(tmp_path):
    tok = load_tokenizer(default_paths()["tokenizer"])
    written = save_hf_tokenizer(tok, tmp_path)
    assert set(written) == {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"}
    docs = read_text_file(default_paths()["pretrain"]).split("<|endoftext|>")[:300]  # the words it was trained on
    _hf_ids_equal_ours(tok, tmp_path, VARIED + docs)
    data = json.loads((tmp_path / "tokenizer.json").read_text())
    assert data["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] == tok.encoding._pat_str
    assert len(data["model"]["merges"]) == tok.n_vocab - 1 - 256
    # Read back: the same BPE, so the same ids.
    back = load_tokenizer(tmp_path)
    assert back.encoding._mergeable_ranks == tok.encoding._mergeable_ranks
    assert back.special_tokens == tok.special_tokens and back.encoding._pat_str == tok.encoding._pat_str


def _gpt2_cache_file(cache: Path, url: str) -> Path:
    path = cache / hashlib.sha1(url.encode()).hexdigest()  # tiktoken names its cache files so
    if not path.is_file():
        pytest.skip(f"{url} is not in the tiktoken cache")
    return path


def test_gpt2_export_is_gpt2s_published_files(gpt2_cache, tmp_path):
    tok = load_tokenizer("gpt2")
    model = GPT(GPTConfig(vocab_size=50257, context_length=16, d_model=8, n_layers=1, n_heads=2))
    written = model.save_hf(tmp_path, tok)
    assert {"vocab.json", "merges.txt", "tokenizer.json", "generation_config.json"} <= set(written)
    assert json.loads((tmp_path / "config.json").read_text())["eos_token_id"] == 50256
    base = "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/"
    encoder = json.loads(_gpt2_cache_file(gpt2_cache, base + "encoder.json").read_text(encoding="utf-8"))
    assert json.loads((tmp_path / "vocab.json").read_text(encoding="utf-8")) == encoder
    published = _gpt2_cache_file(gpt2_cache, base + "vocab.bpe").read_text(encoding="utf-8").split("\n")[1:]
    ours = (tmp_path / "merges.txt").read_text(encoding="utf-8").split("\n")[1:]
    assert [m for m in ours if m] == [m for m in published if m]  # 50,000 merges, in GPT-2's order
    _hf_ids_equal_ours(tok, tmp_path, VARIED)
    assert load_checkpoint(tmp_path).tokenizer.builtin == "gpt2"  # imported back: the builtin, not a copy
    # The other ways a GPT-2 folder holds its tokenizer: re-saved by transformers itself, and only GPT-2's
    # original vocab.json + merges.txt.
    transformers.AutoTokenizer.from_pretrained(tmp_path).save_pretrained(tmp_path / "resaved")
    assert load_tokenizer(tmp_path / "resaved").builtin == "gpt2"
    (tmp_path / "tokenizer.json").unlink()
    assert load_tokenizer(tmp_path).builtin == "gpt2"


def _chain_model(tok, chain: list[int]) -> GPT:
    """A GPT whose greedy next token after chain[i] is chain[i + 1]: the blocks add nothing (zero output
    projections), positions are zero, and the (untied) head row of chain[i + 1] is the final-norm image of
    chain[i]'s embedding, scaled up so it wins by a wide margin."""
    cfg = GPTConfig(vocab_size=tok.n_vocab, context_length=32, d_model=64, n_layers=1, n_heads=2, tie_weights=False)
    model = GPT(cfg)
    model.reset_parameters(generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for block in model.blocks:
            for layer in (block.attn.proj, block.mlp.proj):
                layer.weight.zero_()
                layer.bias.zero_()
        model.pos_emb.weight.zero_()
        normed = model.ln_f(model.tok_emb.weight)  # (V, C)
        model.lm_head.weight.zero_()
        for a, b in zip(chain, chain[1:]):
            model.lm_head.weight[b] += 10 * normed[a]
    return model.eval()


def test_transformers_generate_stops_at_end_of_text(tmp_path):
    tok = load_tokenizer(default_paths()["tokenizer"])
    chain = [*tok.encode("1234"), tok.eot_id]
    model = _chain_model(tok, chain)
    written = model.save_hf(tmp_path, tok)
    assert "generation_config.json" in written
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["eos_token_id"] == config["bos_token_id"] == tok.eot_id
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path)
    prompt = hf_tok("1", return_tensors="pt")
    with torch.no_grad():
        out = hf.generate(**prompt, max_new_tokens=20, do_sample=False)
        ours = model(torch.tensor([chain[:-1]])).argmax(-1)[0].tolist()
    assert ours == chain[1:]  # our model's own greedy steps
    assert out[0].tolist() == chain  # stopped right after end-of-text, 16 tokens before max_new_tokens
    assert hf_tok.decode(out[0], skip_special_tokens=True) == "1234"


def test_import_takes_the_tokenizer_from_the_folder(tmp_path):
    tok = load_tokenizer(default_paths()["tokenizer"])
    model = _chain_model(tok, [*tok.encode("12"), tok.eot_id])
    model.save_hf(tmp_path, tok)
    loaded = load_checkpoint(tmp_path)
    assert loaded.tokenizer.encode(VARIED[1]) == tok.encode(VARIED[1]) and loaded.tokenizer.eot_id == tok.eot_id
    idx = torch.tensor([tok.encode("12+34=46")])
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(idx), model(idx), atol=0, rtol=0)
    (tmp_path / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match=r"tokenizer\.json: file not found"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("edit, message", [
    (lambda d: {}, r"no 'model'"),
    (lambda d: {**d, "normalizer": {"type": "NFC"}}, r"normalizer 'NFC' is not supported"),
    (lambda d: {**d, "model": {**d["model"], "type": "WordPiece"}}, r"model type 'WordPiece'"),
    (lambda d: {**d, "pre_tokenizer": {"type": "Whitespace"}}, r"pre_tokenizer 'Whitespace' is not supported"),
    (lambda d: {**d, "model": {**d["model"], "merges": d["model"]["merges"][::-1]}}, r"merges in id order"),
    (lambda d: {**d, "model": {**d["model"], "merges": d["model"]["merges"][:-1]}}, r"exactly one merge"),
    (lambda d: {**d, "model": {**d["model"], "vocab": {**d["model"]["vocab"], "a b": 510}}}, r"byte alphabet"),
    (lambda d: {**d, "added_tokens": []}, r"special_tokens must include '<\|endoftext\|>'"),
])
def test_bad_hf_tokenizer_names_the_file(tmp_path, edit, message):
    save_hf_tokenizer(load_tokenizer(default_paths()["tokenizer"]), tmp_path)
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))
    with pytest.raises(DataError, match=r"tokenizer\.json: .*" + message):
        load_tokenizer(tmp_path)
