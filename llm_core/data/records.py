"""Loading dataset records from JSON or JSON Lines, validated before anything is used.

A dataset file is either one JSON document holding a list of objects (the Alpaca / LLMs-from-scratch
layout) or JSON Lines (https://jsonlines.org: one object per line, blank lines ignored). The format is
detected from the content (a `.jsonl` / `.ndjson` suffix forces JSON Lines), so users never pass a flag.

Every record is checked against a schema of required and optional fields BEFORE the list is returned:
a bad entry at the end of a 100k-line file fails the load up front, with one line naming the file, the
entry (0-based index in a JSON list) or line (1-based, as editors count) and the field. Extra fields are
allowed because real files carry them (e.g. the preference file's `output` next to `chosen`/`rejected`).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from ..errors import DataError
from ..io import read_text_file

JSONL_SUFFIXES = (".jsonl", ".ndjson")
# The name used in error messages for records handed over in memory instead of read from a file.
IN_MEMORY = "<records>"


def _type_name(tp: type | tuple[type, ...]) -> str:
    if isinstance(tp, tuple):
        return " or ".join(t.__name__ for t in tp)
    return tp.__name__


def _is_instance(value: Any, tp: type) -> bool:
    # JSON has no separate bool/int; Python's bool is an int subclass, so `true` would pass as a count.
    if tp in (int, float) and isinstance(value, bool):
        return False
    if tp is float:
        return isinstance(value, (int, float))
    return isinstance(value, tp)


def validate_record(
    record: Any, where: str, required: dict[str, type], optional: dict[str, type] | None = None
) -> dict[str, Any]:
    """Check one record against the schema; `where` is e.g. "data.json: entry 3". Returns the record.

    An optional field given as JSON `null` counts as absent (some exporters write `"input": null`).
    """
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected an object with fields {', '.join(required)}, got {type(record).__name__}")
    for field, tp in required.items():
        if field not in record:
            raise DataError(f"{where}: field {field!r} is missing")
        if not _is_instance(record[field], tp):
            raise DataError(
                f"{where}: field {field!r} must be {_type_name(tp)}, got {type(record[field]).__name__}"
            )
    for field, tp in (optional or {}).items():
        value = record.get(field)
        if value is not None and not _is_instance(value, tp):
            raise DataError(f"{where}: field {field!r} must be {_type_name(tp)}, got {type(value).__name__}")
    return record


def validate_records(
    records: Iterable[Any],
    required: dict[str, type],
    optional: dict[str, type] | None = None,
    source: str = IN_MEMORY,
) -> list[dict[str, Any]]:
    """Validate records given in memory (a list of dicts); errors name `source` and the entry index."""
    if isinstance(records, (str, bytes, dict)) or not isinstance(records, Iterable):
        raise DataError(f"{source}: expected a list of records, got {type(records).__name__}")
    out = [validate_record(r, f"{source}: entry {i}", required, optional) for i, r in enumerate(records)]
    if not out:
        raise DataError(f"{source}: no entries")
    return out


def _read_text(path: Path) -> str:
    return read_text_file(path, DataError, expected="a JSON or JSONL file")


def _parse_jsonl(path: Path, text: str) -> list[tuple[str, Any]]:
    """(where, value) per non-blank line; `where` names the 1-based line number."""
    parsed = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            parsed.append((f"{path}: line {lineno}", json.loads(line)))
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: line {lineno}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    return parsed


def _parse(path: Path, text: str) -> list[tuple[str, Any]]:
    if path.suffix.lower() in JSONL_SUFFIXES:
        return _parse_jsonl(path, text)
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        # Not one JSON document. If its first line is a JSON value on its own, it is JSON Lines (a
        # later line may still be broken: _parse_jsonl reports that line); otherwise it is just bad JSON.
        first = next(line for line in text.splitlines() if line.strip())
        try:
            json.loads(first)
        except json.JSONDecodeError:
            raise DataError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
        return _parse_jsonl(path, text)
    if not isinstance(document, list):
        raise DataError(
            f"{path}: top level is a JSON {type(document).__name__}, expected a list of objects (or JSON Lines)"
        )
    return [(f"{path}: entry {i}", value) for i, value in enumerate(document)]


def load_located_records(
    path: str | Path, required: dict[str, type], optional: dict[str, type] | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """Like `load_records`, with each record's location ("data.jsonl: line 7") for later error messages."""
    path = Path(path)
    text = _read_text(path)
    if not text.strip():
        raise DataError(f"{path}: empty file")
    parsed = _parse(path, text)
    if not parsed:
        raise DataError(f"{path}: no entries")
    return [(where, validate_record(value, where, required, optional)) for where, value in parsed]


def load_records(
    path: str | Path, required: dict[str, type], optional: dict[str, type] | None = None
) -> list[dict[str, Any]]:
    """Read a JSON list of objects or JSON Lines from `path` and validate every record.

    `required` / `optional` map field names to types (str, int, float, bool, list, dict). Raises DataError
    with one line naming the file, entry / line and field; nothing is returned unless every record is valid.
    """
    return [record for _, record in load_located_records(path, required, optional)]


def located_records(
    path_or_records: str | Path | Iterable[dict[str, Any]],
    required: dict[str, type],
    optional: dict[str, type] | None = None,
) -> tuple[list[tuple[str, dict[str, Any]]], str]:
    """([(location, record)], source name) from a file path or an in-memory list; datasets accept both."""
    if isinstance(path_or_records, (str, Path)):
        return load_located_records(path_or_records, required, optional), str(path_or_records)
    records = validate_records(path_or_records, required, optional)
    return [(f"{IN_MEMORY}: entry {i}", r) for i, r in enumerate(records)], IN_MEMORY
