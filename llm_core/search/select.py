"""Selecting among sampled chains of thought with a scorer: best-of-N and the weighted majority vote.

- Best-of-N (verifier-guided selection; Cobbe et al., 2021, "Training Verifiers to Solve Math Word
  Problems", arXiv:2110.14168): sample N solutions in one batch, score each, keep the highest-scoring one.
- Weighted majority vote (Li et al., 2023, "Making Language Models Better Reasoners with Step-Aware
  Verifier" (DIVERSE), arXiv:2206.02336; Uesato et al., 2022): each sample's answer gets its score as its
  vote instead of 1; with equal weights it is exactly self-consistency's majority vote.

A scorer is any callable `(question, completion) -> float`, an `llm_core.rl.rewards.Reward` (called with
the example `{"question": question}`), or a name: "verifier" is the default experiment's process verifier
(`llm_core.experiment.verifier`: the share of worked steps that re-check), and "model:PATH" is a learned
reward model (`workbench reward-model`), reading the question's chain-of-thought prompt and the completion.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Sequence

from ..engine import Engine, SamplingParams
from ..engine.reasoning import Extractor, Sample, VoteResult, default_extractor
from ..errors import GenerationError

Scorer = Callable[[str, str], float]
SCORERS = ("verifier",)


def verifier_score(question: str, completion: str) -> float:
    """The process verifier's share of passed checks (0 when nothing is worked)."""
    from ..experiment.verifier import verify

    return verify(completion, question).score


def resolve_scorer(scorer: Any) -> Scorer:
    """A scorer from a name ("verifier"), a Reward, or a callable `(question, completion) -> float`."""
    from ..rl.rewards import Reward

    if isinstance(scorer, str):
        if scorer == "verifier":
            return verifier_score
        if scorer.startswith("model:"):
            from ..experiment import make_prompt
            from ..rl.reward_model import load_reward_model

            learned = load_reward_model(scorer[len("model:"):])
            return lambda question, completion: learned(make_prompt(question, "cot"), completion, {})
        raise GenerationError(f"scorer: unknown scorer {scorer!r} (valid: {', '.join(SCORERS)}, model:PATH, "
                              "or a callable)")
    if isinstance(scorer, Reward):
        return lambda question, completion: float(scorer(question, completion, {"question": question}))
    if callable(scorer):
        return scorer
    raise GenerationError(f"scorer: {scorer!r} is neither a scorer name nor a callable")


def best_index(scores: Sequence[float]) -> int:
    """The index of the highest score (the first of equals: sample order is seed order, so it is stable)."""
    if not scores:
        raise GenerationError("best-of-N: no samples to choose from")
    return max(range(len(scores)), key=lambda i: (scores[i], -i))


def weighted_vote(samples: Sequence[Sample], weights: Sequence[float]) -> VoteResult:
    """Each sample's answer gets its weight; the answer with the largest total wins (ties reported, as in
    `run_vote`). `tally` holds the weight totals, largest first."""
    if len(samples) != len(weights):
        raise GenerationError(f"weighted vote: {len(samples)} samples but {len(weights)} weights")
    totals: dict[Hashable, float] = defaultdict(float)
    first: dict[Hashable, int] = {}
    for s, w in zip(samples, weights):
        if s.answer is not None:
            totals[s.answer] += float(w)
            first.setdefault(s.answer, len(first))
    # Same order as Counter.most_common (by total, then first seen), so equal weights give the same tally.
    ranked = sorted(totals.items(), key=lambda kv: (-kv[1], first[kv[0]]))
    top = ranked[0][1] if ranked else 0.0
    tied = [a for a, t in ranked if t == top]
    tie = len(tied) > 1
    return VoteResult(
        answer=None if tie or not ranked else ranked[0][0], tally=dict(ranked),
        samples=sorted(samples, key=lambda s: s.index), tie=tie, tied=tied if tie else [],
        no_answer_share=(sum(s.answer is None for s in samples) / len(samples)) if samples else 0.0,
        saved=0, n=len(samples), tokens=sum(s.tokens for s in samples))


@dataclass
class ScoredSamples:
    """N samples with their scores: the best one, and the weighted vote over them."""

    samples: list[Sample]  # by index
    scores: list[float]
    best: Sample = field(init=False)
    tokens: int = 0

    def __post_init__(self) -> None:
        self.best = self.samples[best_index(self.scores)]

    def weighted_vote(self) -> VoteResult:
        return weighted_vote(self.samples, self.scores)


def sample_and_score(engine: Engine, prompt: str | Sequence[int], question: str, n: int, max_new_tokens: int = 256,
                     params: SamplingParams | None = None, scorer: Any = "verifier",
                     extractor: Extractor | None = None) -> ScoredSamples:
    """N samples of `prompt` in ONE batch (no early stop: every sample is scored), each scored against
    `question`. `params` defaults to the vote's (`VOTE_DEFAULTS`, ending at the response stops)."""
    from ..engine.engine import VOTE_DEFAULTS

    score = resolve_scorer(scorer)  # an unknown scorer fails before any decoding
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise GenerationError(f"n: must be an integer >= 1, got {n!r}")
    extractor = extractor or default_extractor
    batches = engine.sample_batch(engine._encode(prompt), n, max_new_tokens, params or VOTE_DEFAULTS)
    samples = sorted((Sample(i, text, extractor(text), tokens) for batch in batches for i, text, tokens in batch),
                     key=lambda s: s.index)
    return ScoredSamples(samples, [float(score(question, s.text)) for s in samples],
                         tokens=engine.last_stats.new_tokens)


def best_of_n(engine: Engine, prompt: str | Sequence[int], question: str, n: int, max_new_tokens: int = 256,
              params: SamplingParams | None = None, scorer: Any = "verifier",
              extractor: Extractor | None = None) -> ScoredSamples:
    """Best-of-N: `sample_and_score`, whose `.best` is the highest-scoring sample."""
    return sample_and_score(engine, prompt, question, n, max_new_tokens, params, scorer, extractor)
