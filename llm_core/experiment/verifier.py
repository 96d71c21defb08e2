"""A rule verifier for the default experiment's worked solutions: a process check, step by step.

An outcome check asks only whether the final answer is right, which needs the answer. A process check
(Lightman et al., 2023, "Let's Verify Step by Step", arXiv:2305.20050; Uesato et al., 2022) asks whether
every step of the reasoning is right, which needs no answer key: here each line of a worked solution can be
recomputed from the line above. That makes it usable at inference time, to pick the best of N sampled
chains (`llm_core.search`), and as a format reward for RL.

What is checked, one check each (the score is the share passed):
- the expression line "63+43-61." uses the numbers of the question (when the question is given), as a
  multiset: a paraphrase may name them in another order;
- every operation line "x+y: <columns>, so r." is the exact column-by-column working of x+y (each digit,
  carry and borrow), x is what the line above left, y and the operator are the next term, and its
  "Now ..." rewrite is what is left after it; a missing line fails its check;
- the answer line "The answer is N." gives the last line's result.
A response with no worked lines has nothing to verify and scores 0.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .arithmetic import column_step, expression

_EXPR = r"\d+(?:[+-]\d+)*"
_EXPR_LINE = re.compile(rf"^({_EXPR})\.$")
_STEP_LINE = re.compile(rf"^(\d+)([+-])(\d+): (.+), so (\d+)\.(?: Now ({_EXPR})\.)?$")
_ANSWER_LINE = re.compile(r"^The answer is (-?\d+)\.$")
_TERM = re.compile(r"([+-]?)(\d+)")
_NUMBER = re.compile(r"\d+")


def _terms(expr: str) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """'63+43-61' -> ((63, 43, 61), ('+', '-'))."""
    parts = _TERM.findall(expr)
    return tuple(int(n) for _, n in parts), tuple(sign for sign, _ in parts[1:])


@dataclass(frozen=True)
class Verdict:
    """The checks of one response."""

    checks: int  # how many checks were made
    passed: int  # how many passed
    steps: int  # worked operation lines found
    well_formed: bool  # expression line, operation lines and answer line all parse, in that order
    answer: int | None  # the answer line's number, if there is one

    @property
    def score(self) -> float:
        """The share of checks passed (0 with nothing to verify)."""
        return self.passed / self.checks if self.checks and self.steps else 0.0

    @property
    def correct(self) -> bool:
        return self.steps > 0 and self.passed == self.checks


def parse_lines(text: str) -> list[str]:
    return [line.strip() for line in text.strip().splitlines() if line.strip()]


def ends_with_answer_line(text: str) -> bool:
    lines = parse_lines(text)
    return bool(lines) and _ANSWER_LINE.match(lines[-1]) is not None


def is_worked_solution(text: str) -> bool:
    """The response has the worked format: an expression line, >= 1 operation line, the answer line (the
    arithmetic is not checked: that is `verify`)."""
    lines = parse_lines(text)
    return (len(lines) >= 3 and _EXPR_LINE.match(lines[0]) is not None
            and all(_STEP_LINE.match(line) for line in lines[1:-1]) and _ANSWER_LINE.match(lines[-1]) is not None)


def verify(text: str, question: str | None = None) -> Verdict:
    """Re-check a worked solution line by line (see the module docstring)."""
    lines = parse_lines(text)
    answer_match = _ANSWER_LINE.match(lines[-1]) if lines else None
    answer = int(answer_match.group(1)) if answer_match else None
    head = _EXPR_LINE.match(lines[0]) if lines else None
    if head is None:
        return Verdict(checks=1, passed=0, steps=0, well_formed=False, answer=answer)
    numbers, ops = _terms(head.group(1))
    body = lines[1:-1] if answer_match else lines[1:]
    checks = passed = 0
    if question is not None:
        checks += 1
        passed += sorted(int(n) for n in _NUMBER.findall(question)) == sorted(numbers)
    well_formed = answer_match is not None
    value, rest_numbers, rest_ops = numbers[0], numbers[1:], ops
    result: int | None = value
    found = 0
    for i in range(len(ops)):
        checks += 1
        match = _STEP_LINE.match(body[i]) if i < len(body) else None
        if match is None:
            well_formed = False
            result = None
            continue
        found += 1
        x, op, y, r = int(match.group(1)), match.group(2), int(match.group(3)), int(match.group(5))
        ok = (result is not None and x == result and op == rest_ops[0] and y == rest_numbers[0])
        text_expected, value = column_step(x, op, y)
        ok = ok and body[i].split(" Now ")[0] == text_expected and r == value
        rest_numbers, rest_ops = rest_numbers[1:], rest_ops[1:]
        if rest_ops:
            now = match.group(6)
            ok = ok and now == expression((r,) + rest_numbers, rest_ops)
        elif match.group(6) is not None:
            ok = False  # a rewrite after the last operation: nothing should be left
        passed += ok
        result = r
    if len(body) > len(ops):
        well_formed = False  # extra lines the expression does not account for
    checks += 1
    passed += answer is not None and answer == result
    return Verdict(checks=checks, passed=passed, steps=found, well_formed=well_formed,
                   answer=answer)

