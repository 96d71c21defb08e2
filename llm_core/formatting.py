"""The Alpaca prompt format: the ONE place that turns (instruction, input, output) into text and ids.

Taori et al., "Stanford Alpaca: An Instruction-following LLaMA Model" (2023) introduced this template:
a fixed header, an "### Instruction:" section, an optional "### Input:" section and "### Response:".
Instruction finetuning, DPO, evaluation and chat all build prompts here, so a model is always queried in
exactly the format it was trained on (a single changed space or newline measurably hurts a small model).

The end-of-text control token is appended BY ID (`tokenizer.eot_id`) after each response: the tokenizer
never produces it from text, so only this module decides where a response ends.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import DataError

if TYPE_CHECKING:
    from .tokenizer import Tokenizer

HEADER = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request."
)
INSTRUCTION_MARKER = "### Instruction:"
INPUT_MARKER = "### Input:"
RESPONSE_MARKER = "### Response:"


def _check_str(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise DataError(f"{field}: must be a string, got {type(value).__name__}")
    return value


def format_prompt(instruction: str, input: str = "") -> str:
    """The prompt up to and including "### Response:\\n"; the "### Input:" section only if `input` is set."""
    instruction = _check_str(instruction, "instruction")
    input = _check_str(input, "input")
    if not instruction.strip():
        raise DataError("instruction: must not be empty")
    text = f"{HEADER}\n\n{INSTRUCTION_MARKER}\n{instruction}\n\n"
    if input:
        text += f"{INPUT_MARKER}\n{input}\n\n"
    return text + f"{RESPONSE_MARKER}\n"


def format_example(instruction: str, input: str, output: str) -> tuple[str, str]:
    """(prompt, response) text of one training example; the response is `output` verbatim."""
    return format_prompt(instruction, input), _check_str(output, "output")


def encode_example(
    tokenizer: "Tokenizer", instruction: str, input: str, output: str, add_eot: bool = True
) -> tuple[list[int], list[int]]:
    """(prompt_ids, response_ids); response_ids end with `tokenizer.eot_id` when `add_eot`.

    Prompt and response are encoded separately so the boundary between them is exact: the loss mask
    (train on the response only) needs to know which ids belong to which part.
    """
    prompt, response = format_example(instruction, input, output)
    response_ids = tokenizer.encode(response)
    if add_eot:
        response_ids.append(tokenizer.eot_id)
    return tokenizer.encode(prompt), response_ids


def split_response(text: str) -> str:
    """The model's answer inside `text` (a prompt plus its continuation, or a continuation alone).

    Takes what follows the first "### Response:" (all of `text` if there is none) and cuts it where the
    model starts a new section ("### Instruction:" etc.) or writes a literal "<|endoftext|>", which small
    models do when they run past the end of their answer.
    """
    text = _check_str(text, "text")
    _, marker, after = text.partition(RESPONSE_MARKER)
    answer = after if marker else text
    for stop in ("\n### ", "<|endoftext|>"):
        answer = answer.split(stop, 1)[0]
    return answer.strip()
