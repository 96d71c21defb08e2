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
from typing import IO, Any, Iterable, Iterator

from ..errors import DataError
from ..io import open_binary, read_text_file

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


def _open_binary(path: Path) -> IO[bytes]:
    return open_binary(path, DataError, expected="a JSON or JSONL file")


def _jsonl_lines(path: Path, lines: Iterable[bytes]) -> Iterator[tuple[int, Any]]:
    """(1-based line number, parsed value) per non-blank line, decoding each line as UTF-8 on its own."""
    offset = 0
    for lineno, raw in enumerate(lines, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}: not UTF-8 text (bad byte at offset {offset + exc.start})") from None
        offset += len(raw)
        if not line.strip():
            continue
        try:
            yield lineno, json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: line {lineno}: not valid JSON ({exc.msg} at column {exc.colno})") from None


def _first_content_byte(path: Path) -> tuple[bytes, bytes]:
    """(first non-whitespace byte or b"", first non-blank line) without reading the whole file."""
    with _open_binary(path) as f:
        for raw in f:
            stripped = raw.strip()
            if stripped:
                return stripped[:1], raw
    return b"", b""


def _parses(line: bytes) -> bool:
    try:
        json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    return True


class RecordStream:
    """Validated records of a JSON / JSONL file (or an in-memory list), one at a time.

    Iterating yields (number, record): number is the 1-based line of a JSON Lines file, else the 0-based
    entry index. JSON Lines are read line by line, so a large file is never held whole in memory (a JSON
    document has to be parsed whole; its entries are released as they are handed out). Every record is
    validated as it is reached, and the stream raises DataError at the first bad one, so a caller that
    consumes it fully has either all records or an error. Each iteration reads the file again.
    """

    def __init__(self, path_or_records: str | Path | Iterable[dict[str, Any]], required: dict[str, type],
                 optional: dict[str, type] | None = None) -> None:
        self.required, self.optional = required, optional
        if isinstance(path_or_records, (str, Path)):
            self.path: Path | None = Path(path_or_records)
            self.source = str(path_or_records)
            self._records = None
        else:
            self.path, self.source = None, IN_MEMORY
            if isinstance(path_or_records, (str, bytes, dict)) or not isinstance(path_or_records, Iterable):
                raise DataError(f"{IN_MEMORY}: expected a list of records, got {type(path_or_records).__name__}")
            self._records = path_or_records
        self.kind = "entry"  # becomes "line" once a file turns out to be JSON Lines

    def where(self, number: int) -> str:
        return f"{self.source}: {self.kind} {number}"

    def _values(self) -> Iterator[tuple[int, Any]]:
        if self.path is None:
            yield from enumerate(self._records)
            return
        path = self.path
        first, first_line = _first_content_byte(path)
        if not first:
            _read_text(path)  # a missing / non-UTF-8 file is named as such before "empty"
            raise DataError(f"{path}: empty file")
        # A list, or a first line that is not a JSON value on its own (a pretty-printed or broken document):
        # one JSON document. Otherwise, or when the document turns out to be JSON Lines, line by line.
        if path.suffix.lower() not in JSONL_SUFFIXES and (first == b"[" or not _parses(first_line)):
            document = self._document(path, first_line)
            if document is not None:
                for i in range(len(document)):
                    value, document[i] = document[i], None  # let each entry go once it is handed out
                    yield i, value
                return
        self.kind = "line"
        with _open_binary(path) as f:
            yield from _jsonl_lines(path, f)

    @staticmethod
    def _document(path: Path, first_line: bytes) -> list[Any] | None:
        """The file's JSON list; None when it is not one document but its first line is a JSON value (JSON
        Lines: a later line is broken, or the lines are lists; the line reader names the line)."""
        try:
            document = json.loads(_read_text(path))
        except json.JSONDecodeError as exc:
            if _parses(first_line):
                return None
            raise DataError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
        if not isinstance(document, list):
            raise DataError(
                f"{path}: top level is a JSON {type(document).__name__}, expected a list of objects (or JSON Lines)"
            )
        return document

    def __iter__(self) -> Iterator[tuple[int, dict[str, Any]]]:
        count = 0
        for number, value in self._values():
            count += 1
            yield number, validate_record(value, self.where(number), self.required, self.optional)
        if count == 0:
            raise DataError(f"{self.source}: no entries")


def load_located_records(
    path: str | Path, required: dict[str, type], optional: dict[str, type] | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """Like `load_records`, with each record's location ("data.jsonl: line 7") for later error messages."""
    stream = RecordStream(Path(path), required, optional)
    return [(stream.where(number), record) for number, record in stream]


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
