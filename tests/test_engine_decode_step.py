"""The written-out one-token decode step (`llm_core.engine.decode_step`): bit for bit the model's own cached
forward, used only where the model's blocks are the plain ones."""
from __future__ import annotations

import pytest
import torch

from engine_fakes import ByteTokenizer, tiny_model
from test_engine_cache import NO_STOP, PROMPT, reference_greedy
from llm_core import Engine, GPT, GPTConfig
from llm_core.adapters import add_adapters
from llm_core.engine import KVCache
from llm_core.engine.decode_step import one_token_features, step_applies


def _prefilled(model, rows: int, prompt_len: int = 5) -> tuple[KVCache, torch.Tensor]:
    cache = KVCache.for_model(model, rows, 16)
    prompt = torch.arange(3, 3 + prompt_len).repeat(rows, 1)  # (rows, P)
    with torch.no_grad():
        model.features(prompt, torch.arange(prompt_len), cache)
    cache.advance(prompt_len)
    return cache, torch.tensor([[7 + r] for r in range(rows)])  # the next token of each row (rows, 1)


def _both(model, rows: int) -> tuple[torch.Tensor, torch.Tensor, KVCache, KVCache]:
    """The written-out step and the model's forward from equal caches: (h, h_ref, cache, cache_ref)."""
    cache, tokens = _prefilled(model, rows)
    cache_ref, _ = _prefilled(model, rows)
    with torch.no_grad():
        h = one_token_features(model, tokens, cache)
        h_ref = model.features(tokens, torch.tensor([cache_ref.length]), cache_ref)[:, -1]
    return h, h_ref, cache, cache_ref


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("rows", [1, 3])
def test_the_step_is_the_models_forward_bit_for_bit(dtype, rows):
    model = tiny_model(seed=1, dtype=dtype)
    assert step_applies(model)
    h, h_ref, cache, cache_ref = _both(model, rows)
    assert h.shape == (rows, model.config.d_model)
    assert torch.equal(h, h_ref)
    for layer in range(model.config.n_layers):  # the new keys and values are written where the forward writes
        assert torch.equal(cache.keys[layer], cache_ref.keys[layer])
        assert torch.equal(cache.values[layer], cache_ref.values[layer])


def test_the_step_calls_an_adapter_on_a_linear_as_the_forward_does():
    model = add_adapters(tiny_model(seed=2), rank=2, generator=torch.Generator().manual_seed(0))
    for name, p in model.named_parameters():  # LoRA's B starts at zero: make the adapters count
        if name.endswith(".B"):
            with torch.no_grad():
                p.normal_(0, 1.0, generator=torch.Generator().manual_seed(1))
    model.eval()
    assert step_applies(model)
    h, h_ref, _, _ = _both(model, 2)
    assert torch.equal(h, h_ref)
    plain = tiny_model(seed=2)
    assert not torch.allclose(h, _both(plain, 2)[0])  # the adapters changed the result


def test_the_step_applies_only_to_plain_blocks_in_eval():
    model = tiny_model()
    model.train()
    assert not step_applies(model)  # dropout may be on: the model's forward decides
    model.eval()
    model.blocks[1].mlp.train()
    assert not step_applies(model)
    moe = GPT(GPTConfig(vocab_size=257, context_length=16, d_model=32, n_layers=2, n_heads=2, moe_experts=2)).eval()
    assert not step_applies(moe)  # a Mixture-of-Experts layer keeps the model's forward
    assert not step_applies(torch.nn.Linear(2, 2))


def test_an_engine_over_a_mixture_of_experts_model_still_decodes_exactly():
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=257, context_length=16, d_model=32, n_layers=2, n_heads=2, moe_experts=2, moe_top_k=1)
    model = GPT(cfg).double().eval()
    assert Engine(model, ByteTokenizer()).generate_ids(PROMPT, 4, NO_STOP) == reference_greedy(model, PROMPT, 4, 16)


def test_a_full_cache_is_refused_with_its_size():
    model = tiny_model()
    cache, tokens = _prefilled(model, 1)
    cache.length = cache.max_len
    with pytest.raises(RuntimeError, match="KV cache overflow: 17 positions x 1 rows > 16 x 1"):
        one_token_features(model, tokens, cache)


def test_the_engine_decodes_a_plain_model_with_the_step_and_stays_exact(monkeypatch):
    import llm_core.engine.fast as fast

    calls = []
    real = fast.one_token_features
    monkeypatch.setattr(fast, "one_token_features", lambda *a: calls.append(a[1].shape) or real(*a))
    model = tiny_model(seed=4)
    out = Engine(model, ByteTokenizer()).generate_ids(PROMPT, 5, NO_STOP)
    assert out == reference_greedy(model, PROMPT, 5, 16)
    assert calls == [(1, 1)] * 4  # every one-token step (the prompt's prefill runs the forward)
