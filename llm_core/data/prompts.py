"""Prompts with a checkable answer, for reinforcement learning: the policy writes the responses itself.

RL needs no reference responses, only a way to score what the policy writes. Each example is a prompt
(Alpaca format, `llm_core.formatting`) and its record, which a `Reward` reads (for the default
experiment: the integer `answer`). Alpaca instruction files work as they are: a record without `answer`
takes it from its reference `output` ("The answer is N."), so the SFT file doubles as the RL file.

`prompt_mode` rewrites the default experiment's instruction before it becomes the prompt:
- "as_is": the instruction as written;
- "neutral": the bare problem, its "Think step by step." / "Answer directly." cue removed (pure RL,
  R1-Zero style: whether to reason is left to the policy);
- "cot": the bare problem with the chain-of-thought cue;
- "mixed": neutral and cot in turn (even records neutral, odd ones cued), so that RL after SFT trains the
  cued prompts too instead of only the bare ones (R1 trains on a mixture of prompt styles).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Literal, Sequence, get_args


from ..errors import DataError
from ..experiment.answers import extract_answer
from ..experiment.arithmetic import COT_CUE, DIRECT_CUE
from ..formatting import format_prompt
from .base import ExampleDataset
from .instruction import check_max_length
from .packed import PackedSequences
from .records import RecordStream

PromptMode = Literal["as_is", "neutral", "cot", "mixed"]
PROMPT_MODES: tuple[str, ...] = get_args(PromptMode)
PROMPT_FIELDS = {"instruction": str}
OPTIONAL_FIELDS = {"input": str, "output": str}
CUES = (COT_CUE, DIRECT_CUE)


def bare_question(instruction: str) -> str:
    """The instruction without a trailing answer-style cue."""
    text = instruction.strip()
    for cue in CUES:
        if text.endswith(cue):
            return text[: -len(cue)].rstrip()
    return text


def prompt_instruction(instruction: str, mode: PromptMode, index: int = 0) -> str:
    """The instruction as `mode` asks it; `index` (the record's position) picks the style under "mixed"."""
    if mode == "mixed":
        mode = "neutral" if index % 2 == 0 else "cot"
    if mode == "as_is":
        return instruction
    question = bare_question(instruction)
    return question if mode == "neutral" else f"{question} {COT_CUE}"


class PromptDataset(ExampleDataset):
    """Items: {"prompt_ids": 1-D long tensor, "example": its record}; the record carries `answer` and `prompt`.

    Records are kept here (prompt sets are small and every item needs its record for the reward)."""

    input_offset = 0

    def __init__(self, path_or_records: str | Path | Iterable[dict[str, Any]], tokenizer: Any, max_length: int,
                 prompt_mode: PromptMode = "as_is", vocab_size: int | None = None) -> None:
        check_max_length(max_length)
        if prompt_mode not in PROMPT_MODES:
            raise DataError(f"prompt mode: must be one of {', '.join(PROMPT_MODES)}, got {prompt_mode!r}")
        stream = RecordStream(path_or_records, PROMPT_FIELDS, {**OPTIONAL_FIELDS, "answer": int})
        self.columns = {"prompt_ids": PackedSequences()}
        records, numbers = [], []
        for number, record in stream:
            where = stream.where(number)
            record = dict(record)
            if "answer" not in record:
                answer = extract_answer(record.get("output", ""))
                if answer is None:
                    raise DataError(f"{where}: no 'answer' field and no answer in its 'output' to check against")
                record["answer"] = answer
            prompt = format_prompt(prompt_instruction(record["instruction"], prompt_mode, len(records)),
                                   record.get("input", ""))
            ids = tokenizer.encode(prompt)
            if len(ids) >= max_length:
                raise DataError(f"{where}: prompt of {len(ids)} tokens leaves no room to answer within "
                                f"max_length {max_length}")
            record["prompt"] = prompt
            self.columns["prompt_ids"].append(ids)
            records.append(record)
            numbers.append(number)
        self._finish(stream, numbers, records)
        self.prompt_mode = prompt_mode
        if vocab_size is not None:
            self.check_vocab(vocab_size)

    def _item(self, row: int) -> dict[str, Any]:
        # The record travels with the prompt: the rewards read it (collate keeps it as a list).
        return {"prompt_ids": self.columns["prompt_ids"].seq(row), "example": self._records[row]}


def collate_prompts(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Prompts of different lengths stay separate lists: each is prefilled on its own (one prefill shared
    by its group of completions)."""
    return {"prompt_ids": [item["prompt_ids"].tolist() for item in items],
            "examples": [item["example"] for item in items]}
