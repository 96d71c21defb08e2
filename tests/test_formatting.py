"""The Alpaca prompt format, and control tokens inserted only by id."""
from __future__ import annotations

import pytest

from llm_core import load_tokenizer
from llm_core.bpe import save_bpe, train_bpe
from llm_core.errors import DataError
from llm_core.formatting import (
    HEADER,
    RESPONSE_MARKER,
    encode_example,
    format_example,
    format_prompt,
    split_response,
)

EXPECTED_HEADER = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request."
)


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tok")
    save_bpe(train_bpe(["Add the numbers. 3 + 4 = 7. What is the sum?"] * 5, 300), folder)
    return load_tokenizer(folder)


def test_prompt_with_input():
    assert HEADER == EXPECTED_HEADER
    assert format_prompt("Add the numbers.", "3 + 4") == (
        f"{EXPECTED_HEADER}\n\n### Instruction:\nAdd the numbers.\n\n### Input:\n3 + 4\n\n### Response:\n"
    )


def test_prompt_without_input_omits_section():
    assert format_prompt("Say hi.") == f"{EXPECTED_HEADER}\n\n### Instruction:\nSay hi.\n\n### Response:\n"
    assert "### Input" not in format_prompt("Say hi.", "")


def test_format_example():
    prompt, response = format_example("Add.", "1 + 2", "3")
    assert prompt == format_prompt("Add.", "1 + 2") and response == "3"


def test_encode_example_appends_eot_by_id(tok):
    prompt_ids, response_ids = encode_example(tok, "Add the numbers.", "3 + 4", "7")
    assert tok.decode(prompt_ids) == format_prompt("Add the numbers.", "3 + 4")
    assert response_ids[-1] == tok.eot_id and response_ids[:-1] == tok.encode("7")
    _, no_eot = encode_example(tok, "Add the numbers.", "3 + 4", "7", add_eot=False)
    assert no_eot == tok.encode("7")


def test_eot_text_in_data_never_becomes_control_token(tok):
    prompt_ids, response_ids = encode_example(tok, "Echo <|endoftext|>", "", "<|endoftext|> done")
    assert tok.eot_id not in prompt_ids
    assert response_ids.count(tok.eot_id) == 1 and response_ids[-1] == tok.eot_id


def test_split_response():
    prompt = format_prompt("Add.", "1 + 2")
    assert RESPONSE_MARKER == "### Response:"
    assert split_response(prompt + "The answer is 3.\n\n### Instruction:\nMore") == "The answer is 3."
    assert split_response(prompt + " 3 <|endoftext|> junk") == "3"
    assert split_response("just a continuation") == "just a continuation"


def test_bad_fields():
    with pytest.raises(DataError, match="instruction: must not be empty"):
        format_prompt("   ")
    with pytest.raises(DataError, match="input: must be a string, got int"):
        format_prompt("Add.", 3)
    with pytest.raises(DataError, match="output: must be a string, got NoneType"):
        format_example("Add.", "", None)
