"""Verifiable rewards for the default experiment, weighted sums, callables and the reward spec."""
from __future__ import annotations

import pytest

from llm_core.errors import ConfigError
from llm_core.experiment.arithmetic import Problem, worked_solution
from llm_core.rl import AccuracyReward, FormatReward, as_reward, parse_reward

PROBLEM = Problem((63, 43, 61), ("+", "-"), "Ruby has 63 cards. She gets 43 more, then loses 61. How many are left?")
WORKED = worked_solution(PROBLEM)
EXAMPLE = {"answer": 45}


def test_accuracy_reads_the_answer() -> None:
    reward = AccuracyReward()
    assert reward("", WORKED, EXAMPLE) == 1.0
    assert reward("", "The answer is 44.", EXAMPLE) == 0.0
    assert reward("", "I think 45", EXAMPLE) == 1.0  # no answer line: the last number
    with pytest.raises(ConfigError, match="no 'answer'"):
        reward("", WORKED, {})


def test_format_rewards_the_answer_line_and_the_worked_shape() -> None:
    reward = FormatReward()
    assert reward("", WORKED, EXAMPLE) == 1.0
    assert reward("", "The answer is 45.", EXAMPLE) == 0.5  # answer line, no working
    assert reward("", "45", EXAMPLE) == 0.0
    assert reward("", WORKED + "\nRuby has", EXAMPLE) == 0.0  # does not end with the answer line


def test_spec_weights_and_mixes() -> None:
    reward = parse_reward("accuracy,format:0.5")
    assert reward("", "The answer is 45.", EXAMPLE) == pytest.approx(1.0 + 0.5 * 0.5)
    assert reward.parts("", WORKED, EXAMPLE) == {"accuracy": 1.0, "format": 1.0}
    assert reward.name == "accuracy,format:0.5"


def test_a_plain_function_is_a_reward() -> None:
    def shorter_is_better(prompt, completion, example):
        return -len(completion)

    reward = as_reward(shorter_is_better)
    assert reward.name == "shorter_is_better" and reward("", "abc", {}) == -3.0


@pytest.mark.parametrize("spec, needle", [
    ("accuracy,bogus", "unknown reward 'bogus'"),
    ("accuracy:x", "not a number"),
    ("accuracy,,format", "empty term"),
    ("model:runs/rm", "needs a reward-model loader"),
])
def test_bad_reward_specs_are_one_line_errors(spec, needle) -> None:
    with pytest.raises(ConfigError) as info:
        parse_reward(spec)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_mix_combines_names_rewards_and_callables() -> None:
    from llm_core.rl import mix

    reward = mix(("accuracy", 1.0), (lambda p, c, e: 2.0, 0.25))
    assert reward("", "The answer is 45.", EXAMPLE) == pytest.approx(1.0 + 0.5)
    with pytest.raises(ConfigError, match="unknown reward 'nope'"):
        mix(("nope", 1.0))
