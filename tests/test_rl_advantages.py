"""Group-relative advantages against the formulas written out element by element."""
from __future__ import annotations

import math

import pytest
import torch

from llm_core.errors import ConfigError
from llm_core.rl import group_advantages, zero_std_fraction

REWARDS = [[1.0, 0.0, 0.0, 1.0, 1.0], [0.2, 0.9, 0.4, 0.4, 0.1]]


def _mean(xs):
    return sum(xs) / len(xs)


def _sample_std(xs):
    m = _mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def test_std_scale_is_grpo() -> None:
    out = group_advantages(torch.tensor(REWARDS), "std", eps=1e-4)
    for row, got in zip(REWARDS, out.tolist()):
        expected = [(r - _mean(row)) / (_sample_std(row) + 1e-4) for r in row]
        assert got == pytest.approx(expected, rel=1e-5)


def test_none_scale_is_dr_grpo() -> None:
    out = group_advantages(torch.tensor(REWARDS), "none")
    for row, got in zip(REWARDS, out.tolist()):
        assert got == pytest.approx([r - _mean(row) for r in row], abs=1e-6)


def test_rloo_is_leave_one_out() -> None:
    out = group_advantages(torch.tensor(REWARDS), "rloo")
    for row, got in zip(REWARDS, out.tolist()):
        expected = [r - _mean(row[:i] + row[i + 1:]) for i, r in enumerate(row)]
        assert got == pytest.approx(expected, abs=1e-6)


def test_a_group_with_equal_rewards_has_no_signal() -> None:
    rewards = torch.tensor([[1.0, 1.0, 1.0], [0.0, 1.0, 0.0]])
    for scale in ("std", "none", "rloo"):
        assert group_advantages(rewards, scale)[0].abs().max() == 0
    assert zero_std_fraction(rewards) == 0.5


@pytest.mark.parametrize("rewards, scale, needle", [
    (torch.ones(3, 1), "std", "G >= 2"),
    (torch.ones(3), "std", "(prompts, G)"),
    (torch.ones(3, 2), "bogus", "scale must be one of"),
])
def test_bad_input_is_a_one_line_error(rewards, scale, needle) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        group_advantages(rewards, scale)
    assert needle in str(info.value) and "\n" not in str(info.value)
