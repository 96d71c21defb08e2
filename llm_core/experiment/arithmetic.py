"""Multi-step arithmetic word problems with column-by-column worked solutions.

The embedded default experiment shows chain of thought paying off in a model small enough to train on a
laptop CPU in minutes (Wei et al., "Chain-of-Thought Prompting Elicits Reasoning in Large Language Models",
2022; Nye et al., "Show Your Work: Scratchpads for Intermediate Computation with Language Models", 2021).

A problem is a start amount and one to three changes (+ buys/finds/..., - gives away/loses/..., or a
"more"/"fewer than" comparison that moves the story to a second person) of numbers from 1 to 99, never
going below zero. The story is told in one of many phrasings (one sentence per change, two changes in one
compound sentence, objects left out, the question first) drawn from a `Phrasebook`; the paraphrase
phrasebook shares no template with the training one, so a held-out set written with it measures whether the
model learnt the arithmetic of the story rather than its sentence frames.

The worked solution first turns the story into an expression, then does
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
from dataclasses import dataclass, fields
from typing import Literal

from ..formatting import format_prompt
from .answers import ANSWER_TEMPLATE

# Prompt cues: the instruction is the bare problem followed by one of these; a neutral prompt is the bare
# problem alone (what a user types), so a model's own habit decides whether it reasons (the RL stage's start).
COT_CUE = "Think step by step."
DIRECT_CUE = "Answer directly."

Mode = Literal["cot", "direct", "neutral"]
MODES: tuple[str, ...] = ("cot", "direct", "neutral")

# --- Vocabulary shared by every phrasebook ---------------------------------------------------------
# Names, objects and verbs are words, not templates: the paraphrase set reuses them, because a model of this
# size cannot guess what an unseen verb does to the amount; what it must generalise over is sentence frames.
NAMES: list[tuple[str, str, str]] = [
    ("Sam", "he", "his"), ("Mia", "she", "her"), ("Leo", "he", "his"), ("Ava", "she", "her"),
    ("Ben", "he", "his"), ("Zoe", "she", "her"), ("Max", "he", "his"), ("Lily", "she", "her"),
    ("Tom", "he", "his"), ("Emma", "she", "her"), ("Noah", "he", "his"), ("Ruby", "she", "her"),
    ("Jack", "he", "his"), ("Nora", "she", "her"), ("Omar", "he", "his"), ("Iris", "she", "her"),
    ("Ann", "she", "her"), ("Raj", "he", "his"), ("Kim", "she", "her"), ("Luis", "he", "his"),
    ("Sara", "she", "her"), ("Finn", "he", "his"), ("Maya", "she", "her"), ("Eli", "he", "his"),
]
OBJECTS = [
    "apples", "marbles", "stickers", "books", "coins", "pencils", "cards", "shells", "stamps", "cookies",
    "balloons", "toy cars", "flowers", "beads", "eggs", "crayons", "pens", "rocks", "buttons", "candies",
    "blocks", "ribbons", "cupcakes", "seeds", "bottles", "comics", "puzzles", "socks",
]
RELATIVES = ["friend", "brother", "sister", "cousin", "mom", "dad", "teacher", "neighbor"]
ADD_VERBS = ["buys", "finds", "gets", "wins", "receives", "collects", "picks up", "earns"]
SUB_VERBS = ["gives away", "loses", "sells", "uses", "drops", "donates", "throws away", "trades away"]


@dataclass(frozen=True)
class Phrasebook:
    """One pool of templates a story is written from.

    Slots: {name} {n} {obj} in starts; {verb} {n} {obj} {poss} {relative} in verb phrases (no subject:
    "buys {n} more {obj}"); {other} {name} {n} {obj} in comparisons ("{other} has {n} more {obj} than
    {name}"); {pro} in `link`; {story} {obj} {name} in question-first frames.
    """

    starts: tuple[str, ...]  # first sentence, with its full stop
    start_clauses: tuple[str, ...]  # the same inside a question-first frame (no capital, no stop)
    adds: tuple[str, ...]
    subs: tuple[str, ...]
    more: tuple[str, ...]  # comparisons that add
    fewer: tuple[str, ...]  # comparisons that subtract
    connectives: tuple[str, ...]  # opening a later sentence, before the pronoun
    joiners: tuple[str, ...]  # between two verb phrases of one sentence
    link: str  # start clause -> first verb phrase in a question-first story
    questions: tuple[str, ...]  # naming the subject
    nameless_questions: tuple[str, ...]  # not usable after a comparison (whose amount would it be?)
    question_first: tuple[str, ...]
    # Noise that carries no number (none in the paraphrase book): a tail after a verb phrase ("at the park"),
    # an adjective before an object ("red"), a sentence between the changes ("It is a sunny day."). They keep
    # the model from locating numbers by their position in a memorised frame.
    tails: tuple[str, ...] = ()
    adjectives: tuple[str, ...] = ()
    asides: tuple[str, ...] = ()
    openers: tuple[str, ...] = ()  # before the first sentence ("Today, Ann has 40 pens.")

    def templates(self) -> list[str]:
        """Every template of the book, for the disjointness check between books."""
        out: list[str] = []
        for f in fields(self):
            value = getattr(self, f.name)
            out.extend(value if isinstance(value, tuple) else [value])
        return out


TRAIN_BOOK = Phrasebook(
    starts=("{name} has {n} {obj}.", "{name} starts with {n} {obj}.", "At first, {name} has {n} {obj}.",
            "{name} owns {n} {obj}.", "{name} has a box of {n} {obj}.", "In {name}'s box there are {n} {obj}.",
            "{name} has {n} {obj} at home.", "{name} had {n} {obj} on Sunday.", "{name} has a pile of {n} {obj}.",
            "{name} saved {n} {obj}.", "{name} has exactly {n} {obj}.", "{name} has collected {n} {obj}.",
            "{name} got {n} {obj} as a birthday gift.", "{name} has {n} {obj} on the shelf."),
    start_clauses=("{name} has {n} {obj}", "{name} starts with {n} {obj}", "{name} owns {n} {obj}",
                   "{name} has a box of {n} {obj}", "{name} has a pile of {n} {obj}", "{name} saved {n} {obj}",
                   "{name} has exactly {n} {obj}"),
    adds=("{verb} {n} {obj}", "{verb} {n} more {obj}", "{verb} {n} more", "buys {n} {obj} from a friend",
          "gets {n} {obj} from {poss} {relative}", "is given {n} more {obj}", "{verb} {n}",
          "{verb} {n} new {obj}", "{verb} {n} more of them", "{verb} {n} {obj} too", "{verb} {n} {obj} as well",
          "{verb} a further {n} {obj}", "is given {n} {obj} by {poss} {relative}", "gets {n} {obj} as a gift",
          "{verb} {n} more {obj} from {poss} {relative}", "adds {n} {obj} to the pile"),
    subs=("{verb} {n} {obj}", "{verb} {n}", "{verb} {n} of them", "gives {n} {obj} to a friend",
          "gives {n} to {poss} {relative}", "{verb} {n} {obj} at school", "gives {n} {obj} away",
          "{verb} {n} {obj} to {poss} {relative}", "{verb} {n} {obj} too", "{verb} {n} {obj} as well",
          "hands {n} {obj} to {poss} {relative}", "lends {n} {obj} to a friend", "loses {n} {obj} on the bus",
          "{verb} {n} {obj} from the pile"),
    more=("{other} has {n} more {obj} than {name}.", "{other} has {n} more than {name}.",
          "{other} owns {n} more {obj} than {name}.", "{other} has {n} more {obj} than {name} has.",
          "Compared with {name}, {other} has {n} more {obj}."),
    fewer=("{other} has {n} fewer {obj} than {name}.", "{other} has {n} fewer than {name}.",
           "{other} owns {n} fewer {obj} than {name}.", "{other} has {n} fewer {obj} than {name} has.",
           "Compared with {name}, {other} has {n} fewer {obj}."),
    connectives=("Then", "After that,", "Later,", "Next,", "Afterwards,", "Then,", "On Monday,", "After school,",
                 "That afternoon,", "The next day,", "A little later,", "Soon,", "Later that day,", "At noon,",
                 "Before dinner,", "On Tuesday,", "Right after that,", "By evening,"),
    joiners=(", then ", " and then ", " and ", ", and then ", ", and ", " but then ", ", but ", "; then ",
             ", and next ", " and also "),
    link=" and {pro} ",
    questions=("How many {obj} does {name} have now?", "How many {obj} does {name} have at the end?",
               "How many {obj} are left with {name}?", "How many {obj} does {name} have?",
               "How many {obj} does {name} have left?", "How many does {name} have now?",
               "Now how many {obj} does {name} have?", "What is the total number of {obj} {name} has now?",
               "How many {obj} is {name} left with?", "How many {obj} does {name} own now?",
               "How many {obj} does {name} have by now?", "How many {obj} does {name} finish with?",
               "How many {obj} are still with {name}?", "What number of {obj} does {name} have now?"),
    nameless_questions=("How many are left?", "How many {obj} are left?", "How many are there now?",
                        "How many are still there?", "How many {obj} are there at the end?"),
    question_first=("How many {obj} are left if {story}?", "How many {obj} does {name} have if {story}?",
                    "How many are left if {story}?", "How many {obj} does {name} have now, if {story}?",
                    "Suppose {story}. How many {obj} does {name} have now?",
                    "Say {story}: how many {obj} are left?"),
    tails=("at the park", "at the store", "on Monday", "after lunch", "that day", "on the way home",
           "at the fair", "in the evening", "at the market", "before school", "on Friday", "at the beach"),
    adjectives=("red", "small", "big", "shiny", "old", "blue", "green", "tiny", "yellow", "pretty", "round"),
    asides=("{Pro} is very happy.", "It is a sunny day.", "{name} likes {obj} a lot.", "{Pro} counts them.",
            "{Pro} smiles.", "The {obj} are nice.", "It starts to rain.", "{name} is busy all day.",
            "{Pro} puts them on a table."),
    openers=("Today,", "On Sunday,", "Last week,", "At school,", "One day,", "This morning,", "Yesterday,"),
)

# Held out: no template here occurs in training (a test checks the generated files), only the vocabulary.
PARAPHRASE_BOOK = Phrasebook(
    starts=("{name} begins with {n} {obj}.", "In the morning, {name} has {n} {obj}.",
            "There are {n} {obj} in {name}'s bag."),
    start_clauses=("{name} begins with {n} {obj}", "{name} keeps {n} {obj} in a jar"),
    adds=("{verb} another {n} {obj}", "{verb} an extra {n}", "{verb} {n} additional {obj}"),
    subs=("{verb} {n} of the {obj}", "{verb} {n} of {poss} {obj}", "gives {poss} {relative} {n} {obj}"),
    more=("{other} has {n} {obj} more than {name} does.",),
    fewer=("{other} has {n} {obj} fewer than {name} does.",),
    connectives=("A bit later,", "After a while,", "Soon after,"),
    joiners=(" and later ", ", and after that ", "; later "),
    link=", and {pro} ",
    questions=("How many {obj} does {name} end up with?", "What is the number of {obj} {name} has in the end?",
               "How many {obj} does {name} have after all this?"),
    nameless_questions=("How many {obj} remain?",),
    question_first=("If {story}, how many {obj} does {name} have in the end?", "If {story}, how many {obj} remain?"),
)

BOOKS = {"train": TRAIN_BOOK, "paraphrase": PARAPHRASE_BOOK}

# Story shapes, by probability: a comparison opens this share of problems (sentence form only), the
# question comes first in this share, and two consecutive changes share one sentence in this share.
# Comparisons at 0.15 were too rare for the wide phrasebook: "N fewer than" came out as "+N" in 8 of the 17
# in-distribution failures of a default run (91.5% CoT); at 0.25 the run gets 96.5% (README).
COMPARISON_SHARE = 0.25
QUESTION_FIRST_SHARE = 0.2
COMPOUND_SHARE = 0.35
CONNECTIVE_SHARE = 0.6  # a later sentence opens with a connective ("Then she ...")
FIRST_CONNECTIVE_SHARE = 0.15  # the first change's sentence does ("On Monday, she ...")
SMALL_NUMBER_SHARE = 0.2  # numbers drawn from 1-9 instead of 10-99
N_OPS_WEIGHTS = {1: 1, 2: 2, 3: 2}  # 20% one change, 40% two, 40% three


@dataclass(frozen=True)
class Problem:
    """A word problem: `numbers[0]` then `ops[i]` applied with `numbers[i + 1]`."""

    numbers: tuple[int, ...]
    ops: tuple[str, ...]  # "+" or "-", one per step
    question: str

    @property
    def key(self) -> tuple[int, ...]:
        """Identity used to keep held-out problems out of training: the numbers in story order.

        Stricter than (numbers, ops), and checkable from any problem text alone (the operations of a
        direct-answer document are only in its verbs); the wording does not matter.
        """
        return self.numbers

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


def _amount(rng: random.Random, high: int) -> int:
    """A number in 1..high: mostly two-digit, a share one-digit (all one-digit when high < 10)."""
    if high < 10 or rng.random() < SMALL_NUMBER_SHARE:
        return rng.randint(1, min(9, high))
    return rng.randint(10, high)


def random_problem(rng: random.Random, n_ops: int | None = None, book: Phrasebook = TRAIN_BOOK) -> Problem:
    """Draw a problem with 1 to 3 operations on numbers 1-99, told from `book`; no amount goes below zero."""
    if n_ops is None:
        n_ops = rng.choices(list(N_OPS_WEIGHTS), weights=list(N_OPS_WEIGHTS.values()))[0]
    if n_ops < 1:
        raise ValueError(f"n_ops: must be >= 1, got {n_ops}")
    numbers = [_amount(rng, 99)]
    ops: list[str] = []
    value = numbers[0]
    for _ in range(n_ops):
        # Subtract only what is there, so every intermediate amount stays >= 0.
        op = rng.choice("+-") if value >= 1 else "+"
        n = _amount(rng, 99 if op == "+" else min(99, value))
        value = value + n if op == "+" else value - n
        numbers.append(n)
        ops.append(op)
    question = _word_problem(rng, tuple(numbers), tuple(ops), book)
    return Problem(tuple(numbers), tuple(ops), question)


TAIL_SHARE = 0.2  # a verb phrase gets a tail ("at the park"), when the book has tails
ADJECTIVE_SHARE = 0.15  # an object in a verb phrase gets an adjective
ASIDE_SHARE = 0.12  # a number-free sentence follows a change
OPENER_SHARE = 0.15  # the story opens with a phrase before the subject


def _verb_phrase(rng: random.Random, book: Phrasebook, op: str, n: int, obj: str, poss: str) -> str:
    template = rng.choice(book.adds if op == "+" else book.subs)
    verb = rng.choice(ADD_VERBS if op == "+" else SUB_VERBS)
    if book.adjectives and rng.random() < ADJECTIVE_SHARE:
        obj = f"{rng.choice(book.adjectives)} {obj}"
    text = template.format(verb=verb, n=n, obj=obj, poss=poss, relative=rng.choice(RELATIVES))
    if book.tails and rng.random() < TAIL_SHARE:
        text += " " + rng.choice(book.tails)
    return text


def _capitalize(text: str) -> str:
    return text[:1].upper() + text[1:]


def _word_problem(rng: random.Random, numbers: tuple[int, ...], ops: tuple[str, ...], book: Phrasebook) -> str:
    name, pro, poss = rng.choice(NAMES)
    obj = rng.choice(OBJECTS)
    if rng.random() < QUESTION_FIRST_SHARE:
        # "How many cards are left if Ruby has 63 cards and she gets 43 more, then loses 61?"
        story = rng.choice(book.start_clauses).format(name=name, n=numbers[0], obj=obj)
        story += book.link.format(pro=pro)
        phrases = [_verb_phrase(rng, book, op, n, obj, poss) for op, n in zip(ops, numbers[1:])]
        story += phrases[0] + "".join(rng.choice(book.joiners) + p for p in phrases[1:])
        return _capitalize(rng.choice(book.question_first).format(story=story, obj=obj, name=name))

    start = rng.choice(book.starts).format(name=name, n=numbers[0], obj=obj)
    if book.openers and rng.random() < OPENER_SHARE and not start.startswith(("At ", "In ")):
        start = f"{rng.choice(book.openers)} {start}"
    sentences = [start]
    step = 0
    compared = False
    if rng.random() < COMPARISON_SHARE:
        # "Ann has 25 more apples than Tom." The rest of the story is about Ann, whose amount is Tom's +- 25.
        other, other_pro, other_poss = rng.choice([entry for entry in NAMES if entry[0] != name])
        comparison = rng.choice(book.more if ops[0] == "+" else book.fewer)
        sentences.append(comparison.format(other=other, name=name, n=numbers[1], obj=obj))
        name, pro, poss = other, other_pro, other_poss
        step, compared = 1, True
    first = True
    while step < len(ops):
        text = _verb_phrase(rng, book, ops[step], numbers[step + 1], obj, poss)
        step += 1
        if step < len(ops) and rng.random() < COMPOUND_SHARE:
            # "She gets 43 more, then loses 61."
            text += rng.choice(book.joiners) + _verb_phrase(rng, book, ops[step], numbers[step + 1], obj, poss)
            step += 1
        if rng.random() < (CONNECTIVE_SHARE if not first else FIRST_CONNECTIVE_SHARE):
            sentences.append(f"{rng.choice(book.connectives)} {pro} {text}.")
        else:
            sentences.append(f"{_capitalize(pro)} {text}.")
        if book.asides and rng.random() < ASIDE_SHARE:
            sentences.append(rng.choice(book.asides).format(Pro=_capitalize(pro), name=name, obj=obj))
        first = False
    questions = book.questions if compared else book.questions + book.nameless_questions
    sentences.append(rng.choice(questions).format(name=name, obj=obj))
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


def solution(problem: Problem, mode: str = "cot") -> str:
    """The response for `mode`: the worked solution ("cot") or just the answer line ("direct").

    A neutral prompt has no one response: the data builder decides how often it is answered each way.
    """
    if mode == "cot":
        return worked_solution(problem)
    if mode == "direct":
        return direct_answer(problem)
    raise ValueError(f"mode must be 'cot' or 'direct', got {mode!r}")


def make_instruction(problem: Problem | str, mode: Mode = "cot") -> str:
    """The problem text followed by the chain-of-thought or direct-answer cue; "neutral": the text alone."""
    question = problem.question if isinstance(problem, Problem) else problem
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "neutral":
        return question
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
