"""Typed dataclass configs: strict construction from dicts, `key=value` overrides, JSON round trips.

Every config in llm_core is a dataclass validated in `__post_init__`. These helpers add what the CLI and
run folders need: unknown keys are errors, values given as strings (`--set lr=3e-4`) are parsed to the
field's type, a config serialises to plain JSON, and each field can carry a one-line help in its metadata
(`setting(default, help)`) that `describe_fields` lists with the field's type and default.
"""
from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from .errors import ConfigError
from .io import read_json_object

T = TypeVar("T")
HELP = "help"  # the dataclass field metadata key holding a field's one-line help


def setting(default: Any, help: str) -> Any:
    """A dataclass field with default `default` (immutable) and its one-line `help` in the metadata."""
    return dataclasses.field(default=default, metadata={HELP: help})


@dataclasses.dataclass(frozen=True)
class FieldInfo:
    """One config key as the CLI lists it: name, type (as `--set` reads it), default, help."""

    name: str
    type: str
    default: Any
    help: str


def type_name(tp: Any) -> str:
    """A field type as a user writes its values: 'int', 'float or none', 'cosine|linear|constant'."""
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return "|".join(map(str, typing.get_args(tp)))
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        names = [type_name(a) for a in args if a is not type(None)]
        return " or ".join(names + (["none"] if type(None) in args else []))
    if origin in (list, tuple):
        (inner, *_) = typing.get_args(tp) or (str,)
        return f"comma-separated {type_name(inner)}s"
    return getattr(tp, "__name__", str(tp))


def describe_fields(cls: type) -> list[FieldInfo]:
    """Every field of dataclass `cls` in declaration order, with the help from its metadata ("" if none)."""
    types_ = _field_types(cls)
    out = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:  # a required field
            default = None
        out.append(FieldInfo(f.name, type_name(types_[f.name]), default, f.metadata.get(HELP, "")))
    return out


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _parse_scalar(text: str, tp: Any, where: str) -> Any:
    """Parse a command-line string into the type `tp` (handles Optional/Union, bool, int, float, str)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if text.lower() in ("none", "null", ""):
            return None
        for a in args:
            try:
                return _parse_scalar(text, a, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: cannot parse {text!r} as {tp}")
    if origin is typing.Literal:
        choices = typing.get_args(tp)
        if text in choices:
            return text
        raise ConfigError(f"{where}: {text!r} is not one of {', '.join(map(str, choices))}")
    if origin in (list, tuple):
        (inner, *_) = typing.get_args(tp) or (str,)
        parts = [p.strip() for p in text.split(",") if p.strip()]
        return [_parse_scalar(p, inner, where) for p in parts]
    if tp is bool:
        low = text.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{where}: {text!r} is not a boolean (use true/false)")
    if tp is int:
        try:
            return int(text)
        except ValueError:
            try:
                f = float(text)
            except ValueError:
                raise ConfigError(f"{where}: {text!r} is not an integer") from None
            if f.is_integer():
                return int(f)
            raise ConfigError(f"{where}: {text!r} is not an integer") from None
    if tp is float:
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"{where}: {text!r} is not a number") from None
    if tp is str or tp is Path:
        return tp(text)
    raise ConfigError(f"{where}: cannot parse {text!r} as {tp}")


def _field_of(where: str) -> str | None:
    """'TrainConfig.peak_lr' -> 'peak_lr' (the field a type error is about), or None."""
    return where.rsplit(".", 1)[1] if "." in where else None


def _check_type(value: Any, tp: Any, where: str) -> Any:
    """Accept JSON values of the right type (ints for floats are fine); raise ConfigError otherwise."""
    try:
        return _check_type_inner(value, tp, where)
    except ConfigError as exc:
        if exc.field is None:
            exc.field = _field_of(where)
        raise


def _check_type_inner(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(tp):
            return None
        for a in typing.get_args(tp):
            if a is type(None):
                continue
            try:
                return _check_type(value, a, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: {value!r} is not of type {tp}")
    if origin is typing.Literal:
        if value in typing.get_args(tp):
            return value
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(str, typing.get_args(tp)))}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (inner, *_) = typing.get_args(tp) or (Any,)
        return [_check_type(v, inner, where) for v in value] if inner is not Any else list(value)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if isinstance(value, dict):
            return from_dict(tp, value, where=where)
        raise ConfigError(f"{where}: expected an object, got {value!r}")
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: {value!r} is not a boolean")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: {value!r} is not an integer")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where}: {value!r} is not a number")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: {value!r} is not a string")
    return value


def from_dict(cls: type[T], data: dict[str, Any], where: str | None = None) -> T:
    """Build dataclass `cls` from `data`; unknown keys and wrong types raise ConfigError."""
    where = where or cls.__name__
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected an object, got {type(data).__name__}")
    types_ = _field_types(cls)
    unknown = sorted(set(data) - set(types_))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {unknown[0]!r} (valid keys: {', '.join(sorted(types_))})"
        )
    kwargs = {k: _check_type(v, types_[k], f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:  # e.g. a required field missing
        raise ConfigError(f"{where}: {exc}") from None


def parse_overrides(cls: type, pairs: list[str], where: str = "--set") -> dict[str, Any]:
    """Turn ['lr=3e-4', 'max_steps=100'] into typed values for the fields of `cls`."""
    types_ = _field_types(cls)
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"{where}: {pair!r} is not of the form key=value")
        key, text = pair.split("=", 1)
        key = key.strip()
        if key not in types_:
            raise ConfigError(
                f"{where}: unknown key {key!r} for {cls.__name__} (valid keys: {', '.join(sorted(types_))})"
            )
        out[key] = _parse_scalar(text.strip(), types_[key], f"{where} {key}")
    return out


def replace(config: T, **changes: Any) -> T:
    """dataclasses.replace that re-runs validation and reports unknown keys as ConfigError."""
    return from_dict(type(config), {**to_dict(config), **changes})


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def save_json(config: Any, path: str | Path) -> None:
    Path(path).write_text(json.dumps(to_dict(config), indent=2, sort_keys=True) + "\n")


def load_json(cls: type[T], path: str | Path) -> T:
    return from_dict(cls, read_json_object(path, ConfigError), where=str(path))
