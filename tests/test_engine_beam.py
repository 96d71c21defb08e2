"""Beam search: width 1 is greedy, an exhaustive beam finds the brute-force best sequence, the cache rows
reordered in place equal a fresh prefill of every beam, stopping rules, one-line errors."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from engine_fakes import ByteTokenizer, tiny_model
from llm_core import Engine
from llm_core.engine import KVCache, SamplingParams
from llm_core.engine.beam import answer_line_stop, length_penalty_factor
from llm_core.errors import GenerationError
from llm_core.model import GPT, GPTConfig

NO_STOP = SamplingParams(stop_ids=())


class IdTokenizer:
    """A small vocabulary with no text: ids in, nothing out (only eot_id matters)."""

    def __init__(self, n_vocab: int) -> None:
        self.n_vocab = n_vocab
        self.eot_id = n_vocab - 1

    def encode(self, text: str) -> list[int]:
        return [0]

    def decode_bytes(self, ids) -> bytes:
        return b""


def small_vocab_model(vocab: int = 5, seed: int = 3) -> GPT:
    cfg = GPTConfig(vocab_size=vocab, context_length=16, d_model=16, n_layers=2, n_heads=2)
    model = GPT(cfg)
    model.reset_parameters(generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():  # sharper distributions than the GPT-2 init, so the best sequence is unique
        for p in model.parameters():
            if p.dim() > 1:
                p.mul_(8.0)
    return model.double().eval()


@torch.no_grad()
def sequence_logprob(model: GPT, prompt: list[int], cont: list[int]) -> float:
    seq = torch.tensor([prompt + cont])
    logp = torch.log_softmax(model(seq)[0].double(), dim=-1)  # (T, V)
    return sum(float(logp[len(prompt) - 1 + i, t]) for i, t in enumerate(cont))


def test_width_one_equals_greedy():
    engine = Engine(tiny_model(context_length=64), ByteTokenizer())
    prompt = list(b"The cat ")
    greedy = engine.generate_ids(prompt, 20, NO_STOP)
    beam = engine.beam_search(prompt, 1, 20, stop_ids=())
    assert beam.ids == greedy
    assert len(beam.beams) == 1
    assert beam.logprob == pytest.approx(sequence_logprob(engine.model, prompt, greedy), abs=1e-9)


def test_width_one_equals_greedy_across_a_window_slide():
    engine = Engine(tiny_model(context_length=16), ByteTokenizer())
    prompt = list(b"slide me")
    greedy = engine.generate_ids(prompt, 30, NO_STOP)
    assert engine.beam_search(prompt, 1, 30, stop_ids=()).ids == greedy
    assert engine.last_stats.reencodes >= 1


def test_exhaustive_beam_finds_the_brute_force_best():
    V, L = 5, 3
    model = small_vocab_model(V)
    engine = Engine(model, IdTokenizer(V))
    prompt = [1, 3, 2]
    result = engine.beam_search(prompt, V ** (L - 1), L, stop_ids=())
    scored = {c: sequence_logprob(model, prompt, list(c)) for c in itertools.product(range(V), repeat=L)}
    best = max(scored, key=scored.get)
    assert result.ids == list(best)
    assert result.logprob == pytest.approx(scored[best], abs=1e-9)
    # every final beam is in order and carries its true log-probability
    lps = [b.logprob for b in result.beams]
    assert lps == sorted(lps, reverse=True) and len(result.beams) == V ** (L - 1)
    for b in result.beams[:5]:
        assert b.logprob == pytest.approx(scored[tuple(b.ids)], abs=1e-9)


def test_reorder_rows_equal_a_fresh_prefill():
    model = tiny_model(context_length=32)
    g = torch.Generator().manual_seed(0)
    seqs = torch.randint(0, 256, (3, 6), generator=g)  # (3, T)
    cache = KVCache.for_model(model, 3, 32)
    with torch.inference_mode():
        model(seqs, positions=torch.arange(6), cache=cache)
    cache.advance(6)
    order = [2, 0, 0]
    cache.reorder(order)
    fresh = KVCache.for_model(model, 3, 32)
    with torch.inference_mode():
        model(seqs[order], positions=torch.arange(6), cache=fresh)
    for a, b in zip(cache.keys + cache.values, fresh.keys + fresh.values):
        assert torch.allclose(a[:, :, :6], b[:, :, :6], atol=1e-12)


def test_beam_cache_rows_equal_a_fresh_prefill_of_each_beam():
    model = tiny_model(context_length=64)
    engine = Engine(model, ByteTokenizer())
    prompt = list(b"abc")
    engine.beam_search(prompt, 4, 8, stop_ids=())
    rows, cache = engine._rows, engine.cache
    assert len(rows) == 4 and cache.length == len(rows[0])
    for i, row in enumerate(rows):
        fresh = KVCache.for_model(model, 1, 64)
        with torch.inference_mode():
            model(torch.tensor([row]), positions=torch.arange(len(row)), cache=fresh)
        for a, b in zip(cache.keys + cache.values, fresh.keys + fresh.values):
            assert torch.allclose(a[i, :, : len(row)], b[0, :, : len(row)], atol=1e-10)


def test_beam_never_does_worse_than_greedy_and_stops_on_eot():
    engine = Engine(tiny_model(context_length=64), ByteTokenizer())
    prompt = list(b"xy")
    greedy = engine.generate_ids(prompt, 12, NO_STOP)
    wide = engine.beam_search(prompt, 4, 12, stop_ids=())
    assert wide.logprob >= sequence_logprob(engine.model, prompt, greedy) - 1e-9
    # make the most likely first token a stop id: that one-token hypothesis beats every longer one (alpha 0)
    stopped = engine.beam_search(prompt, 3, 12, stop_ids=[greedy[0]])
    assert stopped.best.stopped and stopped.best.ids == []
    assert engine.last_stats.new_tokens < 3 * 12  # the search ended early


def test_answer_line_stop():
    assert answer_line_stop("so 5.\nThe answer is 105.")
    assert not answer_line_stop("so 5.\nThe answer is 10")
    assert answer_line_stop("x\n### Instruction")


def test_length_penalty_factor():
    assert length_penalty_factor(7, 0.0) == 1.0
    assert length_penalty_factor(1, 1.0) == 1.0
    assert length_penalty_factor(7, 0.6) == pytest.approx(math.pow(2.0, 0.6))


@pytest.mark.parametrize("kwargs, message", [
    ({"width": 0}, "width: must be an integer >= 1, got 0"),
    ({"max_new_tokens": 0}, "max_new_tokens: must be an integer >= 1, got 0"),
    ({"length_penalty": -1.0}, "length_penalty: must be a number >= 0, got -1.0"),
    ({"stop_ids": "x"}, "stop_ids: must be a sequence of token ids, got 'x'"),
])
def test_bad_input_is_a_one_line_error(kwargs, message):
    engine = Engine(tiny_model(), ByteTokenizer())
    args = {"width": 2, "max_new_tokens": 4, **kwargs}
    with pytest.raises(GenerationError) as info:
        engine.beam_search([1, 2], **args)
    assert str(info.value) == message and "\n" not in str(info.value)
