"""Reading the project's small files with one-line errors (UTF-8 text and JSON objects), and writing files
atomically.

Every user-facing file read (configs, manifests, tokenizer and adapter metadata, datasets, tokenizer
training text) goes through the two readers, so a missing, undecodable or malformed file is reported
the same way everywhere: one line naming the file and the problem, as the caller's error class.
Writes that matter go through `replace_atomic`: a temporary file, fsynced, renamed over the target, so a
crash leaves the old file or the new one, never half of one.
"""
from __future__ import annotations

import gzip
import json
import os
import zlib
from pathlib import Path
from typing import IO, Any, Callable

from .errors import ConfigError, DataError, WorkbenchError


def read_text_file(path: str | Path, error: type[WorkbenchError] = DataError, expected: str = "a text file",
                   missing: str = "file not found") -> str:
    """The UTF-8 text of `path` (gunzipped when it ends in .gz); `error(...)` with one line when it is missing,
    a folder, not gzip or not UTF-8."""
    path = Path(path)
    try:
        if path.suffix == ".gz":
            return gzip.decompress(path.read_bytes()).decode("utf-8")
        return path.read_text(encoding="utf-8")
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise error(f"{path}: not a valid gzip file ({exc})") from None
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text (bad byte at offset {exc.start})") from None
    except OSError as exc:
        raise _read_error(path, exc, error, expected, missing) from None


def open_binary(path: str | Path, error: type[WorkbenchError] = DataError, expected: str = "a file",
                missing: str = "file not found") -> IO[bytes]:
    """`path` opened for reading bytes (to stream a large file); the same one-line errors as read_text_file."""
    path = Path(path)
    try:
        return path.open("rb")
    except OSError as exc:
        raise _read_error(path, exc, error, expected, missing) from None


def _read_error(path: Path, exc: OSError, error: type[WorkbenchError], expected: str, missing: str) -> WorkbenchError:
    if isinstance(exc, FileNotFoundError):
        return error(f"{path}: {missing}")
    if isinstance(exc, IsADirectoryError):
        return error(f"{path}: is a directory, expected {expected}")
    return error(f"{path}: cannot read ({exc.strerror})")


def read_json_object(path: str | Path, error: type[WorkbenchError] = ConfigError, expected: str = "a JSON object",
                     missing: str = "file not found", invalid: str = "not valid JSON") -> dict[str, Any]:
    """The JSON object in `path`; `error(...)` with one line when the file is missing or unreadable, is not
    JSON (`invalid`, with the parser's position), or holds something other than an object (`expected`)."""
    path = Path(path)
    return parse_json_object(path, read_text_file(path, error, "a JSON file", missing), error, expected, invalid)


def parse_json_object(path: Path, text: str, error: type[WorkbenchError] = ConfigError,
                      expected: str = "a JSON object", invalid: str = "not valid JSON") -> dict[str, Any]:
    """The JSON object in `text`, read from `path` (named in the errors, as in `read_json_object`)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{path}: {invalid} ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    if not isinstance(data, dict):
        raise error(f"{path}: expected {expected}")
    return data


def fsync_dir(path: Path) -> None:
    """Make a folder's entries (a rename into it) durable; a no-op where folders can't be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Replace `path` with what `write(temporary_path)` writes, in one rename (file fsynced first, then the
    folder). The temporary file is removed if `write` fails."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_atomic(path: Path, text: str | bytes) -> None:
    """Replace `path` with `text` (UTF-8 when a str) in one rename, see `replace_atomic`."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    replace_atomic(path, lambda tmp: tmp.write_bytes(data))
