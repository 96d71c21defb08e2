"""InstructionDataset: exact prompt masking, truncation, errors naming file/entry/field, seeded split."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from llm_core.data import IGNORE_INDEX, InstructionDataset, collate_lm, train_val_split
from llm_core.errors import DataError
from llm_core.formatting import format_prompt
from llm_core.tokenizer import load_tokenizer


class ByteTokenizer:
    """Byte-level stand-in: id = byte value, end-of-text = 256 (never produced by encode)."""

    eot_id = 256
    n_vocab = 257

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))


def write_json(tmp_path: Path, records: list, name: str = "data.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


def test_mask_exact_on_hand_built_example() -> None:
    tok = ByteTokenizer()
    record = {"instruction": "Add 2 and 3.", "input": "", "output": "5"}
    ds = InstructionDataset([record], tok, max_length=1000)
    prompt = list(format_prompt("Add 2 and 3.").encode())
    seq = prompt + [ord("5"), 256]  # response "5" then eot by id
    item = ds[0]
    assert item["input_ids"].tolist() == seq[:-1]
    labels = item["labels"].tolist()
    assert len(labels) == len(seq) - 1
    # Targets seq[1:len(prompt)] are prompt tokens: exactly len(prompt)-1 masked, at the start.
    assert labels.count(IGNORE_INDEX) == len(prompt) - 1
    assert labels[: len(prompt) - 1] == [IGNORE_INDEX] * (len(prompt) - 1)
    assert labels[len(prompt) - 1 :] == [ord("5"), 256]


def test_unmasked_labels_are_the_shifted_sequence() -> None:
    ds = InstructionDataset([{"instruction": "Hi", "output": "yo"}], ByteTokenizer(), 3000, mask_prompt=False)
    seq = list(format_prompt("Hi").encode()) + list(b"yo") + [256]
    assert ds[0]["labels"].tolist() == seq[1:] and IGNORE_INDEX not in ds[0]["labels"].tolist()


def test_input_section_used_when_present() -> None:
    ds = InstructionDataset([{"instruction": "Fix", "input": "he go", "output": "he goes"}], ByteTokenizer(), 3000)
    seq = list(format_prompt("Fix", "he go").encode()) + list(b"he goes") + [256]
    assert ds[0]["input_ids"].tolist() == seq[:-1]


def test_truncation_keeps_max_length_tokens() -> None:
    tok = ByteTokenizer()
    prompt_len = len(format_prompt("Hi").encode())
    max_length = prompt_len + 3  # 4 sequence tokens survive after the prompt in seq[: max_length + 1]
    ds = InstructionDataset([{"instruction": "Hi", "output": "abcdefgh"}], tok, max_length)
    item = ds[0]
    assert item["input_ids"].numel() == max_length and item["labels"].numel() == max_length
    assert item["labels"].tolist()[prompt_len - 1 :] == list(b"abcd")


def test_response_cut_away_names_file_entry_field(tmp_path: Path) -> None:
    prompt_len = len(format_prompt("Hi").encode())
    ok = {"instruction": "Hi", "output": "x"}
    path = write_json(tmp_path, [ok, ok])
    # max_length = prompt_len: seq[:prompt_len+1] keeps one response token, so this is still fine...
    assert len(InstructionDataset(path, ByteTokenizer(), prompt_len)) == 2
    # ...but one less and the response is gone.
    with pytest.raises(DataError) as info:
        InstructionDataset(path, ByteTokenizer(), prompt_len - 1)
    message = str(info.value)
    assert str(path) in message and "entry 0" in message and "'output'" in message
    assert f"{prompt_len} tokens" in message


def test_missing_output_field(tmp_path: Path) -> None:
    path = write_json(tmp_path, [{"instruction": "a", "output": "b"}, {"instruction": "a", "response": "b"}])
    with pytest.raises(DataError, match=rf"{path}: entry 1: field 'output' is missing"):
        InstructionDataset(path, ByteTokenizer(), 300)


def test_wrong_type_input_field(tmp_path: Path) -> None:
    path = write_json(tmp_path, [{"instruction": "a", "input": 3, "output": "b"}])
    with pytest.raises(DataError, match=rf"{path}: entry 0: field 'input' must be str, got int"):
        InstructionDataset(path, ByteTokenizer(), 300)


def test_empty_instruction_named(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "  ", "output": "b"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=rf"{path}: line 2: field 'instruction' must not be empty"):
        InstructionDataset(path, ByteTokenizer(), 300)


def test_check_vocab_names_entry() -> None:
    ds = InstructionDataset([{"instruction": "a", "output": "b"}] * 2, ByteTokenizer(), 300)
    ds.check_vocab(257)
    # eot (id 256) closes every response (the last label): a 256-id model cannot represent it.
    with pytest.raises(DataError, match=r"<records>: entry 0: output: token id 256 .*vocab_size 256"):
        InstructionDataset([{"instruction": "a", "output": "b"}], ByteTokenizer(), 300, vocab_size=256)


def test_split_is_seeded_disjoint_and_covering() -> None:
    records = [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(20)]
    ds = InstructionDataset(records, ByteTokenizer(), 300)
    train, val = train_val_split(ds, 0.25, seed=3)
    names = lambda d: [r["instruction"] for r in d.records]  # noqa: E731
    assert len(val) == 5 and len(train) == 15
    assert sorted(names(train) + names(val), key=lambda s: int(s[1:])) == [r["instruction"] for r in records]
    again_train, again_val = ds.split(0.25, seed=3)
    assert names(again_val) == names(val)
    assert names(ds.split(0.25, seed=4)[1]) != names(val)
    # The split's examples still line up with their records.
    idx = names(ds).index(names(val)[0])
    assert torch.equal(val[0]["input_ids"], ds[idx]["input_ids"])
    with pytest.raises(DataError, match="val_fraction"):
        train_val_split(ds, 0.01, seed=0)


def test_collate_pads_inputs_with_pad_and_labels_with_ignore() -> None:
    ds = InstructionDataset(
        [{"instruction": "a", "output": "b"}, {"instruction": "a", "output": "bbbb"}], ByteTokenizer(), 300
    )
    batch = collate_lm([ds[0], ds[1]], pad_id=256)
    n0, n1 = ds[0]["input_ids"].numel(), ds[1]["input_ids"].numel()
    assert batch["input_ids"].shape == (2, n1) and n1 == n0 + 3
    assert batch["input_ids"][0, n0:].tolist() == [256] * 3
    assert batch["labels"][0, n0:].tolist() == [IGNORE_INDEX] * 3
    assert batch["labels"][1].tolist() == ds[1]["labels"].tolist()


def test_shared_alpaca_file_with_gpt2(gpt2_cache: Path, shared_data: Path, tmp_path: Path) -> None:
    tok = load_tokenizer("gpt2")
    source = shared_data / "instruction-data.json"
    ds = InstructionDataset(source, tok, max_length=1024, vocab_size=tok.n_vocab)
    assert len(ds) == 1100
    raw = json.loads(source.read_text(encoding="utf-8"))
    first = raw[0]
    prompt = tok.encode(format_prompt(first["instruction"], first["input"]))
    response = tok.encode(first["output"]) + [tok.eot_id]
    assert ds[0]["input_ids"].tolist() == (prompt + response)[:-1]
    assert ds[0]["labels"].tolist().count(IGNORE_INDEX) == len(prompt) - 1
    jsonl = tmp_path / "instruction-data.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in raw[:50]), encoding="utf-8")
    from_jsonl = InstructionDataset(jsonl, tok, max_length=1024)
    assert all(torch.equal(from_jsonl[i]["labels"], ds[i]["labels"]) for i in range(50))
