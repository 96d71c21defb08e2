"""KV cache: cached greedy == the documented uncached reference, in-place buffers, reuse across turns."""
from __future__ import annotations

import pytest
import torch

from engine_fakes import ByteTokenizer, tiny_model
from llm_core.engine import SamplingParams
from llm_core import Engine, GenerationError
from llm_core.engine import KVCache

NO_STOP = SamplingParams(stop_ids=())  # greedy, never stopping early


def reference_greedy(model, prompt: list[int], n: int, window: int) -> list[int]:
    """Uncached reference of the documented window rule: full forward over seq[s:t] for every token."""
    seq = list(prompt)
    s = max(0, len(seq) - window)
    keep = max(1, window // 2)
    out = []
    with torch.no_grad():
        for _ in range(n):
            t = len(seq)
            if t - s > window:
                s = t - keep
            logits = model(torch.tensor([seq[s:t]]))[0, -1]  # positions 0..t-s-1, plain causal SDPA
            tok = int(logits.argmax())
            seq.append(tok)
            out.append(tok)
    return out


@pytest.fixture(scope="module")
def model():
    return tiny_model(context_length=16)


PROMPT = [72, 101, 108, 108, 111, 32, 119]


@pytest.mark.parametrize("n_new", [1, 5, 9, 30, 50])
def test_cached_equals_uncached_no_window(model, n_new):
    # Without a window, W = context length (16): 30 and 50 new tokens run well past the context.
    engine = Engine(model, ByteTokenizer())
    got = engine.generate_ids(PROMPT, n_new, NO_STOP)
    assert got == reference_greedy(model, PROMPT, n_new, 16)
    assert len(got) == n_new


@pytest.mark.parametrize("window,n_new", [(4, 3), (4, 20), (5, 23), (8, 40), (1, 6)])
def test_cached_equals_uncached_with_window(model, window, n_new):
    engine = Engine(model, ByteTokenizer())
    got = engine.generate_ids(PROMPT, n_new, SamplingParams(window=window, stop_ids=()))
    assert got == reference_greedy(model, PROMPT, n_new, window)
    if PROMPT.__len__() + n_new > window + 1:
        assert engine.last_stats.reencodes > 0
    assert engine.cache.max_len == window  # memory bounded by the window


def test_long_prompt_with_window_keeps_last_tokens(model):
    prompt = list(range(40, 70))  # 30 tokens > context 16
    engine = Engine(model, ByteTokenizer())
    got = engine.generate_ids(prompt, 12, SamplingParams(window=8, stop_ids=()))
    assert got == reference_greedy(model, prompt, 12, 8)
    assert engine.last_stats.truncated_tokens == 22


def test_prompt_longer_than_context_needs_opt_in(model):
    engine = Engine(model, ByteTokenizer())
    prompt = list(range(40, 60))  # 20 > 16
    with pytest.raises(GenerationError, match="20 tokens.*context length 16"):
        engine.generate_ids(prompt, 3)
    got = engine.generate_ids(prompt, 3, SamplingParams(truncate=True, stop_ids=()))
    assert got == reference_greedy(model, prompt, 3, 16)
    assert engine.last_stats.truncated_tokens == 4


def test_buffers_preallocated_and_written_in_place(model):
    engine = Engine(model, ByteTokenizer())
    steps = engine.stream_ids(PROMPT, 30, SamplingParams(window=6, stop_ids=()))
    next(steps)
    ptrs = [t.data_ptr() for t in engine.cache.keys + engine.cache.values]
    lengths = set()
    for _ in range(25):  # includes several window slides
        next(steps)
        lengths.add(engine.cache.length)
        assert [t.data_ptr() for t in engine.cache.keys + engine.cache.values] == ptrs
    assert max(lengths) <= 6 and len(lengths) > 1


def test_kv_cache_attend_matches_causal_attention():
    # Independent check of the mask for a chunk appended after existing entries.
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 3, 7, 4, generator=g, dtype=torch.float64) for _ in range(3))
    cache = KVCache(1, 2, 3, 10, 4, dtype=torch.float64)
    cache.attend(0, q[:, :, :4], k[:, :, :4], v[:, :, :4])
    cache.advance(4)
    y = cache.attend(0, q[:, :, 4:], k[:, :, 4:], v[:, :, 4:])
    scores = q @ k.transpose(-1, -2) / 2.0  # sqrt(head_dim=4)
    scores = scores.masked_fill(torch.ones(7, 7, dtype=torch.bool).triu(1), float("-inf"))
    expected = torch.softmax(scores, -1) @ v
    assert torch.allclose(y, expected[:, :, 4:])


def test_multi_turn_reuses_cache_and_matches_fresh(model):
    engine = Engine(model, ByteTokenizer())
    first = engine.generate_ids(PROMPT, 4, NO_STOP)
    assert not engine.last_stats.reused
    turn2 = PROMPT + first + [10, 65]
    second = engine.generate_ids(turn2, 3, NO_STOP)
    assert engine.last_stats.reused
    assert engine.last_stats.reused_tokens == len(PROMPT) + 3  # the last sampled token was not yet fed
    assert engine.last_stats.prefilled_tokens == 3
    assert second == Engine(model, ByteTokenizer()).generate_ids(turn2, 3, NO_STOP)
    engine.reset()
    engine.generate_ids(turn2, 3, NO_STOP)
    assert not engine.last_stats.reused


def test_same_prompt_again_is_served_from_cache(model):
    engine = Engine(model, ByteTokenizer())
    a = engine.generate_ids(PROMPT, 1, NO_STOP)
    b = engine.generate_ids(PROMPT + a, 2, NO_STOP)  # nothing new beyond the unfed token
    assert engine.last_stats.reused
    assert b == reference_greedy(model, PROMPT + a, 2, 16)
    c = engine.generate_ids(PROMPT, 2, NO_STOP)  # not an extension: fresh prefill
    assert not engine.last_stats.reused
    assert c == reference_greedy(model, PROMPT, 2, 16)


def test_refused_call_leaves_cache_usable(model):
    engine = Engine(model, ByteTokenizer())
    first = engine.generate_ids(PROMPT, 4, NO_STOP)
    bad = [
        dict(ids=[], max_new_tokens=3),
        dict(ids=list(range(40, 60)), max_new_tokens=3),
        dict(ids=PROMPT, max_new_tokens=3, temperature=-1.0),
        dict(ids=PROMPT, max_new_tokens=3, temperature=1.0, top_p=0.0),
        dict(ids=PROMPT, max_new_tokens=3, temperature=1.0, top_p=1.5),
        dict(ids=PROMPT, max_new_tokens=-1),
        dict(ids=[300], max_new_tokens=3),
        dict(ids=PROMPT, max_new_tokens=3, window=17),
    ]
    for kwargs in bad:
        with pytest.raises(GenerationError):
            ids, max_new_tokens = kwargs.pop("ids"), kwargs.pop("max_new_tokens")
            engine.generate_ids(ids, max_new_tokens, SamplingParams(**kwargs))
    turn2 = PROMPT + first + [10]
    assert engine.generate_ids(turn2, 3, NO_STOP) == reference_greedy(model, turn2, 3, 16)
    assert engine.last_stats.reused


def test_engine_restores_training_mode(model):
    model.train()
    try:
        out = Engine(model, ByteTokenizer()).generate_ids(PROMPT, 3, NO_STOP)
        assert model.training  # the caller's mode is left as it was
    finally:
        model.eval()
    assert out == reference_greedy(model, PROMPT, 3, 16)


def test_engine_restores_a_mixed_training_mode_and_samples_without_dropout():
    """Only the modules that were training are switched off for the forward, and exactly those back."""
    model = tiny_model()
    for m in model.modules():  # dropout everywhere, so a module left training would change the tokens
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.5
        if hasattr(m, "n_heads"):
            m.dropout = 0.5
    model.blocks[0].train()  # one submodule left training: its dropout must not run during sampling
    training = {name for name, m in model.named_modules() if m.training}
    out = Engine(model, ByteTokenizer()).generate_ids(PROMPT, 3, NO_STOP)
    assert {name for name, m in model.named_modules() if m.training} == training
    model.eval()
    assert out == reference_greedy(model, PROMPT, 3, 16)


def test_stream_ids_equals_generate_ids_and_a_prompt_extending_the_conversation_reuses_the_cache():
    from engine_fakes import ByteTokenizer, tiny_model

    from llm_core import Engine

    engine = Engine(tiny_model(context_length=64, seed=3), ByteTokenizer())
    first = engine.generate_ids([5, 6, 7], 6, NO_STOP)
    engine.reset()
    assert list(engine.stream_ids([5, 6, 7], 6, NO_STOP)) == first
    history = engine.conversation_ids
    assert history[:3] == [5, 6, 7] and history[3:] == first
    engine.generate_ids(history + [9, 10], 3, NO_STOP)
    assert engine.last_stats.reused_tokens > 0 and engine.last_stats.prefilled_tokens <= 3
