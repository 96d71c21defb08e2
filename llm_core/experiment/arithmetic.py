"""Multi-step arithmetic word problems with column-by-column worked solutions.

The embedded default experiment shows chain of thought paying off in a model small enough to train on a
laptop CPU in minutes (Wei et al., "Chain-of-Thought Prompting Elicits Reasoning in Large Language Models",
2022; Nye et al., "Show Your Work: Scratchpads for Intermediate Computation with Language Models", 2021).

A problem is a start amount and two or three changes (+ buys/finds/..., - gives away/loses/...) of two-digit
numbers, never going below zero. The worked solution first turns the story into an expression, then does
one operation per line, working through it one digit column at a time, ones first, the way a pupil does
on paper, and rewrites what is left:

    38+36-16.
    38+36: 8+6=14 c1, 3+3+1=7, so 74. Now 74-16.
    74-16: 4-6 b1 14-6=8, 7-1-1=5, so 58.
    The answer is 58.

Why this format: a tiny model cannot add two-digit numbers "in its head" in one token, but each column is
a one-digit fact it can memorise (100 of them), and every digit it needs is a few tokens back. `c1` marks
a carry into the next column (which then adds `+1`); `x-y b1 1x-y=d` marks a borrow (the next column then
subtracts `-1`). "Now ..." keeps the operands of the next line on the line just above: finding "the third
number of the story" is the hard part for a small model, copying from the previous line is easy.
Whole-operation steps ("38+36=74.") do not pay off at this scale: the format of the worked solution
decides whether chain of thought helps.

Everything is drawn from an owned `random.Random(seed)`, so the same seed gives the same problems.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from ..formatting import format_prompt
from .answers import ANSWER_TEMPLATE

# Prompt cues: the instruction is the bare problem followed by one of these.
COT_CUE = "Think step by step."
DIRECT_CUE = "Answer directly."

Mode = Literal["cot", "direct"]

NAMES: list[tuple[str, str]] = [
    ("Sam", "he"), ("Mia", "she"), ("Leo", "he"), ("Ava", "she"), ("Ben", "he"), ("Zoe", "she"),
    ("Max", "he"), ("Lily", "she"), ("Tom", "he"), ("Emma", "she"), ("Noah", "he"), ("Ruby", "she"),
    ("Jack", "he"), ("Nora", "she"), ("Omar", "he"), ("Iris", "she"),
]
OBJECTS = [
    "apples", "marbles", "stickers", "books", "coins", "pencils", "cards", "shells",
    "stamps", "cookies", "balloons", "toy cars", "flowers", "beads", "eggs", "crayons",
]
START_TEMPLATES = [
    "{name} has {n} {obj}.",
    "{name} starts with {n} {obj}.",
    "At first, {name} has {n} {obj}.",
    "{name} owns {n} {obj}.",
]
ADD_TEMPLATES = [
    "{pro} buys {n} more {obj}.",
    "{pro} finds {n} {obj}.",
    "{pro} gets {n} {obj} from a friend.",
    "{pro} wins {n} {obj}.",
    "{pro} receives {n} more {obj}.",
]
SUB_TEMPLATES = [
    "{pro} gives away {n} {obj}.",
    "{pro} loses {n} {obj}.",
    "{pro} sells {n} {obj}.",
    "{pro} gives {n} {obj} to a friend.",
    "{pro} uses {n} {obj}.",
]
CONNECTIVES = ["Then", "After that,", "Later,", "Next,"]
QUESTION_TEMPLATES = [
    "How many {obj} does {name} have now?",
    "How many {obj} does {name} have at the end?",
    "How many {obj} are left with {name}?",
]


@dataclass(frozen=True)
class Problem:
    """A word problem: `numbers[0]` then `ops[i]` applied with `numbers[i + 1]`."""

    numbers: tuple[int, ...]
    ops: tuple[str, ...]  # "+" or "-", one per step
    question: str

    @property
    def key(self) -> tuple[tuple[int, ...], tuple[str, ...]]:
        """Identity used to keep held-out problems out of training (the wording does not matter)."""
        return (self.numbers, self.ops)

    @property
    def answer(self) -> int:
        return running_values(self.numbers, self.ops)[-1]


@dataclass(frozen=True)
class Slip:
    """An arithmetic slip for a plausible wrong solution (preference data).

    `kind` "drop_carry" forgets the carry/borrow leaving column `column` of step `step`; "wrong_digit"
    writes a digit one off in that column. The error is then carried through every later step.
    """

    step: int
    column: int
    kind: Literal["drop_carry", "wrong_digit"]


def running_values(numbers: tuple[int, ...], ops: tuple[str, ...]) -> list[int]:
    """The amount after each step: [start, after op 1, ..., final]."""
    values = [numbers[0]]
    for op, n in zip(ops, numbers[1:]):
        values.append(values[-1] + n if op == "+" else values[-1] - n)
    return values


def random_problem(rng: random.Random, n_ops: int | None = None) -> Problem:
    """Draw a problem with 2 or 3 operations on two-digit numbers; no amount ever goes below zero."""
    n_ops = n_ops if n_ops is not None else rng.choice((2, 3))
    numbers = [rng.randint(10, 99)]
    ops: list[str] = []
    value = numbers[0]
    for _ in range(n_ops):
        # Subtract only what is there, so every intermediate amount stays >= 0.
        op = rng.choice("+-") if value >= 10 else "+"
        n = rng.randint(10, 99) if op == "+" else rng.randint(10, min(99, value))
        value = value + n if op == "+" else value - n
        numbers.append(n)
        ops.append(op)
    question = _word_problem(rng, tuple(numbers), tuple(ops))
    return Problem(tuple(numbers), tuple(ops), question)


def _word_problem(rng: random.Random, numbers: tuple[int, ...], ops: tuple[str, ...]) -> str:
    name, pro = rng.choice(NAMES)
    obj = rng.choice(OBJECTS)
    sentences = [rng.choice(START_TEMPLATES).format(name=name, n=numbers[0], obj=obj)]
    for i, (op, n) in enumerate(zip(ops, numbers[1:])):
        template = rng.choice(ADD_TEMPLATES if op == "+" else SUB_TEMPLATES)
        if i == 0:
            sentences.append(template.format(pro=pro.capitalize(), n=n, obj=obj))
        else:
            sentences.append(rng.choice(CONNECTIVES) + " " + template.format(pro=pro, n=n, obj=obj))
    sentences.append(rng.choice(QUESTION_TEMPLATES).format(name=name, obj=obj))
    return " ".join(sentences)


# --- Column-by-column worked solution ------------------------------------------------------------

def _digits(n: int, width: int) -> list[int]:
    """Digits of n, ones first, zero-padded to `width` columns."""
    return [int(c) for c in reversed(str(n).zfill(width))]


def column_step(
    x: int, op: str, y: int, slip_column: int | None = None, slip_kind: str | None = None
) -> tuple[str, int]:
    """Work out `x op y` column by column; return (text, result as written).

    Without a slip the result is the true value. With a slip in column `slip_column` the text shows the
    slip (a forgotten carry/borrow or a digit one off) and the result follows from it.
    """
    width = len(str(x)) if op == "-" else max(len(str(x)), len(str(y)))
    xs, ys = _digits(x, width), _digits(y, width)
    columns: list[str] = []
    out_digits: list[str] = []  # ones first; the last column may write two digits
    carry = 0
    for i, (dx, dy) in enumerate(zip(xs, ys)):
        last = i == width - 1
        sign = "+" if op == "+" else "-"
        lhs = f"{dx}{sign}{dy}" + (f"{sign}1" if carry else "")
        if op == "+":
            value = dx + dy + carry
            if slip_column == i and slip_kind == "wrong_digit":
                value = value + 1 if value % 10 != 9 else value - 1  # one off, same carry
            if last:
                columns.append(f"{lhs}={value}")
                out_digits.append(str(value)[::-1])
                break
            carry = 1 if value >= 10 else 0
            text = f"{lhs}={value}" + (" c1" if carry else "")
            out_digits.append(str(value % 10))
        else:
            value = dx - dy - carry
            borrow = 1 if value < 0 else 0
            digit = value + 10 * borrow
            if slip_column == i and slip_kind == "wrong_digit":
                digit = digit + 1 if digit != 9 else digit - 1
            text = f"{lhs}={digit}" if not borrow else f"{lhs} b1 1{lhs}={digit}"
            carry = borrow
            out_digits.append(str(digit))
        if slip_column == i and slip_kind == "drop_carry":
            carry = 0  # the slip: the carry/borrow is written but forgotten by the next column
        columns.append(text)
    result = int("".join(out_digits)[::-1])
    return f"{x}{op}{y}: " + ", ".join(columns) + f", so {result}.", result


def expression(numbers: tuple[int, ...], ops: tuple[str, ...]) -> str:
    """"63+43-61" for numbers (63, 43, 61) and ops ("+", "-")."""
    return str(numbers[0]) + "".join(f"{op}{n}" for op, n in zip(ops, numbers[1:]))


def worked_solution(problem: Problem, slip: Slip | None = None) -> str:
    """The chain-of-thought response: the story as an expression, one line per operation, the answer.

    Each operation line ends by rewriting what is left ("Now 106-61-40."), so the next line copies its
    operands from the line just above instead of hunting for the k-th number in the story.
    """
    lines: list[str] = [expression(problem.numbers, problem.ops) + "."]
    value = problem.numbers[0]
    for step, (op, n) in enumerate(zip(problem.ops, problem.numbers[1:])):
        if slip is not None and slip.step == step:
            text, value = column_step(value, op, n, slip.column, slip.kind)
        else:
            text, value = column_step(value, op, n)
        if step + 1 < len(problem.ops):
            text += f" Now {expression((value,) + problem.numbers[step + 2:], problem.ops[step + 1:])}."
        lines.append(text)
    lines.append(ANSWER_TEMPLATE.format(value))
    return "\n".join(lines)


def direct_answer(problem: Problem) -> str:
    return ANSWER_TEMPLATE.format(problem.answer)


def solution(problem: Problem, mode: Mode = "cot") -> str:
    """The response for `mode`: the worked solution ("cot") or just the answer line ("direct")."""
    if mode == "cot":
        return worked_solution(problem)
    if mode == "direct":
        return direct_answer(problem)
    raise ValueError(f"mode must be 'cot' or 'direct', got {mode!r}")


def make_instruction(problem: Problem | str, mode: Mode = "cot") -> str:
    """The problem text followed by the chain-of-thought or direct-answer cue."""
    question = problem.question if isinstance(problem, Problem) else problem
    if mode not in ("cot", "direct"):
        raise ValueError(f"mode must be 'cot' or 'direct', got {mode!r}")
    return f"{question} {COT_CUE if mode == 'cot' else DIRECT_CUE}"


def make_prompt(problem: Problem | str, mode: Mode = "cot") -> str:
    """The full Alpaca prompt (ending in "### Response:\\n") for a problem or a bare question string."""
    return format_prompt(make_instruction(problem, mode), input="")


def possible_slips(problem: Problem) -> list[Slip]:
    """Slips that give a well-formed wrong solution: the wrong amount never goes below zero later on."""
    slips: list[Slip] = []
    values = running_values(problem.numbers, problem.ops)
    for step, (op, n) in enumerate(zip(problem.ops, problem.numbers[1:])):
        x = values[step]
        width = len(str(x)) if op == "-" else max(len(str(x)), len(str(n)))
        for column in range(width):
            for kind in ("drop_carry", "wrong_digit"):
                if kind == "drop_carry" and column == width - 1:
                    continue  # nothing carries out of the last column
                _, wrong = column_step(x, op, n, column, kind)
                if wrong == values[step + 1]:
                    continue  # no carry there to forget
                later = running_values((wrong,) + problem.numbers[step + 2:], problem.ops[step + 1:])
                if min(later) >= 0:
                    slips.append(Slip(step, column, kind))  # type: ignore[arg-type]
    return slips


def rejected_solution(problem: Problem, rng: random.Random) -> str:
    """A plausible wrong worked solution: one slip (preferably a dropped carry), carried to the end."""
    slips = possible_slips(problem)
    dropped = [s for s in slips if s.kind == "drop_carry"]
    pool = dropped if dropped and rng.random() < 0.7 else slips
    return worked_solution(problem, rng.choice(pool))
