"""`SamplingParams`: how to decode, in one validated value (temperature, top-k, top-p, seed, stops, window).

Every public method of the `Engine` takes one of these instead of repeating the keyword arguments, and the
values are checked once, here, with a one-line GenerationError naming the field. What depends on the model
(top-k above the vocabulary is clamped; a window at most the context length) is checked by the Engine.
Decoding rules themselves are in `sampling.py`; the window rule in `engine.py`.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Iterable

from ..errors import GenerationError


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.0  # 0 = greedy
    top_k: int | None = None  # keep the k most likely tokens (clamped to the vocabulary)
    top_p: float | None = None  # nucleus: keep tokens up to this probability mass, in (0, 1]
    seed: int | None = None  # None: draw a seed from torch's global RNG (sample i of a batch: derive_seed)
    stop: tuple[str, ...] = ()  # text never emitted past any of these strings
    stop_ids: tuple[int, ...] | None = None  # ids that end generation; None = the tokenizer's end-of-text
    window: int | None = None  # attention window in tokens; None = the model's context length
    truncate: bool = False  # allow a prompt longer than the window (its last tokens are kept)

    def __post_init__(self) -> None:
        def fail(name: str, why: str) -> None:
            raise GenerationError(f"{name}: {why}, got {getattr(self, name)!r}")

        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, (int, float)) or math.isnan(t) or t < 0:
            fail("temperature", "must be >= 0 (0 = greedy)")
        if self.top_p is not None and not (
            isinstance(self.top_p, (int, float)) and not isinstance(self.top_p, bool) and 0.0 < self.top_p <= 1.0
        ):
            fail("top_p", "must be in (0, 1]")
        if self.top_k is not None and not (_is_int(self.top_k) and self.top_k >= 1):
            fail("top_k", "must be a positive integer")
        if self.seed is not None and not _is_int(self.seed):
            fail("seed", "must be an integer or None")
        if self.window is not None and not (_is_int(self.window) and self.window >= 1):
            fail("window", "must be a positive integer or None")
        if not isinstance(self.truncate, bool):
            fail("truncate", "must be true or false")
        # Sequences become tuples: the value stays hashable and nothing can change it after validation.
        stop = (self.stop,) if isinstance(self.stop, str) else self.stop
        if not isinstance(stop, Iterable) or not all(isinstance(s, str) for s in stop):
            fail("stop", "must be a sequence of strings")
        object.__setattr__(self, "stop", tuple(stop))
        if self.stop_ids is not None:
            if isinstance(self.stop_ids, (str, bytes)) or not isinstance(self.stop_ids, Iterable):
                fail("stop_ids", "must be a sequence of token ids")
            ids = tuple(self.stop_ids)
            if not all(_is_int(i) and i >= 0 for i in ids):
                fail("stop_ids", "must be non-negative integers")
            object.__setattr__(self, "stop_ids", ids)

    def replace(self, **changes: Any) -> "SamplingParams":
        """A validated copy with `changes` applied."""
        return dataclasses.replace(self, **changes)

    def top_k_for(self, vocab_size: int) -> int | None:
        """top_k clamped to the vocabulary (more than the vocabulary means no top-k filter)."""
        return None if self.top_k is None else min(self.top_k, vocab_size)


GREEDY = SamplingParams()
