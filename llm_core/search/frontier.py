"""The accuracy-compute frontier of inference-time scaling on the default experiment's held-out problems.

Inference compute can buy accuracy in several ways (Snell et al., 2024, "Scaling LLM Test-Time Compute
Optimally can be More Effective than Scaling Model Parameters", arXiv:2408.03314; Brown et al., 2024,
"Large Language Monkeys", arXiv:2407.21787, for pass@N as the coverage every selection rule is bounded
by). For one checkpoint this measures, per method, the accuracy, the tokens generated per question (all
rows and beams counted: the compute) and the wall time:

- greedy chain of thought (one sample);
- majority vote (self-consistency) at each temperature and N, with pass@N (the oracle: any of the N
  samples is right) next to it;
- beam search at each width (`llm_core.engine.beam`);
- best-of-N by each scorer (default: the process verifier; also a learned reward model, "model:PATH") and
  the scorer-weighted vote, on the same samples as the vote.

Each temperature draws max(N) samples per question ONCE (question q seeded with seed + q); the rows of a
smaller N use the first N of them, which are exactly the samples an N-sample batch would draw (sample i's
seed is derive_seed(seed, i)), so the rows of one temperature differ only in how many samples they read.
Their wall time is the batch's time scaled by the share of its tokens they read (a batch decodes in lock
step, so this is an estimate); the max(N) row's time is measured. No early stop: every sample is read.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

from ..engine import EVAL_GREEDY, RESPONSE_STOPS, Engine, SamplingParams
from ..engine.reasoning import Sample, default_extractor, experiment_prompt, tally_result
from ..errors import GenerationError
from .select import best_index, resolve_scorer, weighted_vote

TEMPERATURES = (0.3, 0.5, 0.8, 1.0)
VOTE_SIZES = (1, 4, 8, 16)
BEAM_WIDTHS = (2, 4, 8)


@dataclass
class FrontierRow:
    method: str  # "cot" | "vote" | "best-of-n" | "weighted-vote" | "beam"
    temperature: float | None  # sampling temperature (None: greedy or beam)
    n: int  # samples or beams
    accuracy: float
    tokens_per_question: float
    seconds_per_question: float
    pass_at_n: float | None = None  # sampling rows only: any of the N samples right
    scorer: str | None = None  # best-of-n / weighted-vote rows: the scorer's name ("verifier", "model:PATH")

    @property
    def label(self) -> str:
        by = scorer_label(self.scorer)
        names = {"cot": "chain of thought (greedy)", "vote": "majority vote", "best-of-n": f"best-of-N ({by})",
                 "weighted-vote": f"weighted vote ({by})", "beam": "beam search"}
        return names[self.method] + (f" T={self.temperature:g}" if self.temperature is not None else "")


def scorer_label(scorer: str | None) -> str:
    """"verifier", "reward model", or the callable's name: how a scorer is named in the table."""
    if scorer is None or scorer == "verifier":
        return "verifier"
    return "reward model" if scorer.startswith("model:") else scorer


def scorer_name(scorer: Any) -> str:
    return scorer if isinstance(scorer, str) else getattr(scorer, "__name__", type(scorer).__name__)


def vote_credit(winners: Sequence[Any], truth: int) -> float:
    """1 for a correct winner; a tie containing the truth earns 1/len(tied) (a random tie-break's expectation)."""
    return (1.0 / len(winners)) if truth in winners else 0.0


def _check_sizes(name: str, values: Sequence[Any], minimum: float, kind: type) -> tuple:
    values = tuple(values)
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float) if kind is float else int) or v < minimum:
            raise GenerationError(f"{name}: every value must be {'a number' if kind is float else 'an integer'} "
                                  f">= {minimum}, got {v!r}")
    return values


def frontier(engine: Engine, entries: Sequence[dict[str, Any]], temperatures: Sequence[float] = TEMPERATURES,
             ns: Sequence[int] = VOTE_SIZES, widths: Sequence[int] = BEAM_WIDTHS, max_new_tokens: int = 256,
             seed: int = 0, scorer: Any = "verifier", length_penalty: float = 0.0,
             progress: Callable[[int, int], None] | None = None) -> list[FrontierRow]:
    """The frontier rows for `entries` (each with "question" and the integer "answer"), see the module
    docstring. `scorer`: one scorer, or a list of them (each gets its best-of-N and weighted-vote rows, on
    the same samples). Validated before any decoding."""
    chosen = list(scorer) if isinstance(scorer, (list, tuple)) else [scorer]
    if not chosen:
        raise GenerationError("scorer: give at least one scorer")
    scorers = {scorer_name(s): resolve_scorer(s) for s in chosen}
    temperatures = _check_sizes("temperatures", temperatures, 0.0, float)
    ns = tuple(sorted(set(_check_sizes("n", ns, 1, int))))
    widths = _check_sizes("widths", widths, 1, int)
    if not entries:
        raise GenerationError("frontier: no problems to evaluate")
    n_max = max(ns) if ns else 0
    # key -> [credit, tokens, seconds, pass]
    acc: dict[tuple, list[float]] = {}

    def add(key: tuple, credit: float, tokens: float, seconds: float, passed: float = 0.0) -> None:
        row = acc.setdefault(key, [0.0, 0.0, 0.0, 0.0])
        for i, v in enumerate((credit, tokens, seconds, passed)):
            row[i] += v

    for q, entry in enumerate(entries):
        question, truth = entry["question"], entry["answer"]
        prompt = engine.tokenizer.encode(experiment_prompt(question, "cot"))
        t0 = time.perf_counter()
        r = engine.answer(question, mode="cot", max_new_tokens=max_new_tokens, params=EVAL_GREEDY)
        add(("cot", None, 1, None), float(r.answer == truth), r.tokens, time.perf_counter() - t0)
        for width in widths:
            t0 = time.perf_counter()
            beam = engine.beam_search(prompt, width, max_new_tokens, length_penalty)
            text = engine.tokenizer.decode_bytes(beam.ids).decode("utf-8", errors="replace")
            add(("beam", None, width, None), float(default_extractor(text) == truth), beam.tokens,
                time.perf_counter() - t0)
        for temperature in temperatures if n_max else ():
            params = SamplingParams(temperature=temperature, stop=RESPONSE_STOPS, truncate=True, seed=seed + q)
            t0 = time.perf_counter()
            batches = engine.sample_batch(prompt, n_max, max_new_tokens, params)
            samples = sorted((Sample(i, text, default_extractor(text), tokens)
                              for batch in batches for i, text, tokens in batch), key=lambda s: s.index)
            seconds = time.perf_counter() - t0
            scored = {name: [float(score(question, s.text)) for s in samples] for name, score in scorers.items()}
            total_tokens = sum(s.tokens for s in samples) or 1
            for n in ns:
                head = samples[:n]
                tokens = sum(s.tokens for s in head)
                share = seconds * tokens / total_tokens  # estimate for n < n_max (see the docstring)
                passed = float(any(s.answer == truth for s in head))
                add(("vote", temperature, n, None), vote_credit(tally_result(head, n).winners, truth), tokens,
                    share, passed)
                for name, scores in scored.items():
                    head_scores = scores[:n]
                    add(("best-of-n", temperature, n, name), float(head[best_index(head_scores)].answer == truth),
                        tokens, share, passed)
                    add(("weighted-vote", temperature, n, name),
                        vote_credit(weighted_vote(head, head_scores).winners, truth), tokens, share, passed)
        if progress is not None:
            progress(q + 1, len(entries))
    total = len(entries)
    rows = []
    for (method, temperature, n, name), (credit, tokens, seconds, passed) in acc.items():
        sampling = method in ("vote", "best-of-n", "weighted-vote")
        rows.append(FrontierRow(method, temperature, n, credit / total, tokens / total, seconds / total,
                                passed / total if sampling else None, name))
    return rows


def rows_to_dicts(rows: Sequence[FrontierRow]) -> list[dict[str, Any]]:
    return [{**asdict(r), "label": r.label} for r in rows]


def best_temperature(rows: Sequence[FrontierRow], n: int | None = None) -> float | None:
    """The vote temperature with the highest majority-vote accuracy at N = `n` (default: the largest N); a
    tie goes to the higher pass@N (samples that cover more answers leave a better selector more to find),
    then to the lower temperature."""
    votes = [r for r in rows if r.method == "vote"]
    if not votes:
        return None
    n = n if n is not None else max(r.n for r in votes)
    at_n = [r for r in votes if r.n == n]
    return max(at_n, key=lambda r: (r.accuracy, r.pass_at_n or 0.0, -r.temperature)).temperature if at_n else None
