"""lr_at against the issue's formula written out independently, and TrainConfig validation."""
from __future__ import annotations

import math

import pytest

from llm_core import ConfigError
from llm_core.training import TrainConfig, lr_at


def reference_cosine(step: int, initial: float, peak: float, floor: float, warmup: int, total: int) -> float:
    if step < warmup:
        return initial + step * (peak - initial) / warmup
    return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))


CFG = dict(initial_lr=1e-5, peak_lr=1e-3, min_lr=1e-4, warmup_steps=10, max_steps=110)


def test_warmup_start_and_end() -> None:
    cfg = TrainConfig(**CFG)
    assert lr_at(0, cfg) == pytest.approx(1e-5)  # the very first step uses initial_lr
    assert lr_at(5, cfg) == pytest.approx(1e-5 + 5 * (1e-3 - 1e-5) / 10)
    assert lr_at(10, cfg) == pytest.approx(1e-3)  # first step after warmup = peak


def test_cosine_midpoint_and_end() -> None:
    cfg = TrainConfig(**CFG)
    assert lr_at(60, cfg) == pytest.approx((1e-3 + 1e-4) / 2)  # halfway through decay
    assert lr_at(110, cfg) == pytest.approx(1e-4)  # T: the floor
    assert lr_at(109, cfg) > 1e-4
    for step in range(0, 111, 7):
        assert lr_at(step, cfg) == pytest.approx(reference_cosine(step, 1e-5, 1e-3, 1e-4, 10, 110))


def test_warmup_fraction_used_when_steps_unset() -> None:
    cfg = TrainConfig(**{**CFG, "warmup_steps": None, "warmup_fraction": 0.1, "max_steps": 200})
    assert cfg.warmup == 20
    assert lr_at(20, cfg) == pytest.approx(1e-3)
    assert TrainConfig(**{**CFG, "warmup_steps": -1}).warmup_steps is None


def test_linear_and_constant() -> None:
    lin = TrainConfig(**CFG, schedule="linear")
    assert lr_at(60, lin) == pytest.approx(1e-4 + (1e-3 - 1e-4) * 0.5)
    assert lr_at(110, lin) == pytest.approx(1e-4)
    const = TrainConfig(**CFG, schedule="constant")
    assert lr_at(3, const) < 1e-3 and lr_at(50, const) == lr_at(109, const) == 1e-3


@pytest.mark.parametrize(
    "pairs, field",
    [(["max_steps=0"], "max_steps"), (["min_lr=1"], "min_lr"), (["warmup_steps=5000"], "warmup_steps"),
     (["schedule=step"], "schedule"), (["max_norm=-1"], "max_norm"), (["bogus=1"], "bogus")],
)
def test_bad_values_are_one_line_errors(pairs: list[str], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        TrainConfig().with_overrides(pairs)
    assert field in str(info.value) and "\n" not in str(info.value)


def test_overrides_parse_types() -> None:
    cfg = TrainConfig().with_overrides(["max_steps=50", "peak_lr=3e-4", "max_norm=none", "bf16=false"])
    assert (cfg.max_steps, cfg.peak_lr, cfg.max_norm, cfg.bf16) == (50, 3e-4, None, False)
