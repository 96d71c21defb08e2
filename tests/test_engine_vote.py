"""Majority vote: tally, ties, no-answer share, exact early stop (fake sampler), engine integration."""
from __future__ import annotations

import itertools
import random
from collections import Counter

import pytest

from engine_fakes import ByteTokenizer, tiny_model
from llm_core.engine import SamplingParams
from llm_core import Engine
from llm_core.engine import decided, derive_seed, run_vote, split_answer

NO_STOP = SamplingParams(stop_ids=())  # greedy, never stopping early


def fake_sampler(texts, log):
    """Yields one finished sample per step and records how many were produced before being closed."""
    try:
        for i, t in enumerate(texts):
            log.append(i)
            yield [(i, t, 10)]
    finally:
        log.append("closed")


def test_tally_winner_and_no_answer_share():
    texts = ["so The answer is 5.", "The answer is 7.", "blah 5", "no number", "The answer is 5. then 9"]
    result = run_vote(fake_sampler(texts, []), 5, early_stop=False)
    assert result.answer == 5 and not result.tie
    assert result.tally == {5: 3, 7: 1}
    assert result.no_answer_share == pytest.approx(1 / 5)
    assert result.saved == 0 and result.tokens == 50
    assert [s.answer for s in result.samples] == [5, 7, 5, None, 5]


def test_tie_is_reported_with_all_tied_answers():
    texts = ["The answer is 1.", "The answer is 2.", "The answer is 2.", "The answer is 1.", "x"]
    result = run_vote(fake_sampler(texts, []), 5)
    assert result.tie and result.answer is None
    assert sorted(result.tied) == [1, 2]
    assert sorted(result.winners) == [1, 2]


def test_early_stop_when_leader_cannot_be_overtaken():
    log: list = []
    texts = ["The answer is 4."] * 3 + ["The answer is 9."] * 2
    result = run_vote(fake_sampler(texts, log), 5)
    assert result.answer == 4 and result.saved == 2  # 3 > 0 + 2 remaining after three samples
    assert log == [0, 1, 2, "closed"]  # the sampler was closed: no more decoding
    # 2 vs 1 with 2 left is not decided: all five are needed
    log2: list = []
    texts2 = ["The answer is 4.", "The answer is 9.", "The answer is 4.", "The answer is 9.", "The answer is 9."]
    result2 = run_vote(fake_sampler(texts2, log2), 5)
    assert result2.saved == 0 and result2.answer == 9


def test_decided_matches_brute_force():
    rng = random.Random(0)
    for _ in range(200):
        counts = Counter({a: rng.randint(0, 4) for a in "abc" if rng.random() < 0.8})
        counts = +counts
        remaining = rng.randint(0, 3)
        answers = list(counts) + ["new"]
        safe = bool(counts)
        if safe:
            leader = counts.most_common(1)[0][0]
        for extra in itertools.product(answers, repeat=remaining) if safe else ():
            final = counts + Counter(extra)
            top = max(final.values())
            if not safe or [a for a, c in final.items() if c == top] != [leader]:
                safe = False
                break
        assert decided(counts, remaining) == safe, (counts, remaining)


def test_split_answer_separates_reasoning():
    r = split_answer("12 + 30 = 42.\nThe answer is 42. more")
    assert r.reasoning == "12 + 30 = 42." and r.answer_text == "The answer is 42." and r.answer == 42


def test_engine_majority_vote_is_batched_and_seeded():
    model = tiny_model(context_length=16, seed=4)
    tok = ByteTokenizer()
    engine = Engine(model, tok)
    result = engine.majority_vote("abc", 6, 6, SamplingParams(temperature=1.0, seed=9, stop=(), stop_ids=()),
                                  extractor=lambda t: len(t) % 2, early_stop=False)
    assert len(result.samples) == 6 and result.saved == 0
    assert sum(result.tally.values()) == 6
    solo = Engine(model, tok)
    for s in result.samples:
        ids = solo.generate_ids(tok.encode("abc"), 6,
                                SamplingParams(temperature=1.0, seed=derive_seed(9, s.index), stop_ids=()))
        assert s.text == tok.decode(ids)
    again = engine.majority_vote("abc", 6, 6, SamplingParams(temperature=1.0, seed=9, stop=(), stop_ids=()),
                                 extractor=lambda t: len(t) % 2, early_stop=False)
    assert [s.text for s in again.samples] == [s.text for s in result.samples]


def test_engine_vote_early_stop_saves_samples_and_engine_stays_usable():
    model = tiny_model(context_length=16, seed=4)
    engine = Engine(model, ByteTokenizer())
    # Most bytes end a sample, so rows finish at different steps; every sample has the same answer. (With
    # 150 of the 257 ids stopping, every seed 0-9 has rows finishing at different steps; with 200, seed 1
    # stops all 8 rows at the first token.)
    params = SamplingParams(temperature=1.0, seed=1, stop=(), stop_ids=range(0, 150))
    result = engine.majority_vote("abc", 8, 10, params, extractor=lambda t: "same")
    assert result.answer == "same" and result.tally == {"same": len(result.samples)}
    assert result.saved > 0 and result.saved + len(result.samples) == 8
    assert len(result.samples) > result.saved  # stopped exactly when the lead exceeded what was left
    full = engine.majority_vote("abc", 8, 10, params, extractor=lambda t: "same", early_stop=False)
    assert full.saved == 0 and full.tokens > result.tokens
    # the engine is usable for ordinary generation afterwards
    fresh = Engine(model, ByteTokenizer()).generate_ids([97, 98], 3, NO_STOP)
    assert engine.generate_ids([97, 98], 3, NO_STOP) == fresh
