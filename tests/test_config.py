"""Config helpers: typed from_dict / overrides, and errors that name their field."""
from __future__ import annotations

import pytest

from llm_core.config import parse_overrides
from llm_core.errors import ConfigError
from llm_core.training import TrainConfig


def test_a_validation_error_names_its_field() -> None:
    with pytest.raises(ConfigError) as info:
        TrainConfig(peak_lr=-1.0)
    assert info.value.field == "peak_lr" and "TrainConfig.peak_lr" in str(info.value)


def test_a_type_error_names_its_field() -> None:
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict({"max_steps": "ten"})
    assert info.value.field == "max_steps"


def test_an_unknown_key_has_no_field_but_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError) as info:
        parse_overrides(TrainConfig, ["nope=1"])
    assert info.value.field is None and "valid keys" in str(info.value)


@pytest.mark.parametrize("name, value", [("schedule", "cosin"), ("rl_prompt", "both"), ("advantage", "ppo")])
def test_a_choice_outside_its_literal_is_refused_from_python_too(name, value) -> None:
    with pytest.raises(ConfigError) as info:
        TrainConfig(**{name: value})
    assert info.value.field == name and f"TrainConfig.{name}: must be one of" in str(info.value)
    assert f"got {value!r}" in str(info.value)
