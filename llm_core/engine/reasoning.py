"""Inference-time scaling: chain-of-thought prompting and majority vote (self-consistency) with early stop.

- Chain of thought (Wei et al., "Chain-of-Thought Prompting Elicits Reasoning in Large Language Models",
  2022): the prompt asks the model to work step by step; the response is split into the reasoning and the
  final answer, which an extractor reads.
- Self-consistency (Wang et al., "Self-Consistency Improves Chain of Thought Reasoning in Language Models",
  2023): sample N reasoning paths at temperature > 0, extract each final answer and return the most common.
- Early stop (in the spirit of adaptive-consistency, Aggarwal et al., 2023, with an exact rule): once the
  leading answer has more votes than the runner-up plus every sample still running, no outcome of those
  samples can change the winner, so they are stopped and counted as saved.

The vote bookkeeping is independent of the model: `run_vote` consumes completed samples from any source
(the Engine's batched decoder, or a fake sampler in tests).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Iterable, Iterator

Extractor = Callable[[str], Any]


def default_extractor(text: str) -> int | None:
    """The default experiment's answer format: "The answer is N.", falling back to the last number."""
    from ..experiment import extract_answer

    return extract_answer(text)


@dataclass
class Sample:
    index: int  # which of the N samples (its seed is derive_seed(seed, index))
    text: str
    answer: Hashable | None
    tokens: int = 0


@dataclass
class VoteResult:
    answer: Hashable | None  # the winner; None when nothing was extracted or the vote is tied
    tally: dict[Hashable, int]  # answer -> votes, most votes first
    samples: list[Sample]  # the completed samples, by index
    tie: bool = False
    tied: list[Hashable] = field(default_factory=list)  # all answers sharing the top count when tie
    no_answer_share: float = 0.0  # share of completed samples the extractor found no answer in
    saved: int = 0  # samples stopped early because the winner was already decided
    n: int = 0  # samples requested
    tokens: int = 0  # tokens generated across all samples

    @property
    def winners(self) -> list[Hashable]:
        """The answers with the top count (one unless tied; empty if nothing was extracted)."""
        return self.tied if self.tie else ([] if self.answer is None else [self.answer])


def decided(counts: Counter, remaining: int) -> bool:
    """True when the leader beats the runner-up even if every remaining sample votes for the runner-up."""
    top = counts.most_common(2)
    if not top:
        return False
    first = top[0][1]
    second = top[1][1] if len(top) > 1 else 0
    return first > second + remaining


def run_vote(
    batches: Iterable[list[tuple[int, str, int]]],
    n: int,
    extractor: Extractor | None = None,
    early_stop: bool = True,
) -> VoteResult:
    """Tally the answers of samples as they complete.

    `batches` yields lists of completed samples (index, text, tokens generated); the samples of one list
    finished together (one decoding step), so they are all counted before the early-stop check. When early
    stop fires the iterator is closed, which stops the decoder behind it.
    """
    extractor = extractor or default_extractor
    counts: Counter = Counter()
    samples: list[Sample] = []
    iterator: Iterator = iter(batches)
    try:
        for batch in iterator:
            for index, text, tokens in batch:
                answer = extractor(text)
                samples.append(Sample(index, text, answer, tokens))
                if answer is not None:
                    counts[answer] += 1
            if early_stop and len(samples) < n and decided(counts, n - len(samples)):
                break
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()
    return tally_result(samples, n, counts)


def tally_result(samples: list[Sample], n: int, counts: Counter | None = None) -> VoteResult:
    if counts is None:
        counts = Counter(s.answer for s in samples if s.answer is not None)
    ranked = counts.most_common()
    top = ranked[0][1] if ranked else 0
    tied = [a for a, c in ranked if c == top] if ranked else []
    tie = len(tied) > 1
    return VoteResult(
        answer=None if tie or not ranked else ranked[0][0],
        tally=dict(ranked),
        samples=sorted(samples, key=lambda s: s.index),
        tie=tie,
        tied=tied if tie else [],
        no_answer_share=(sum(s.answer is None for s in samples) / len(samples)) if samples else 0.0,
        saved=n - len(samples),
        n=n,
        tokens=sum(s.tokens for s in samples),
    )


@dataclass
class ReasonedAnswer:
    """A response split into its reasoning and its final answer."""

    text: str  # the whole response
    reasoning: str  # everything before the answer sentence
    answer_text: str  # the answer sentence ("The answer is 42."), "" if the model never wrote one
    answer: Hashable | None  # what the extractor read (falls back to the last number)
    tokens: int = 0


def split_answer(text: str, extractor: Extractor | None = None, tokens: int = 0) -> ReasonedAnswer:
    """Split a chain-of-thought response with the default experiment's `split_reasoning`."""
    from ..experiment import split_reasoning

    reasoning, answer_text = split_reasoning(text)
    return ReasonedAnswer(text, reasoning, answer_text, (extractor or default_extractor)(text), tokens)


def experiment_prompt(question: str, mode: str = "cot") -> str:
    """The default experiment's prompt: the question, then the chain-of-thought or direct cue (Alpaca format)."""
    from ..experiment import make_prompt

    return make_prompt(question, mode)  # type: ignore[arg-type]
