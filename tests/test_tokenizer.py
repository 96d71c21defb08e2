"""Tokenizer policy: special-token strings are plain text, broken Unicode is repaired, ids are checked."""
from __future__ import annotations

import json

import pytest

import llm_core.tokenizer as tokenizer_module
from llm_core import Tokenizer, load_tokenizer
from llm_core.bpe import save_bpe, train_bpe
from llm_core.errors import ConfigError, DataError
from llm_core.tokenizer import save_tokenizer_ref


@pytest.fixture
def gpt2(gpt2_cache) -> Tokenizer:
    return load_tokenizer("gpt2")


def test_gpt2_basics(gpt2):
    assert gpt2.name == "gpt2" and gpt2.n_vocab == 50257 and gpt2.eot_id == 50256
    assert gpt2.special_tokens == {"<|endoftext|>": 50256}
    assert gpt2.encode("Hello world") == [15496, 995]  # GPT-2's published ids


def test_special_token_text_is_ordinary_text(gpt2):
    ids = gpt2.encode("a <|endoftext|> b")
    assert gpt2.eot_id not in ids
    assert len(gpt2.encode("<|endoftext|>")) > 1
    assert gpt2.decode(ids) == "a <|endoftext|> b"
    # Only an id inserted on purpose decodes to the control token.
    assert gpt2.decode([gpt2.eot_id]) == "<|endoftext|>"


def test_unicode_round_trip(gpt2):
    text = "naïve café 你好 🙂"
    assert gpt2.decode(gpt2.encode(text)) == text
    assert gpt2.decode_bytes(gpt2.encode(text)) == text.encode("utf-8")


def test_lone_surrogate_is_repaired(gpt2):
    ids = gpt2.encode("a\ud800b")
    assert gpt2.decode(ids) == "a\ufffdb"
    # A surrogate pair written as two code units is joined into the character it spells.
    assert gpt2.decode(gpt2.encode("\ud83d\ude42")) == "🙂"


def test_decode_checks_ids(gpt2):
    with pytest.raises(DataError, match=r"token id 50257 is out of range for tokenizer 'gpt2' \(0\.\.50256\)"):
        gpt2.decode([1, 50257])
    with pytest.raises(DataError, match="token id -1"):
        gpt2.decode_bytes([-1])


def test_partial_utf8_decodes_with_replacement(gpt2):
    ids = gpt2.encode("🙂")
    assert len(ids) > 1  # the emoji's four bytes span several tokens
    assert gpt2.decode(ids[:1]).endswith("\ufffd")
    assert b"".join(gpt2.token_bytes(i) for i in ids) == "🙂".encode("utf-8")


def test_offline_failure_is_one_line(monkeypatch):
    def fail(name):
        raise OSError("network unreachable")

    monkeypatch.setattr(tokenizer_module.tiktoken, "get_encoding", fail)
    with pytest.raises(ConfigError, match="set TIKTOKEN_CACHE_DIR") as info:
        load_tokenizer("gpt2")
    assert "\n" not in str(info.value)


def test_unknown_spec(tmp_path):
    with pytest.raises(ConfigError, match="'nope': not one of gpt2 nor a folder"):
        load_tokenizer("nope")
    with pytest.raises(ConfigError, match="not a tokenizer folder"):
        load_tokenizer(tmp_path)


def test_project_bpe_folder_and_ref_round_trip(tmp_path):
    ranks = train_bpe(["the cat sat on the mat. " * 20], 300)
    save_bpe(ranks, tmp_path / "bpe", name="tiny")
    tok = load_tokenizer(tmp_path / "bpe")
    assert tok.n_vocab == len(ranks) + 1 and tok.eot_id == len(ranks) and tok.name == "tiny"
    assert tok.eot_id not in tok.encode("x<|endoftext|>y")
    save_tokenizer_ref(tok, tmp_path / "run" / "tokenizer")
    for f in ("tiny.tiktoken", "workbench_tokenizer.json"):
        assert (tmp_path / "run" / "tokenizer" / f).read_bytes() == (tmp_path / "bpe" / f).read_bytes()
    again = load_tokenizer(tmp_path / "run" / "tokenizer")
    assert again.encode("the mat") == tok.encode("the mat")


def test_gpt2_ref_round_trip(gpt2, tmp_path):
    save_tokenizer_ref(gpt2, tmp_path)
    assert json.loads((tmp_path / "workbench_tokenizer.json").read_text()) == {"builtin": "gpt2"}
    assert load_tokenizer(tmp_path).encode("Hello world") == [15496, 995]


def test_corrupt_folder_errors(tmp_path):
    save_bpe(train_bpe(["abc abc"], 260), tmp_path)
    with open(tmp_path / "bpe.tiktoken", "a") as f:
        f.write("!!notbase64 7\n")
    with pytest.raises(DataError, match=r"bpe\.tiktoken:\d+: expected '<base64 token> <rank>'"):
        load_tokenizer(tmp_path)
    (tmp_path / "workbench_tokenizer.json").write_text("{")
    with pytest.raises(DataError, match=r"workbench_tokenizer\.json: not valid JSON"):
        load_tokenizer(tmp_path)


def test_folders_written_before_the_rename_still_load(tmp_path):
    """The project file used to be called tokenizer.json (Hugging Face's name): still read, replaced on save."""
    save_bpe(train_bpe(["the cat sat on the mat"] * 5, 270), tmp_path, name="old")
    new = load_tokenizer(tmp_path)
    (tmp_path / "workbench_tokenizer.json").rename(tmp_path / "tokenizer.json")
    old = load_tokenizer(tmp_path)
    assert old.encode("the mat sat") == new.encode("the mat sat") and old.n_vocab == new.n_vocab > 257
    save_tokenizer_ref(old, tmp_path)  # writing the folder again leaves one file, under the new name
    assert (tmp_path / "workbench_tokenizer.json").is_file() and not (tmp_path / "tokenizer.json").exists()
    (tmp_path / "workbench_tokenizer.json").unlink()
    with pytest.raises(ConfigError, match=r"not a tokenizer folder \(no workbench_tokenizer\.json"):
        load_tokenizer(tmp_path)


def test_old_gpt2_reference_still_loads(gpt2, tmp_path):
    (tmp_path / "tokenizer.json").write_text(json.dumps({"builtin": "gpt2"}))
    assert load_tokenizer(tmp_path).builtin == "gpt2"
