"""Streaming: whole UTF-8 characters from accumulated bytes, stop strings, pieces == full decode."""
from __future__ import annotations

import torch
import torch.nn as nn

from engine_fakes import ByteTokenizer, tiny_model
from llm_core.engine import SamplingParams
from llm_core import Engine
from llm_core.engine import StopStringFilter, Utf8Stream
from llm_core.model import GPTConfig


class ScriptedModel(nn.Module):
    """Emits a fixed token script, one token per forward call (ignores its input and the cache)."""

    def __init__(self, script: list[int]) -> None:
        super().__init__()
        self.config = GPTConfig(vocab_size=257, context_length=64, d_model=8, n_layers=1, n_heads=1)
        self.anchor = nn.Parameter(torch.zeros(1))
        self.script = script
        self.calls = 0

    def forward(self, idx, positions=None, cache=None):
        B, T = idx.shape
        logits = torch.zeros(B, T, 257)
        logits[:, -1, self.script[min(self.calls, len(self.script) - 1)]] = 1.0
        self.calls += 1
        return logits


TEXT = "héllo 🙂 wörld"


def scripted_engine() -> Engine:
    return Engine(ScriptedModel(list(TEXT.encode()) + [256]), ByteTokenizer())


def test_utf8_stream_emits_whole_characters():
    stream = Utf8Stream()
    data = "a🙂é".encode()
    pieces = [stream.feed(data[i : i + 1]) for i in range(len(data))] + [stream.flush()]
    assert "".join(pieces) == "a🙂é"
    assert "🙂" in pieces and "é" in pieces  # each released whole, at its last byte
    assert all("\ufffd" not in p for p in pieces)


def test_stream_pieces_concatenate_to_full_decode_with_split_characters():
    engine = scripted_engine()
    pieces = list(engine.stream("hi", max_new_tokens=100))
    assert "".join(pieces) == TEXT
    assert "🙂" in pieces  # 4 tokens, one piece
    assert engine.last_stats.stop_reason == "eot"


def test_stream_equals_decode_of_generated_ids_random_model():
    model = tiny_model(context_length=16, seed=2)
    tok = ByteTokenizer()
    ids = Engine(model, tok).generate_ids(tok.encode("abc"), 40, SamplingParams(temperature=1.0, seed=3, stop_ids=()))
    pieces = list(Engine(model, tok).stream("abc", 40, SamplingParams(temperature=1.0, seed=3, stop_ids=())))
    assert "".join(pieces) == tok.decode(ids)  # invalid bytes become U+FFFD exactly like a full decode
    assert len(pieces) > 1


def test_stream_honours_stop_string_split_across_tokens():
    engine = scripted_engine()
    assert "".join(engine.stream("hi", 100, SamplingParams(stop=["wö"]))) == "héllo 🙂 "
    assert engine.last_stats.stop_reason == "stop"
    engine = scripted_engine()
    assert "".join(engine.stream("hi", 100, SamplingParams(stop=["xyz"]))) == TEXT


def test_stop_filter_holds_back_possible_prefix():
    f = StopStringFilter(["\n###"])
    assert f.feed("answer\n#") == "answer"
    assert f.feed("#x") == "\n##x"
    assert f.feed("\n##") == ""
    assert f.feed("# rest") == "" and f.stopped
    assert f.flush() == ""


def test_max_new_tokens_cuts_stream():
    engine = scripted_engine()
    assert "".join(engine.stream("hi", 3)) == "hé"  # h, then the two bytes of é
    assert engine.last_stats.stop_reason == "length"
