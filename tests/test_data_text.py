"""TextDataset: window count and content, contiguous train/val split, eot inserted by id, errors."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from llm_core.data import TextDataset, collate_lm
from llm_core.errors import ConfigError, DataError
from llm_core.tokenizer import load_tokenizer


class ByteTokenizer:
    """Byte-level stand-in: id = byte value, end-of-text = 256 (never produced by encode)."""

    eot_id = 256
    n_vocab = 257

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: list[int]) -> str:
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


@pytest.mark.parametrize("n, T, stride", [(21, 4, None), (21, 4, 1), (21, 4, 3), (5, 4, 2), (100, 7, 5)])
def test_window_count_and_content(n: int, T: int, stride: int | None) -> None:
    ids = torch.arange(n)
    ds = TextDataset(ids, context_length=T, stride=stride)
    step = stride or T
    # Independent count: every start s with s + T + 1 <= n, stepping by `step`.
    starts = [s for s in range(0, n, step) if s + T + 1 <= n]
    assert len(ds) == len(starts)
    for i, s in enumerate(starts):
        item = ds[i]
        assert item["input_ids"].tolist() == list(range(s, s + T))
        assert item["labels"].tolist() == list(range(s + 1, s + T + 1))
        assert item["input_ids"].dtype == torch.long and item["labels"].dtype == torch.long
    with pytest.raises(IndexError):
        ds[len(starts)]


def test_too_short_tokens() -> None:
    with pytest.raises(DataError, match=r"4 tokens.*context_length 4 \+ 1 = 5"):
        TextDataset(torch.arange(4), context_length=4)
    with pytest.raises(ConfigError, match="stride"):
        TextDataset(torch.arange(10), context_length=4, stride=0)


def test_corpus_shorter_than_one_window_names_file(tmp_path: Path) -> None:
    path = tmp_path / "tiny.txt"
    path.write_text("hello", encoding="utf-8")
    with pytest.raises(DataError) as info:
        TextDataset.from_files([path], ByteTokenizer(), context_length=8)
    message = str(info.value)
    assert str(path) in message and "5 tokens" in message and "9 tokens" in message


def test_val_split_too_short_names_split(tmp_path: Path) -> None:
    path = tmp_path / "c.txt"
    path.write_text("x" * 40, encoding="utf-8")
    with pytest.raises(DataError, match=r"validation split has 4 tokens"):
        TextDataset.from_files(path, ByteTokenizer(), context_length=8, val_fraction=0.1)


def test_contiguous_split_does_not_leak(tmp_path: Path) -> None:
    path = tmp_path / "c.txt"
    text = "".join(chr(ord("a") + i % 26) for i in range(200))
    path.write_text(text, encoding="utf-8")
    train, val = TextDataset.from_files(path, ByteTokenizer(), context_length=8, stride=4, val_fraction=0.25)
    stream = list(text.encode())
    assert train.ids.tolist() == stream[:150] and val.ids.tolist() == stream[150:]
    # Every training window (inputs and labels) lies inside the first 150 tokens.
    assert len(train) == (150 - 9) // 4 + 1 and len(val) == (50 - 9) // 4 + 1
    assert train[len(train) - 1]["labels"].tolist() == stream[len(train) * 4 - 4 + 1 : len(train) * 4 - 4 + 9]


def test_no_validation_when_fraction_zero(tmp_path: Path) -> None:
    path = tmp_path / "c.txt"
    path.write_text("abcdefghij" * 3, encoding="utf-8")
    train, val = TextDataset.from_files(path, ByteTokenizer(), context_length=4, val_fraction=0.0)
    assert val is None and train.num_tokens == 30


def test_separator_inserts_eot_by_id_and_literal_is_text(tmp_path: Path) -> None:
    path = tmp_path / "docs.txt"
    literal = "<|endoftext|>"
    path.write_text(f"ab{literal}c\n===\nde\n===\n", encoding="utf-8")
    train, _ = TextDataset.from_files(path, ByteTokenizer(), context_length=2, separator="\n===\n", val_fraction=0)
    expected = list(f"ab{literal}c".encode()) + [256] + list(b"de")
    assert train.ids.tolist() == expected  # trailing separator adds no empty document
    assert train.ids.tolist().count(256) == 1


def test_files_are_documents(tmp_path: Path) -> None:
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("abc", encoding="utf-8")
    b.write_text("de", encoding="utf-8")
    train, _ = TextDataset.from_files([a, b], ByteTokenizer(), context_length=3, val_fraction=0)
    assert train.ids.tolist() == [97, 98, 99, 256, 100, 101]


def test_check_vocab(tmp_path: Path) -> None:
    ds = TextDataset(torch.tensor([1, 2, 300, 4, 5]), context_length=2)
    ds.check_vocab(301)
    with pytest.raises(DataError, match="token id 300.*vocab_size 256"):
        ds.check_vocab(256)
    path = tmp_path / "c.txt"
    path.write_text("a\n|\nb" * 5, encoding="utf-8")
    with pytest.raises(DataError, match="vocab_size 256"):  # eot (256) is outside a 256-id model
        TextDataset.from_files(path, ByteTokenizer(), context_length=2, separator="|", vocab_size=256, val_fraction=0)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="absent.txt: file not found"):
        TextDataset.from_files(tmp_path / "absent.txt", ByteTokenizer(), context_length=4)


def test_collate_windows() -> None:
    ds = TextDataset(torch.arange(20), context_length=4)
    batch = collate_lm([ds[0], ds[1]], pad_id=0)
    assert batch["input_ids"].shape == (2, 4) and batch["labels"].tolist()[1] == [5, 6, 7, 8]


def test_the_verdict_with_gpt2(gpt2_cache: Path, shared_data: Path, tmp_path: Path) -> None:
    tok = load_tokenizer("gpt2")
    path = shared_data / "the-verdict.txt"
    train, val = TextDataset.from_files(path, tok, context_length=256, val_fraction=0.1, vocab_size=tok.n_vocab)
    n = len(tok.encode(path.read_text(encoding="utf-8")))
    assert train.num_tokens + val.num_tokens == n
    assert val.num_tokens == round(n * 0.1)
    assert len(train) == (train.num_tokens - 257) // 256 + 1
    # A literal "<|endoftext|>" in the text stays ordinary tokens; the separator becomes the eot id.
    doc = tmp_path / "docs.txt"
    doc.write_text("one <|endoftext|> two\n<|endoftext|>\nthree four five six", encoding="utf-8")
    ds, _ = TextDataset.from_files(doc, tok, context_length=4, separator="\n<|endoftext|>\n", val_fraction=0)
    ids = ds.ids.tolist()
    assert ids.count(tok.eot_id) == 1
    assert ids == tok.encode("one <|endoftext|> two") + [tok.eot_id] + tok.encode("three four five six")
