"""Byte-level BPE trainer: matches a naive reference, round-trips any text, digits stay single tokens."""
from __future__ import annotations

import random
import re
import sys
from collections import Counter

import pytest
import regex
import tiktoken.load
from typer.testing import CliRunner

from llm_core import load_tokenizer
from llm_core.bpe import DEFAULT_PATTERN, save_bpe, train_bpe
from llm_core.errors import ConfigError, DataError
from workbench import cli

GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

CORPUS = [
    "The quick brown fox jumps over the lazy dog. Der schnelle braune Fuchs. Le renard brun, très rapide.\n"
    "東京は日本の首都です。北京是中国的首都。 Emoji: 🙂🙂🚀 "
    "café naïve résumé e\u0301 a\u0308\n"
    "12 + 34 = 46. 120 + 340 = 460. Tom has 12 apples and gets 34 more: 12 + 34 = 46.\n"
] * 30


def _train(vocab_size: int = 400, **kw) -> dict[bytes, int]:
    return train_bpe(CORPUS, vocab_size, **kw)


def _naive_train(texts: list[str], vocab_size: int) -> dict[bytes, int]:
    """Reference: recount every pair from scratch at each step (slow, obviously correct)."""
    special = regex.compile(regex.escape("<|endoftext|>"))
    words = Counter(w for t in texts for chunk in special.split(t) for w in regex.findall(DEFAULT_PATTERN, chunk))
    seqs = {w: [bytes([b]) for b in w.encode("utf-8")] for w in words}
    ranks = {bytes([i]): i for i in range(256)}
    while len(ranks) < vocab_size - 1:
        pairs: Counter = Counter()
        for w, seq in seqs.items():
            for a, b in zip(seq, seq[1:]):
                pairs[(ranks[a], ranks[b])] += words[w]
        if not pairs:
            break
        (a_id, b_id), _ = min(pairs.items(), key=lambda kv: (-kv[1], kv[0]))  # most frequent, then lowest ids
        inverse = {v: k for k, v in ranks.items()}
        a, b = inverse[a_id], inverse[b_id]
        ranks.setdefault(a + b, len(ranks))
        for w, seq in seqs.items():
            out, i = [], 0
            while i < len(seq):
                if i + 1 < len(seq) and seq[i] == a and seq[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(seq[i])
                    i += 1
            seqs[w] = out
    return ranks


def test_matches_naive_reference():
    texts = ["aaa aaab abab ba<|endoftext|>ab 1234 hello hello help 🙂🙂", "the theme then there"] * 3
    assert train_bpe(texts, 300) == _naive_train(texts, 300)


def test_vocab_layout_and_size():
    ranks = _train(400)
    assert len(ranks) == 399  # 400 incl. <|endoftext|>
    assert all(ranks[bytes([i])] == i for i in range(256))
    assert sorted(ranks.values()) == list(range(399))
    # A corpus too small for that many merges stops early.
    assert len(train_bpe(["ab ab"], 1000)) == 258  # only "ab" and " ab" can be learned


def test_round_trip_on_unseen_unicode(tmp_path):
    save_bpe(_train(), tmp_path)
    tok = load_tokenizer(tmp_path)
    rng = random.Random(0)
    pieces = ["🙂", "👩‍👩‍👧", "你好世界", "e\u0301", "\u0301\u0301", "ß", "\t\n  ", "<|endoftext|>", "x", "𝔘", "٣"]
    for _ in range(50):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))
        text += "".join(chr(rng.randint(0x20, 0x2FFF)) for _ in range(5))
        assert tok.decode(tok.encode(text)) == text
    assert len(tok.encode("the quick brown fox")) < len("the quick brown fox".encode())  # merges are used


def test_every_digit_is_its_own_token(tmp_path):
    save_bpe(_train(), tmp_path)
    tok = load_tokenizer(tmp_path)
    assert [tok.decode([i]) for i in tok.encode("12345+678")] == list("12345+678")
    assert [tok.decode([i]) for i in tok.encode(" 12")] == [" ", "1", "2"]
    # GPT-2's pattern would have learned multi-digit tokens from the same corpus.
    gpt2_style = _train(pattern=GPT2_PATTERN)
    assert any(t.strip().isdigit() and len(t.strip()) > 1 for t in gpt2_style)


def test_file_format_is_tiktoken(tmp_path, monkeypatch):
    ranks = _train()
    save_bpe(ranks, tmp_path, name="arith")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")  # read the file directly, no cache copy
    assert tiktoken.load.load_tiktoken_bpe(str(tmp_path / "arith.tiktoken")) == ranks
    meta = (tmp_path / "workbench_tokenizer.json").read_text()
    assert '"<|endoftext|>": 399' in meta and '"vocab_file": "arith.tiktoken"' in meta


def test_deterministic_files(tmp_path):
    save_bpe(_train(), tmp_path / "a")
    save_bpe(_train(), tmp_path / "b")
    for name in ("bpe.tiktoken", "workbench_tokenizer.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_no_merges_across_special_tokens():
    ranks = train_bpe(["xy<|endoftext|>zw" * 50], 300)
    assert not any(b"<|" in t or b"|>" in t or b"endof" in t for t in ranks)
    assert b"xy" in ranks and b"yz" not in ranks


def test_bad_arguments():
    with pytest.raises(ConfigError, match="vocab_size: must be >= 257"):
        train_bpe(CORPUS, 256)
    with pytest.raises(DataError, match="training text is empty"):
        train_bpe(["", ""], 300)
    with pytest.raises(ConfigError, match=re.escape("special_tokens: must include '<|endoftext|>'")):
        train_bpe(CORPUS, 300, special_tokens=("<|pad|>",))


def test_cli_train(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(CORPUS))
    result = CliRunner().invoke(cli.app, ["tokenizer", "train", str(corpus), "--vocab-size", "300",
                                          "--out", str(tmp_path / "tok"), "--name", "mini"])
    assert result.exit_code == 0, result.output
    assert "vocab size 300" in result.output and "bytes/token" in result.output
    assert load_tokenizer(tmp_path / "tok").n_vocab == 300


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing.txt", "--vocab-size", "300"], "missing.txt: file not found"),
        (["corpus.txt", "--vocab-size", "100"], "vocab_size: must be >= 257"),
        (["empty.txt", "--vocab-size", "300"], "no text to train on"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "corpus.txt").write_text("abc abc")
    (tmp_path / "empty.txt").write_text("")
    monkeypatch.setattr(sys, "argv", ["workbench", "tokenizer", "train", *args, "--out", "tok"])
    with pytest.raises(SystemExit) as info:
        cli.main()
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
