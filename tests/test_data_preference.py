"""PreferenceDataset: chosen/rejected tensors with prompt masking, errors, same-length collation."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from llm_core.data import IGNORE_INDEX, PreferenceDataset, collate_preference
from llm_core.errors import DataError
from llm_core.formatting import format_prompt
from llm_core.tokenizer import load_tokenizer


class ByteTokenizer:
    """Byte-level stand-in: id = byte value, end-of-text = 256 (never produced by encode)."""

    eot_id = 256
    n_vocab = 257

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))


def write_json(tmp_path: Path, records: list) -> Path:
    path = tmp_path / "prefs.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


PAIR = {"instruction": "Say hi.", "input": "", "chosen": "Hello!", "rejected": "Go away"}


def test_item_fields_and_masks() -> None:
    ds = PreferenceDataset([PAIR], ByteTokenizer(), max_length=500)
    prompt = list(format_prompt("Say hi.").encode())
    item = ds[0]
    for field in ("chosen", "rejected"):
        seq = prompt + list(PAIR[field].encode()) + [256]
        assert item[f"{field}_input_ids"].tolist() == seq[:-1]
        labels = item[f"{field}_labels"].tolist()
        assert labels.count(IGNORE_INDEX) == len(prompt) - 1
        assert labels[len(prompt) - 1 :] == seq[len(prompt) :]


def test_identical_chosen_and_rejected(tmp_path: Path) -> None:
    path = write_json(tmp_path, [PAIR, {**PAIR, "rejected": PAIR["chosen"]}])
    with pytest.raises(DataError) as info:
        PreferenceDataset(path, ByteTokenizer(), 500)
    message = str(info.value)
    assert str(path) in message and "entry 1" in message and "identical" in message
    assert "drop_identical_pairs" in message  # the real TrainConfig key
    dropped = PreferenceDataset(path, ByteTokenizer(), 500, drop_identical=True)
    assert len(dropped) == 1 and dropped.dropped == 1 and dropped.locations == [f"{path}: entry 0"]


def test_identical_after_truncation(tmp_path: Path) -> None:
    prompt_len = len(format_prompt("Say hi.").encode())
    path = write_json(tmp_path, [{**PAIR, "chosen": "same start A", "rejected": "same start B"}])
    assert len(PreferenceDataset(path, ByteTokenizer(), prompt_len + 20)) == 1
    with pytest.raises(DataError, match=rf"{path}: entry 0: .*identical"):
        PreferenceDataset(path, ByteTokenizer(), prompt_len + 5)


def test_response_cut_away(tmp_path: Path) -> None:
    prompt_len = len(format_prompt("Say hi.").encode())
    path = write_json(tmp_path, [PAIR])
    with pytest.raises(DataError) as info:
        PreferenceDataset(path, ByteTokenizer(), prompt_len - 1)
    message = str(info.value)
    assert str(path) in message and "entry 0" in message and "'chosen'" in message and "cut away" in message


def test_missing_rejected_field(tmp_path: Path) -> None:
    path = write_json(tmp_path, [PAIR, {"instruction": "x", "chosen": "a"}])
    with pytest.raises(DataError, match=rf"{path}: entry 1: field 'rejected' is missing"):
        PreferenceDataset(path, ByteTokenizer(), 500)


def test_wrong_type_chosen_field_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "prefs.jsonl"
    path.write_text(json.dumps(PAIR) + "\n" + json.dumps({**PAIR, "chosen": ["Hello"]}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"{path}: line 2: field 'chosen' must be str, got list"):
        PreferenceDataset(path, ByteTokenizer(), 500)


def test_collate_pads_chosen_and_rejected_to_one_length() -> None:
    short = {**PAIR, "chosen": "Hi", "rejected": "No"}
    long_rejected = {**PAIR, "chosen": "Hello", "rejected": "Go away, I am busy right now"}
    ds = PreferenceDataset([short, long_rejected], ByteTokenizer(), 500)
    batch = collate_preference([ds[0], ds[1]], pad_id=256)
    longest = ds[1]["rejected_input_ids"].numel()
    for key in ("chosen_input_ids", "chosen_labels", "rejected_input_ids", "rejected_labels"):
        assert batch[key].shape == (2, longest)
    n = ds[0]["chosen_input_ids"].numel()
    assert batch["chosen_input_ids"][0, n:].eq(256).all() and batch["chosen_labels"][0, n:].eq(IGNORE_INDEX).all()
    assert batch["chosen_labels"][0, :n].tolist() == ds[0]["chosen_labels"].tolist()
    both = torch.cat([batch["chosen_input_ids"], batch["rejected_input_ids"]])  # what DPO feeds the model
    assert both.shape == (4, longest)
    # Label-masked response tokens are exactly the real response tokens (padding adds none).
    n_response = sum(int((ds[i]["rejected_labels"] != IGNORE_INDEX).sum()) for i in range(2))
    assert int((batch["rejected_labels"] != IGNORE_INDEX).sum()) == n_response


def test_shared_preference_file_with_gpt2(gpt2_cache: Path, shared_data: Path) -> None:
    tok = load_tokenizer("gpt2")
    source = shared_data / "instruction-data-with-preference.json"
    raw = json.loads(source.read_text(encoding="utf-8"))
    n_identical = sum(r["chosen"] == r["rejected"] for r in raw)
    assert n_identical > 0  # the public file has a few no-preference pairs
    with pytest.raises(DataError, match="identical"):
        PreferenceDataset(source, tok, max_length=1024)
    ds = PreferenceDataset(source, tok, max_length=1024, vocab_size=tok.n_vocab, drop_identical=True)
    assert len(ds) == len(raw) - n_identical and ds.dropped == n_identical
    first = raw[0]
    prompt = tok.encode(format_prompt(first["instruction"], first["input"]))
    assert ds[0]["chosen_input_ids"].tolist() == (prompt + tok.encode(first["chosen"]) + [tok.eot_id])[:-1]
    assert ds[0]["rejected_labels"].tolist().count(IGNORE_INDEX) == len(prompt) - 1
