"""The written-out one-token decode step (`llm_core.engine.decode_step`): bit for bit the model's own cached
forward, used only where the model's blocks are the plain ones."""
from __future__ import annotations

import pytest
import torch

from engine_fakes import ByteTokenizer, tiny_model
from test_engine_cache import NO_STOP, PROMPT, reference_greedy
from llm_core import Engine, GPT, GPTConfig
from llm_core.adapters import add_adapters
from llm_core.device import supports_bf16
from llm_core.engine import KVCache, SamplingParams
from llm_core.engine.decode_step import StepPlan, one_token_features, plan_step, step_applies


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


def _count_steps(monkeypatch) -> list:
    calls, real = [], StepPlan.__call__
    monkeypatch.setattr(StepPlan, "__call__", lambda plan, tokens, cache: calls.append(tokens.shape) or
                        real(plan, tokens, cache))
    return calls


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])  # fp64: the model itself; fp32: a copy
@pytest.mark.parametrize("threads", [1, 2])  # fp32 on one thread: the packed copy; on two: the split copy
def test_the_engine_decodes_a_plain_model_with_the_step_and_stays_exact(monkeypatch, threads, dtype):
    from llm_core.engine.fast import FastPaths

    calls = _count_steps(monkeypatch)
    model = tiny_model(seed=4, dtype=dtype)
    engine = Engine(model, ByteTokenizer(), FastPaths(threads=threads))
    out = engine.generate_ids(PROMPT, 5, NO_STOP)
    assert out == reference_greedy(model, PROMPT, 5, 16)
    assert calls == [(1, 1)] * 4  # every one-token step (the prompt's prefill runs the forward)
    calls.clear()
    engine.sample_ids(PROMPT, 3, 4, SamplingParams(temperature=1.0, seed=1, stop_ids=()))  # 3 rows: packed
    assert calls == [(3, 1)] * 3


def test_the_plan_is_made_once_and_follows_in_place_weight_updates(monkeypatch):
    import llm_core.engine.fast as fast

    made = []
    real = fast.plan_step
    monkeypatch.setattr(fast, "plan_step", lambda m: made.append(type(m).__name__) or real(m))
    model = tiny_model(seed=5)  # fp64: the model runs as it is, with its own plan
    engine = Engine(model, ByteTokenizer())
    engine.generate_ids(PROMPT, 6, NO_STOP)
    assert len(made) == 1  # one plan for five steps
    with torch.no_grad():
        model.pos_emb.weight.mul_(1.5)  # the plan reads the weight at each step, not a stale one
        model.blocks[0].ln1.weight.add_(0.25)
    assert engine.generate_ids(PROMPT, 6, NO_STOP) == reference_greedy(model, PROMPT, 6, 16)


def test_a_forward_hook_is_called_as_the_models_forward_calls_it(monkeypatch):
    """The step skips module call wrappers, so with a hook anywhere (registered before or after the Engine
    made its plan, on a module or for every module) the model's own forward runs, and the hook sees it."""
    from torch.nn.modules.module import register_module_forward_hook

    model = tiny_model(seed=6)
    engine = Engine(model, ByteTokenizer())
    engine.generate_ids(PROMPT, 3, NO_STOP)  # the plan exists
    calls = _count_steps(monkeypatch)
    seen = []
    handle = model.blocks[1].ln2.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    assert not step_applies(model)
    got = engine.generate_ids(PROMPT, 4, NO_STOP)
    assert calls == [] and len(seen) == 4  # the prefill and 3 one-token steps, all through the forward
    assert got == reference_greedy(model, PROMPT, 4, 16)
    handle.remove()
    seen.clear()
    engine.generate_ids(PROMPT, 4, NO_STOP)
    assert len(calls) == 3 and seen == []
    handle = register_module_forward_hook(lambda m, i, o: None)
    try:
        assert not step_applies(model) and not plan_step(model.eval())
        engine.generate_ids(PROMPT, 4, NO_STOP)
        assert len(calls) == 3
    finally:
        handle.remove()


def test_one_token_features_refuses_a_model_it_would_not_compute():
    model = tiny_model()
    cache, tokens = _prefilled(model, 1)
    model.train()
    with pytest.raises(ValueError, match="does not apply to this GPT"):
        one_token_features(model, tokens, cache)


@pytest.mark.skipif(not supports_bf16(torch.device("cpu")), reason="this CPU has no bf16 arithmetic")
def test_the_bf16_copy_decodes_with_the_step(monkeypatch):
    """The bf16 copy's Linears are oneDNN-packed modules made in eval mode, so the step applies to it."""
    from llm_core.engine.fast import FastPaths

    calls = _count_steps(monkeypatch)
    model = tiny_model(seed=7, dtype=torch.float32)
    engine = Engine(model, ByteTokenizer(), FastPaths(dtype="bf16"))
    engine.generate_ids(PROMPT, 5, NO_STOP)
    assert calls == [(1, 1)] * 4 and engine.decoder.describe()["dtype"] == "bfloat16"
