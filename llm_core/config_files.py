"""Config files in JSON or YAML: the object of keys a `--config` file sets, with one-line errors.

The format is chosen by suffix (`.json`; `.yaml` / `.yml`), else by content (a file starting with `{` is
JSON, anything else YAML). JSON goes through `llm_core.io.parse_json_object`. YAML (https://yaml.org/spec/1.2.2/)
is parsed by PyYAML's safe loader (plain data only: a tag naming a Python object is refused, nothing is
ever instantiated) with two changes for configs:

- floats written without a dot (`peak_lr: 3e-4`) are floats, as in YAML 1.2; PyYAML follows YAML 1.1,
  where they are strings, and a learning rate would then fail its type check for no visible reason;
- a key given twice in one mapping is an error naming both lines (PyYAML would keep the last silently).

Unknown keys and wrong types are not checked here: the dataclass loaders (`llm_core.config.from_dict`)
refuse them, whichever format the file was in.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .errors import ConfigError, WorkbenchError
from .io import parse_json_object, read_text_file

YAML_SUFFIXES = (".yaml", ".yml")


def config_format(path: str | Path, text: str) -> str:
    """"json" or "yaml" for the file at `path` holding `text` (by suffix, else by the first character)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".json":
        return "json"
    if suffix in YAML_SUFFIXES:
        return "yaml"
    return "json" if text.lstrip().startswith("{") else "yaml"


def read_config_file(path: str | Path, error: type[WorkbenchError] = ConfigError,
                     expected: str = "a mapping of config keys") -> dict[str, Any]:
    """The mapping of keys in the JSON or YAML file `path`; `error(...)` with one line when it is missing,
    unreadable, not valid JSON / YAML (with the line), or not a mapping (`expected`)."""
    path = Path(path)
    text = read_text_file(path, error, "a JSON or YAML config file")
    if config_format(path, text) == "json":
        return parse_json_object(path, text, error, expected=expected)
    data = _load_yaml(path, text, error)
    if not isinstance(data, dict):
        raise error(f"{path}: expected {expected}, got {'an empty file' if data is None else type(data).__name__}")
    bad = next((k for k in data if not isinstance(k, str)), None)
    if bad is not None:
        raise error(f"{path}: key {bad!r} is not a string")
    return data


def _load_yaml(path: Path, text: str, error: type[WorkbenchError]) -> Any:
    import yaml  # imported here: only YAML configs need it

    try:
        return yaml.load(text, Loader=_config_loader())  # noqa: S506 (a SafeLoader subclass)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        what = " ".join(str(exc.problem or exc.context or "invalid").split())
        raise error(f"{path}: not valid YAML{where}: {what}") from None
    except yaml.YAMLError as exc:  # no position (e.g. a reader error on a control character)
        raise error(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None


# YAML 1.2's float forms that YAML 1.1 (PyYAML) reads as strings: an exponent without a dot ("3e-4", "1E5").
_EXPONENT_FLOAT = re.compile(r"^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$")
_LOADER: type | None = None


def _config_loader() -> type:
    """PyYAML's SafeLoader with YAML 1.2 exponent floats and duplicate keys refused (built once)."""
    global _LOADER
    if _LOADER is not None:
        return _LOADER
    import yaml

    class ConfigLoader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if isinstance(key, (str, int, float, bool)) and key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} given twice (first at line {seen[key].line + 1})",
                        key_node.start_mark)
                seen[key] = key_node.start_mark
            return super().construct_mapping(node, deep=deep)

    # add_implicit_resolver on the subclass copies the resolver table first: yaml.SafeLoader is unchanged.
    ConfigLoader.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT_FLOAT, list("-+0123456789"))
    _LOADER = ConfigLoader
    return ConfigLoader
