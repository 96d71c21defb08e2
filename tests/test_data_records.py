"""JSON / JSON Lines record loading: format detection and one-line errors naming file, entry/line, field."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from llm_core.data.records import load_records, validate_records
from llm_core.errors import DataError

REQUIRED = {"instruction": str, "output": str}
OPTIONAL = {"input": str, "answer": int}


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_error(path: Path) -> str:
    with pytest.raises(DataError) as info:
        load_records(path, REQUIRED, OPTIONAL)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    return message


def test_json_list_and_jsonl_give_the_same_records(tmp_path: Path) -> None:
    records = [{"instruction": "a", "output": "b", "extra": 1}, {"instruction": "c", "input": "d", "output": "e"}]
    as_json = write(tmp_path, "d.json", json.dumps(records, indent=2))
    # JSON Lines detected from content (no .jsonl suffix), blank lines ignored.
    as_jsonl = write(tmp_path, "d.txt", json.dumps(records[0]) + "\n\n" + json.dumps(records[1]) + "\n\n")
    assert load_records(as_json, REQUIRED, OPTIONAL) == records
    assert load_records(as_jsonl, REQUIRED, OPTIONAL) == records


def test_single_line_jsonl_with_suffix(tmp_path: Path) -> None:
    path = write(tmp_path, "one.jsonl", '{"instruction": "a", "output": "b"}\n')
    assert load_records(path, REQUIRED) == [{"instruction": "a", "output": "b"}]


def test_optional_null_counts_as_absent(tmp_path: Path) -> None:
    path = write(tmp_path, "d.json", '[{"instruction": "a", "output": "b", "input": null}]')
    assert load_records(path, REQUIRED, OPTIONAL)[0]["input"] is None


def test_not_json(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, "d.json", "instruction: a\noutput: b\n"))
    assert "not valid JSON" in message and "line 1" in message


def test_broken_jsonl_line_named(tmp_path: Path) -> None:
    path = write(tmp_path, "d.jsonl", '{"instruction": "a", "output": "b"}\n\n{"instruction": "c", "output": \n')
    assert "line 3" in load_error(path)


def test_broken_jsonl_detected_without_suffix(tmp_path: Path) -> None:
    path = write(tmp_path, "d.json", '{"instruction": "a", "output": "b"}\n{"instruction": oops}\n')
    message = load_error(path)
    assert "line 2" in message and "not valid JSON" in message


def test_top_level_not_a_list(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, "d.json", '{\n  "instruction": "a",\n  "output": "b"\n}\n'))
    assert "top level" in message and "dict" in message


def test_entry_not_an_object(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, "d.json", '[{"instruction": "a", "output": "b"}, ["x"]]'))
    assert "entry 1" in message and "got list" in message


def test_jsonl_line_not_an_object(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, "d.jsonl", '{"instruction": "a", "output": "b"}\n"text"\n'))
    assert "line 2" in message and "got str" in message


def test_missing_field(tmp_path: Path) -> None:
    records = [{"instruction": "a", "output": "b"}, {"instruction": "a", "output": "b"}, {"instruction": "c"}]
    message = load_error(write(tmp_path, "d.json", json.dumps(records)))
    assert "entry 2" in message and "'output'" in message and "missing" in message


def test_missing_field_jsonl_names_line(tmp_path: Path) -> None:
    path = write(tmp_path, "d.jsonl", '\n{"instruction": "a", "output": "b"}\n{"output": "b"}\n')
    message = load_error(path)
    assert "line 3" in message and "'instruction'" in message


def test_wrong_type(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, "d.json", '[{"instruction": "a", "output": 7}]'))
    assert "entry 0" in message and "'output'" in message and "must be str, got int" in message


def test_wrong_type_optional_and_bool_is_not_int(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, "d.json", '[{"instruction": "a", "output": "b", "answer": true}]'))
    assert "'answer'" in message and "got bool" in message


def test_empty_file(tmp_path: Path) -> None:
    assert "empty file" in load_error(write(tmp_path, "d.json", "  \n\n"))


def test_no_entries(tmp_path: Path) -> None:
    assert "no entries" in load_error(write(tmp_path, "d.json", "[]"))


def test_missing_file_and_bad_encoding(tmp_path: Path) -> None:
    assert "not found" in load_error(tmp_path / "absent.json")
    bad = tmp_path / "latin1.json"
    bad.write_bytes('[{"instruction": "caf\xe9", "output": "b"}]'.encode("latin-1"))
    assert "UTF-8" in load_error(bad)


def test_nothing_half_loaded(tmp_path: Path) -> None:
    # The bad record is the LAST one: the load still fails as a whole (no partial list escapes).
    records = [{"instruction": str(i), "output": "x"} for i in range(50)] + [{"instruction": "z", "output": None}]
    path = write(tmp_path, "d.json", json.dumps(records))
    result = None
    with pytest.raises(DataError, match="entry 50"):
        result = load_records(path, REQUIRED)
    assert result is None


def test_in_memory_records() -> None:
    with pytest.raises(DataError, match=r"<records>: entry 1: field 'output' is missing"):
        validate_records([{"instruction": "a", "output": "b"}, {"instruction": "a"}], REQUIRED)
    with pytest.raises(DataError, match="no entries"):
        validate_records([], REQUIRED)


def test_shared_alpaca_files_load_unchanged_and_as_jsonl(shared_data: Path, tmp_path: Path) -> None:
    source = shared_data / "instruction-data.json"
    raw = json.loads(source.read_text(encoding="utf-8"))
    records = load_records(source, REQUIRED, OPTIONAL)
    assert records == raw and len(records) == 1100
    converted = tmp_path / "instruction-data.jsonl"
    converted.write_text("".join(json.dumps(r) + "\n" for r in raw), encoding="utf-8")
    assert load_records(converted, REQUIRED, OPTIONAL) == raw
