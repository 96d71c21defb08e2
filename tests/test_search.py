"""Best-of-N and weighted votes with a pluggable scorer, and the frontier rows (tiny random model)."""
from __future__ import annotations

import random

import pytest

from engine_fakes import ByteTokenizer, tiny_model
from llm_core import Engine
from llm_core.engine import SamplingParams
from llm_core.engine.reasoning import Sample, tally_result
from llm_core.errors import GenerationError
from llm_core.rl.rewards import FormatReward
from llm_core.search import best_of_n, best_temperature, frontier, resolve_scorer, verifier_score, weighted_vote

WORKED = "63+43-61.\n63+43: 3+3=6, 6+4=10, so 106. Now 106-61.\n106-61: 6-1=5, 0-6 b1 10-6=4, 1-0-1=0, so 45.\nThe answer is 45."
QUESTION = "Ruby has 63 cards. She gets 43 more, then loses 61. How many are left?"


def engine() -> Engine:
    return Engine(tiny_model(context_length=512, seed=2), ByteTokenizer())


def test_weighted_vote_with_equal_weights_is_majority_vote():
    rng = random.Random(0)
    for trial in range(200):
        n = rng.randint(1, 9)
        samples = [Sample(i, "", rng.choice([None, 1, 2, 3]), 1) for i in range(n)]
        majority = tally_result(samples, n)
        weighted = weighted_vote(samples, [1.0] * n)
        assert (weighted.answer, weighted.tie, weighted.tied) == (majority.answer, majority.tie, majority.tied)
        assert list(weighted.tally) == list(majority.tally)
        assert weighted.winners == majority.winners


def test_weighted_vote_lets_weights_overturn_the_majority():
    samples = [Sample(0, "", 7, 1), Sample(1, "", 7, 1), Sample(2, "", 9, 1)]
    assert weighted_vote(samples, [0.2, 0.2, 1.0]).answer == 9
    assert weighted_vote(samples, [1.0, 1.0, 1.0]).answer == 7


def test_best_of_n_picks_the_highest_scored_sample():
    e = engine()
    params = SamplingParams(temperature=1.0, seed=3)
    scorer = lambda question, completion: completion.count("e") - 0.01 * len(completion)  # noqa: E731
    result = best_of_n(e, "Say something", "q", 5, 8, params, scorer=scorer)
    assert len(result.samples) == 5 and len(result.scores) == 5
    assert result.scores == [scorer("q", s.text) for s in result.samples]
    assert scorer("q", result.best.text) == max(result.scores)
    assert result.weighted_vote().n == 5


def test_scorers_are_pluggable():
    assert verifier_score(QUESTION, WORKED) == 1.0
    assert resolve_scorer("verifier")(QUESTION, WORKED) == 1.0
    assert resolve_scorer(FormatReward())(QUESTION, WORKED) == 1.0  # a Reward works as a scorer
    assert resolve_scorer(lambda q, c: 0.5)(QUESTION, WORKED) == 0.5


@pytest.mark.parametrize("call, message", [
    (lambda e: best_of_n(e, "hi", "q", 0, 4), "n: must be an integer >= 1, got 0"),
    (lambda e: best_of_n(e, "hi", "q", 2, 4, scorer="oracle"), "scorer: unknown scorer 'oracle'"),
    (lambda e: best_of_n(e, "hi", "q", 2, 4, scorer="reward-model"), "unknown scorer 'reward-model'"),
    (lambda e: best_of_n(e, "hi", "q", 2, 4, scorer=3), "scorer: 3 is neither"),
    (lambda e: frontier(e, [{"question": "q", "answer": 1}], ns=[0]), "n: every value must be an integer >= 1"),
    (lambda e: frontier(e, [{"question": "q", "answer": 1}], widths=[0]), "widths: every value"),
    (lambda e: frontier(e, []), "frontier: no problems"),
])
def test_bad_input_is_a_one_line_error(call, message):
    with pytest.raises(GenerationError) as info:
        call(engine())
    assert message in str(info.value) and "\n" not in str(info.value)


def test_frontier_rows_cover_every_method():
    entries = [{"question": "Tom has 3 apples.", "answer": 3}, {"question": "Ann has 5 pens.", "answer": 5}]
    seen = []
    rows = frontier(engine(), entries, temperatures=(0.5, 1.0), ns=(1, 2), widths=(2,), max_new_tokens=3,
                    progress=lambda done, total: seen.append(done))
    assert seen == [1, 2]
    kinds = sorted({(r.method, r.temperature, r.n) for r in rows}, key=str)
    assert len(kinds) == 1 + 1 + 2 * 2 * 3 == len(rows)
    for r in rows:
        assert 0.0 <= r.accuracy <= 1.0 and r.tokens_per_question > 0 and r.seconds_per_question >= 0
        assert (r.pass_at_n is not None) == (r.method in ("vote", "best-of-n", "weighted-vote"))
        if r.pass_at_n is not None:
            assert r.accuracy <= r.pass_at_n + 1e-9  # no selection beats the oracle
    beam = next(r for r in rows if r.method == "beam")
    assert beam.tokens_per_question <= 2 * 3 and beam.temperature is None
    # the N=1 rows of one temperature read the same single sample
    ones = [r for r in rows if r.n == 1 and r.temperature == 0.5]
    assert len({(r.accuracy, r.tokens_per_question) for r in ones}) == 1
    assert best_temperature(rows) in (0.5, 1.0)


def test_frontier_scores_the_same_samples_with_each_scorer():
    """Two scorers: each gets its own best-of-N and weighted-vote rows over the SAME samples (the vote rows
    are shared); a scorer that prefers the right answer does at least as well as one that prefers a wrong one."""
    entries = [{"question": "Tom has 3 apples.", "answer": 3}, {"question": "Ann has 5 pens.", "answer": 5}]

    def longest(question, completion):
        return float(len(completion))

    def shortest(question, completion):
        return -float(len(completion))

    rows = frontier(engine(), entries, temperatures=(1.0,), ns=(1, 3), widths=(), max_new_tokens=3,
                    scorer=[longest, shortest])
    best = {(r.scorer, r.n): r for r in rows if r.method == "best-of-n"}
    assert set(best) == {("longest", 1), ("longest", 3), ("shortest", 1), ("shortest", 3)}
    assert len([r for r in rows if r.method == "vote"]) == 2  # not repeated per scorer
    for n in (1, 3):  # the same samples: same tokens and the same oracle
        a, b = best[("longest", n)], best[("shortest", n)]
        assert (a.tokens_per_question, a.pass_at_n) == (b.tokens_per_question, b.pass_at_n)
    assert best[("longest", 1)].accuracy == best[("shortest", 1)].accuracy  # N = 1: nothing to choose
    assert "best-of-N (longest)" in best[("longest", 3)].label
    with pytest.raises(GenerationError, match="at least one scorer"):
        frontier(engine(), entries, scorer=[])
