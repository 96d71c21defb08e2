"""Packed token storage: flat int32 columns, records read back on demand, bounded memory on a big JSONL."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from llm_core.data import InstructionDataset, PreferenceDataset
from llm_core.data.packed import PackedSequences
from llm_core.errors import DataError
from llm_core.experiment import DATA_DIR
from llm_core.formatting import encode_example

ROOT = Path(__file__).resolve().parents[1]
ARITH_TOKENIZER = DATA_DIR / "tokenizer"


class ByteTokenizer:
    eot_id = 256
    n_vocab = 257

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_packed_sequences_round_trip_and_empty() -> None:
    packed = PackedSequences()
    for seq in ([1, 2, 3], [], [7]):
        packed.append(seq)
    packed.freeze()
    assert [packed.seq(i).tolist() for i in range(3)] == [[1, 2, 3], [], [7]]
    assert packed.seq(0).dtype == torch.long and packed.flat.dtype == torch.int32
    assert packed.offsets.tolist() == [0, 3, 3, 4] and packed.flat.numel() == 4
    assert PackedSequences().freeze().flat.numel() == 0
    with pytest.raises(RuntimeError, match="after freeze"):
        packed.append([1])


def test_instruction_tokens_live_in_one_int32_buffer(tmp_path: Path) -> None:
    records = [{"instruction": f"q{i}", "output": "a" * (i + 1)} for i in range(5)]
    ds = InstructionDataset(write_jsonl(tmp_path / "d.jsonl", records), ByteTokenizer(), max_length=1000)
    column = ds.columns["sequence"]
    expected = []
    for r in records:
        prompt, response = encode_example(ByteTokenizer(), r["instruction"], "", r["output"])
        expected.append(prompt + response)
    assert column.flat.tolist() == [t for seq in expected for t in seq]  # end to end, nothing else
    assert ds.num_tokens == sum(len(s) - 1 for s in expected)
    # An item is built from the buffer, shifted by one, every call the same.
    assert ds[2]["input_ids"].tolist() == expected[2][:-1] and ds[2]["labels"][-1] == 256


def test_records_are_read_back_from_the_file_in_view_order(tmp_path: Path) -> None:
    records = [{"instruction": f"q{i}", "output": f"a{i}", "extra": i} for i in range(20)]
    path = write_jsonl(tmp_path / "d.jsonl", records)
    ds = InstructionDataset(path, ByteTokenizer(), max_length=1000)
    assert ds._records is None  # not kept in memory
    train, val = ds.split(0.25, seed=3)
    val_ids = [r["extra"] for r in val.records]
    assert len(val_ids) == 5 and val_ids == sorted(val_ids)  # file order kept
    assert ds.subset([7, 3]).records == [records[7], records[3]]
    assert sorted(r["extra"] for r in train.records + val.records) == list(range(20))
    assert val.locations[0] == f"{path}: line {val.records[0]['extra'] + 1}"
    for i in range(len(val)):  # the item and the record agree
        assert bytes(val[i]["input_ids"].tolist()).decode().count(val.records[i]["instruction"]) == 1


def test_records_refused_when_the_file_changed(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"instruction": f"q{i}", "output": "a"} for i in range(4)])
    ds = InstructionDataset(path, ByteTokenizer(), max_length=1000)
    write_jsonl(path, [{"instruction": "q0", "output": "a"}])
    with pytest.raises(DataError, match=r"d\.jsonl: changed since it was loaded"):
        ds.records


def test_preference_pairs_share_the_prompt_length(tmp_path: Path) -> None:
    records = [{"instruction": "pick", "chosen": "good", "rejected": "bad"},
               {"instruction": "same", "chosen": "x", "rejected": "x"}]
    ds = PreferenceDataset(write_jsonl(tmp_path / "p.jsonl", records), ByteTokenizer(), 1000, drop_identical=True)
    item = ds[0]
    prompt, chosen = encode_example(ByteTokenizer(), "pick", "", "good")
    assert item["chosen_input_ids"].tolist() == (prompt + chosen)[:-1]
    assert (item["chosen_labels"] == -100).sum() == len(prompt) - 1 == (item["rejected_labels"] == -100).sum()
    assert ds.dropped == 1 and ds.locations == [f"{tmp_path / 'p.jsonl'}: line 1"]


def test_bad_line_at_the_end_of_a_streamed_file_fails_the_load(tmp_path: Path) -> None:
    records = [{"instruction": f"q{i}", "output": "a"} for i in range(100)] + [{"instruction": "z"}]
    with pytest.raises(DataError, match=r"d\.jsonl: line 101: field 'output' is missing"):
        InstructionDataset(write_jsonl(tmp_path / "d.jsonl", records), ByteTokenizer(), max_length=1000)


MEMORY_PROBE = r"""
import json, os, resource, sys
from llm_core.data import InstructionDataset
from llm_core.tokenizer import load_tokenizer
tok = load_tokenizer(sys.argv[2]); tok.encode("warm up")
peak0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
ds = InstructionDataset(sys.argv[1], tok, max_length=512)
print(json.dumps({"peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - peak0, "n": len(ds)}))
"""


def test_big_jsonl_loads_within_four_times_its_size(tmp_path: Path) -> None:
    # Before packing, each example held two int64 tensors and its record: about 33x the file.
    base = json.loads((DATA_DIR / "instructions.json").read_text(encoding="utf-8"))
    path = tmp_path / "big.jsonl"
    with path.open("w", encoding="utf-8") as f:
        for i in range(40_000):
            record = dict(base[i % len(base)], instruction=f"{base[i % len(base)]['instruction']} #{i}")
            f.write(json.dumps(record) + "\n")
    size = path.stat().st_size
    out = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(path), str(ARITH_TOKENIZER)], check=True,
                         capture_output=True, text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": ""})
    result = json.loads(out.stdout)
    assert result["n"] == 40_000
    assert result["peak"] <= 4 * size, f"peak {result['peak'] / size:.1f}x the file"
