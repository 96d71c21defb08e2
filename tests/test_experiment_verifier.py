"""The process verifier on the embedded data: every reference solution passes, every slipped one fails."""
from __future__ import annotations

import json

import pytest

from llm_core.experiment import DATA_DIR as DATA
from llm_core.experiment.arithmetic import Problem, worked_solution
from llm_core.experiment.verifier import is_worked_solution, verify

PROBLEM = Problem((63, 43, 61), ("+", "-"), "Ruby has 63 cards. She gets 43 more, then loses 61. How many are left?")


def test_every_reference_solution_verifies() -> None:
    records = json.loads((DATA / "eval.json").read_text()) + json.loads((DATA / "instructions.json").read_text())
    worked = [r for r in records if is_worked_solution(r["output"])]
    assert len(worked) > 100
    for r in worked:
        verdict = verify(r["output"], r.get("question"))
        assert verdict.correct and verdict.score == 1.0, r["output"]


def test_every_slipped_solution_is_caught() -> None:
    pairs = json.loads((DATA / "preferences.json").read_text())
    for p in pairs:
        assert verify(p["chosen"]).correct
        rejected = verify(p["rejected"])
        assert not rejected.correct and rejected.score < 1.0 and rejected.well_formed, p["rejected"]


def test_score_is_the_share_of_checks_passed() -> None:
    good = worked_solution(PROBLEM)
    lines = good.splitlines()
    # one wrong digit in the first operation's working: that step fails, and the answer still follows
    # from the (copied) last line, so 3 of 4 checks pass (question numbers, step 1 x, step 2, answer)
    bad = "\n".join([lines[0], lines[1].replace("3+3=6", "3+3=7"), *lines[2:]])
    verdict = verify(bad, PROBLEM.question)
    assert (verdict.checks, verdict.passed) == (4, 3) and verdict.score == pytest.approx(0.75)
    assert verify(good, "Ruby has 63 cards. She gets 43 more, then loses 60.").passed == 3  # wrong numbers


def test_nothing_to_verify_scores_zero() -> None:
    assert verify("The answer is 45.").score == 0.0
    assert verify("").score == 0.0 and not verify("").well_formed
    assert verify("\n".join(worked_solution(PROBLEM).splitlines()[:2])).well_formed is False  # cut off
