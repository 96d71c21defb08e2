"""PromptDataset: how each prompt mode rewrites the instruction, answers read from outputs, clear errors."""
from __future__ import annotations

import pytest

from llm_core.data.prompts import PromptDataset, collate_prompts
from llm_core.errors import DataError
from llm_core.experiment.arithmetic import COT_CUE, DIRECT_CUE
from llm_core.formatting import format_prompt


class ByteTokenizer:
    eot_id = 256
    n_vocab = 257

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))


RECORDS = [
    {"instruction": f"Ann has {n} pens and buys 2 more. How many pens does she have? {cue}", "answer": n + 2}
    for n, cue in [(3, DIRECT_CUE), (4, COT_CUE), (5, DIRECT_CUE), (6, "")]
]


def bare(n: int) -> str:
    return f"Ann has {n} pens and buys 2 more. How many pens does she have?"


def prompts(mode: str) -> list[str]:
    dataset = PromptDataset(RECORDS, ByteTokenizer(), max_length=1000, prompt_mode=mode)
    return [dataset[i]["example"]["prompt"] for i in range(len(dataset))]


def test_each_mode_writes_the_expected_instruction() -> None:
    numbers = (3, 4, 5, 6)
    assert prompts("as_is") == [format_prompt(r["instruction"]) for r in RECORDS]
    assert prompts("neutral") == [format_prompt(bare(n)) for n in numbers]
    assert prompts("cot") == [format_prompt(f"{bare(n)} {COT_CUE}") for n in numbers]
    # mixed: even records bare, odd records cued, whatever cue the record had.
    assert prompts("mixed") == [format_prompt(bare(3)), format_prompt(f"{bare(4)} {COT_CUE}"),
                                format_prompt(bare(5)), format_prompt(f"{bare(6)} {COT_CUE}")]


def test_prompt_ids_are_the_encoded_prompt_and_collate_keeps_records() -> None:
    dataset = PromptDataset(RECORDS, ByteTokenizer(), max_length=1000, prompt_mode="mixed")
    batch = collate_prompts([dataset[0], dataset[1]])
    assert batch["prompt_ids"][1] == list(batch["examples"][1]["prompt"].encode())
    assert [e["answer"] for e in batch["examples"]] == [5, 6]


def test_answer_comes_from_the_output_when_absent() -> None:
    dataset = PromptDataset([{"instruction": "Q?", "output": "1 + 1 = 2.\nThe answer is 2."}], ByteTokenizer(), 1000)
    assert dataset[0]["example"]["answer"] == 2


def test_bad_mode_and_unanswerable_records_are_refused() -> None:
    with pytest.raises(DataError, match="prompt mode: must be one of as_is, neutral, cot, mixed, got 'both'"):
        PromptDataset(RECORDS, ByteTokenizer(), 1000, prompt_mode="both")
    with pytest.raises(DataError, match="no 'answer' field"):
        PromptDataset([{"instruction": "Q?", "output": "no number here"}], ByteTokenizer(), 1000)
    with pytest.raises(DataError, match="leaves no room to answer"):
        PromptDataset(RECORDS, ByteTokenizer(), max_length=20)
