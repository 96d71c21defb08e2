"""The answer format of the default experiment and a tolerant extractor for model outputs.

Every response, worked or direct, ends with "The answer is N." (as in GSM8K-style evaluation, Cobbe et al.,
"Training Verifiers to Solve Math Word Problems", 2021). Scoring reads that sentence; when a model never
writes it, the last integer in its text is the best guess, so a half-finished chain still gets scored.
"""
from __future__ import annotations

import re

ANSWER_TEMPLATE = "The answer is {}."

_ANSWER_RE = re.compile(r"the answer is\s*(-?\d[\d,]*)", re.IGNORECASE)
_INTEGER_RE = re.compile(r"-?\d+")
# A worked step line: "63+43: 3+3=6, ..." (see llm_core.experiment.arithmetic.column_step).
_STEP_LINE_RE = re.compile(r"^\d+[+-]\d+: ", re.MULTILINE)


def _to_int(text: str) -> int:
    return int(text.replace(",", ""))


def extract_answer(text: str) -> int | None:
    """The N of the first "The answer is N" in `text`; else the last integer in it; None if there is none.

    The first answer sentence wins: a model that keeps generating after answering often starts a new,
    unrelated problem, and its first answer is the one it committed to.
    """
    match = _ANSWER_RE.search(text)
    if match:
        return _to_int(match.group(1))
    numbers = _INTEGER_RE.findall(text)
    return int(numbers[-1]) if numbers else None


def split_reasoning(text: str) -> tuple[str, str]:
    """Split a response into (reasoning, answer sentence).

    The answer sentence runs from the first "The answer is" to the end of that sentence; the reasoning is
    everything before it (stripped). Without an answer sentence the whole text is reasoning.
    """
    match = _ANSWER_RE.search(text)
    if not match:
        return text.strip(), ""
    end = text.find(".", match.end())
    end = len(text) if end < 0 else end + 1
    return text[: match.start()].strip(), text[match.start() : end].strip()


def is_step_by_step(text: str) -> bool:
    """True when a response works the problem out (has at least one column-by-column step line).

    What a neutral prompt's answer is measured by: the share of responses that reason unasked.
    """
    return _STEP_LINE_RE.search(text) is not None
