"""The Engine's fast decode paths (`llm_core.engine.fast`): every mode keeps cached == uncached greedy.

bf16 decoding changes the numbers, so it has its own equivalence test against fp32, teacher-forced on an
fp32 greedy continuation: every logit within 1.5% of the logits' spread (measured: 0.4%; bf16 keeps 8
bits of mantissa) and the same top token at >= 95% of positions (measured: all 47).
"""
from __future__ import annotations

import copy

import pytest
import torch

from engine_fakes import ByteTokenizer, tiny_model
from test_engine_cache import PROMPT, reference_greedy
from llm_core import Engine, GenerationError
from llm_core.device import supports_bf16
from llm_core.engine import KVCache, SamplingParams
from llm_core.engine import fast
from llm_core.engine.fast import FastPaths, InferenceHead
from llm_core.engine.decode_step import StepPlan
from llm_core.onednn_linear import PACK_ROWS, is_plain_linear

NO_STOP = SamplingParams(stop_ids=())
HAS_BF16 = supports_bf16(torch.device("cpu"))

MODES = {
    "plain": False,
    "fast": FastPaths(),
    # dynamo traces the static-cache step; the "eager" backend runs the captured graph without generating
    # C++ (inductor's codegen takes minutes on 2 cores; the benchmark measures it)
    "compiled": FastPaths(compile="on", compile_backend="eager"),
}


@pytest.fixture(scope="module")
def model():
    return tiny_model(context_length=16)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("window,n_new", [(None, 30), (5, 23)])
def test_cached_equals_uncached_in_every_mode(model, mode, window, n_new):
    engine = Engine(model, ByteTokenizer(), MODES[mode])
    got = engine.generate_ids(PROMPT, n_new, SamplingParams(window=window, stop_ids=()))
    assert got == reference_greedy(model, PROMPT, n_new, window or 16)
    assert engine.notices == []


def test_fast_is_the_default_and_keeps_a_transposed_head(model):
    engine = Engine(model, ByteTokenizer())
    engine.generate_ids(PROMPT, 3, NO_STOP)
    info = engine.decoder.describe()
    assert info["fast"] and info["head_copy_bytes"] == model.lm_head.weight.numel() * 8  # fp64 (C, V)
    assert not info["compile"]  # not on CPU by default: it does not pay there


def test_weights_changed_after_the_engine_was_built_are_seen(model):
    model = tiny_model(context_length=16, seed=7)
    engine = Engine(model, ByteTokenizer())
    engine.generate_ids(PROMPT, 5, NO_STOP)  # builds the head copy
    with torch.no_grad():  # what an optimizer step does: in place
        model.tok_emb.weight.mul_(-1.5)
        model.blocks[0].mlp.fc.weight.add_(0.3)
    engine.reset()
    assert engine.generate_ids(PROMPT, 12, NO_STOP) == reference_greedy(model, PROMPT, 12, 16)


def test_head_copy_is_rebuilt_only_when_the_weight_changes():
    head = torch.nn.Linear(4, 6, bias=False)
    cache = InferenceHead()
    first = cache.weight_t(head)
    assert first.is_contiguous() and first.shape == (4, 6) and cache.weight_t(head) is first
    with torch.no_grad():
        head.weight.add_(1.0)
    second = cache.weight_t(head)
    assert second is not first and torch.equal(second, head.weight.t())


def test_an_adapted_head_uses_the_adapter(model):
    from llm_core.adapters import add_adapters

    adapted = tiny_model(context_length=16, seed=3, dtype=torch.float32)
    add_adapters(adapted, rank=2, targets="head,attn")
    with torch.no_grad():
        adapted.lm_head.B.normal_(0, 1.0)
    got = Engine(adapted, ByteTokenizer()).generate_ids(PROMPT, 10, NO_STOP)
    assert got == reference_greedy(adapted, PROMPT, 10, 16)


@pytest.mark.skipif(not HAS_BF16, reason="this CPU has no bf16 arithmetic")
def test_bf16_mode_is_exact_with_respect_to_its_own_uncached_forward(model):
    model32 = tiny_model(context_length=16, dtype=torch.float32)
    engine = Engine(model32, ByteTokenizer(), FastPaths(dtype="bf16"))
    got = engine.generate_ids(PROMPT, 25, SamplingParams(window=6, stop_ids=()))
    assert engine.decoder.describe()["dtype"] == "bfloat16" and engine.cache.keys[0].dtype == torch.bfloat16
    assert got == reference_greedy(copy.deepcopy(model32).to(torch.bfloat16), PROMPT, 25, 6)
    assert next(model32.parameters()).dtype == torch.float32  # the caller's model is left as it was


@pytest.mark.skipif(not HAS_BF16, reason="this CPU has no bf16 arithmetic")
def test_bf16_logits_are_within_tolerance_of_fp32_and_mostly_pick_the_same_tokens():
    model32 = tiny_model(context_length=64, seed=5, dtype=torch.float32)
    fp32, bf16 = Engine(model32, ByteTokenizer()), Engine(model32, ByteTokenizer(), FastPaths(dtype="bf16"))
    seq = PROMPT + fp32.generate_ids(PROMPT, 40, NO_STOP)
    got = bf16.generate_ids(PROMPT, 40, NO_STOP)
    assert got[:5] == seq[len(PROMPT):][:5]  # greedy runs agree until a near-tie flips (then they diverge)
    with torch.no_grad():  # teacher-forced on the fp32 continuation: every position's distribution
        want = model32(torch.tensor([seq]))[0]
        have = bf16.decoder.model()(torch.tensor([seq]))[0].float()
    spread = float(want.max() - want.min())
    assert float((have - want).abs().max()) < 0.015 * spread
    assert float((have.argmax(-1) == want.argmax(-1)).float().mean()) >= 0.95


def test_bf16_copy_follows_weight_updates():
    if not HAS_BF16:
        pytest.skip("this CPU has no bf16 arithmetic")
    model32 = tiny_model(context_length=16, seed=6, dtype=torch.float32)
    engine = Engine(model32, ByteTokenizer(), FastPaths(dtype="bf16"))
    engine.generate_ids(PROMPT, 4, NO_STOP)
    with torch.no_grad():
        model32.tok_emb.weight.mul_(-1.0)
    engine.reset()
    got = engine.generate_ids(PROMPT, 10, NO_STOP)
    assert got == reference_greedy(copy.deepcopy(model32).to(torch.bfloat16), PROMPT, 10, 16)


def test_compile_failure_falls_back_with_one_line_notice(model, monkeypatch):
    def broken_compile(fn, **kwargs):
        def run(*args, **kw):
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found in torch._inductor.config.cpp.cxx\n"
                               "(see the second line)")
        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    engine = Engine(model, ByteTokenizer(), FastPaths(compile="on"))
    got = engine.generate_ids(PROMPT, 12, NO_STOP)
    assert got == reference_greedy(model, PROMPT, 12, 16)
    assert len(engine.notices) == 1 and "\n" not in engine.notices[0]
    assert "torch.compile unavailable" in engine.notices[0] and "decoding eagerly" in engine.notices[0]
    assert "InvalidCxxCompiler" in engine.notices[0]
    engine.generate_ids(PROMPT, 5, NO_STOP)
    assert len(engine.notices) == 1  # said once, not every step


@pytest.mark.parametrize("kwargs,field", [({"dtype": "fp16"}, "dtype"), ({"compile": "yes"}, "compile"), ({"threads": 0}, "threads"),
                                          ({"enabled": 1}, "enabled"), ({"screen": "yes"}, "screen")])
def test_fast_paths_are_validated(kwargs, field):
    with pytest.raises(GenerationError, match=f"FastPaths.{field}"):
        FastPaths(**kwargs)


def test_engine_refuses_a_bad_fast_argument(model):
    with pytest.raises(GenerationError, match="fast: must be"):
        Engine(model, ByteTokenizer(), fast="yes")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (compile with CUDA graphs)")
def test_cuda_compiles_with_cuda_graphs_by_default_and_stays_exact():
    model = tiny_model(context_length=16, dtype=torch.float32).cuda()
    engine = Engine(model, ByteTokenizer())
    got = engine.generate_ids(PROMPT, 20, NO_STOP)
    assert engine.decoder.describe()["compile"] and engine.notices == []
    assert got == reference_greedy(model, PROMPT, 20, 16)


def test_threads_setting_applies_during_a_step_and_is_restored(model, monkeypatch):
    seen = []
    engine = Engine(model, ByteTokenizer(), FastPaths(threads=1))
    features = model.features

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return features(*args, **kwargs)

    def step_spy(plan, *args):  # the one-token steps (`decode_step`)
        seen.append(torch.get_num_threads())
        return one_token(plan, *args)

    one_token = StepPlan.__call__
    monkeypatch.setattr(model, "features", spy)
    monkeypatch.setattr(StepPlan, "__call__", step_spy)
    before = torch.get_num_threads()
    got = engine.generate_ids(PROMPT, 6, NO_STOP)
    assert set(seen) == {1} and len(seen) == 6 and torch.get_num_threads() == before
    assert got == reference_greedy(model, PROMPT, 6, 16)


# --- batched rows (sample_batch, beams, RL rollouts) and one thread: oneDNN-packed Linears --------------
HAS_ONEDNN_PACKING = fast.onednn_packing(torch.zeros(1, dtype=torch.float32))


@pytest.mark.skipif(not HAS_ONEDNN_PACKING, reason="this torch build has no oneDNN packed linear")
@pytest.mark.parametrize("x_shape", [(1, 24), (8, 24), (8, 1, 24), (PACK_ROWS + 5, 24)])
def test_packed_linear_computes_the_linear_at_any_row_count(x_shape):
    torch.manual_seed(0)
    linear = torch.nn.Linear(24, 40)
    packed = fast.PackedLinear(linear)
    x = torch.randn(*x_shape)
    want = x.double() @ linear.weight.double().t() + linear.bias.double()  # written out, in fp64
    assert packed(x).shape == (*x_shape[:-1], 40)
    torch.testing.assert_close(packed(x).double(), want, atol=1e-5, rtol=1e-5)


@pytest.mark.skipif(not HAS_ONEDNN_PACKING, reason="this torch build has no oneDNN packed linear")
def test_packed_copy_shares_every_other_parameter_and_follows_weight_updates():
    model = tiny_model(context_length=16, seed=8, dtype=torch.float32)
    copies = fast.LinearsCopy.packed()
    packed = copies.get(model)
    linears = [m for m in packed.modules() if isinstance(m, fast.PackedLinear)]
    assert len(linears) == 4 * model.config.n_layers  # qkv, attention out, fc, proj of every block
    assert is_plain_linear(packed.lm_head)  # the head is InferenceHead's job
    assert {p.data_ptr() for p in packed.parameters()} <= {p.data_ptr() for p in model.parameters()}
    assert all(is_plain_linear(m) for m in model.modules() if isinstance(m, torch.nn.Linear))  # untouched
    assert copies.get(model) is packed  # nothing changed: no repacking
    with torch.no_grad():
        model.blocks[0].mlp.fc.weight.mul_(2.0)
        again = copies.get(model)
        assert again is not packed
        x = torch.randn(3, model.blocks[0].mlp.fc.in_features)
        torch.testing.assert_close(again.blocks[0].mlp.fc(x), model.blocks[0].mlp.fc(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("threads", [1, 2])
def test_batched_fp32_steps_match_the_plain_path_and_the_seeded_single_samples(threads):
    """oneDNN-packed Linears and head, on one thread and on two: same logits as the plain path to fp32
    rounding (stated tolerance 1e-4 of the logits' spread), and sample i of a batch is the single sample
    seeded with derive_seed(seed, i)."""
    from llm_core.engine import derive_seed

    model = tiny_model(context_length=64, seed=9, dtype=torch.float32)
    fast_engine = Engine(model, ByteTokenizer(), FastPaths(threads=threads))
    plain = Engine(model, ByteTokenizer(), False)
    params = SamplingParams(temperature=1.0, seed=5, stop_ids=())
    got = fast_engine.sample_ids(PROMPT, 4, 20, params)
    assert fast_engine.decoder.describe()["packed_linears"] == HAS_ONEDNN_PACKING
    assert got == plain.sample_ids(PROMPT, 4, 20, params)
    for i, (ids, _) in enumerate(got):
        assert ids == fast_engine.generate_ids(PROMPT, 20, params.replace(seed=derive_seed(5, i)))
    seqs = torch.tensor([PROMPT + ids for ids, _ in got])  # (4, T): one batched step at the end of each
    cache = KVCache.for_model(model, 4, 64)
    with torch.no_grad():
        fast_engine.decoder(seqs[:, :-1], torch.arange(seqs.shape[1] - 1), cache)  # prefill: the model itself
        cache.advance(seqs.shape[1] - 1)
        have = fast_engine.decoder(seqs[:, -1:], torch.tensor([seqs.shape[1] - 1]), cache)  # packed step
        want = model(seqs)[:, -1]
    torch.testing.assert_close(have, want, atol=1e-4 * float(want.max() - want.min()), rtol=0)


@pytest.mark.skipif(not HAS_ONEDNN_PACKING, reason="this torch build has no oneDNN packed linear")
def test_batched_steps_under_bf16_autocast_take_autocast_s_linear():
    """RL rollouts decode inside the training step's autocast: the packed fp32 kernels are not autocast
    ops, so there the step must be the plain path's (it raised a dtype mismatch before)."""
    model = tiny_model(context_length=32, seed=10, dtype=torch.float32)
    params = SamplingParams(temperature=1.0, seed=2, stop_ids=())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = Engine(model, ByteTokenizer()).sample_ids(PROMPT, 3, 8, params)
        want = Engine(model, ByteTokenizer(), False).sample_ids(PROMPT, 3, 8, params)
    assert got == want


@pytest.mark.parametrize("packs", [True, False])
def test_a_one_row_fp32_step_runs_the_packed_head_where_onednn_packs_it(monkeypatch, packs):
    """One row on two threads: the block Linears split across the threads, the head oneDNN-packed (faster
    at one row too: `InferenceHead`); where oneDNN does not pack, the head splits as well. Either way the
    greedy tokens are the uncached reference's. (The fp32 head is what runs when the screen does not: a
    sampled step, or `screen=False`.)"""
    if packs and not HAS_ONEDNN_PACKING:
        pytest.skip("this torch build has no oneDNN packed linear")
    if not packs:
        monkeypatch.setattr(fast, "onednn_packing", lambda weight: False)
    heads, splits = [], []
    real_packed, real_split = fast.PackedLinear.forward, fast.split_matmul
    monkeypatch.setattr(fast.PackedLinear, "forward", lambda self, x: heads.append(x.shape[0]) or real_packed(self, x))
    monkeypatch.setattr(fast, "split_matmul", lambda x, *a: splits.append(x.shape[0]) or real_split(x, *a))
    model = tiny_model(context_length=32, seed=12, dtype=torch.float32)
    engine = Engine(model, ByteTokenizer(), FastPaths(threads=2, screen=False))
    got = engine.generate_ids(PROMPT, 6, SamplingParams(stop_ids=()))
    assert got == reference_greedy(model, PROMPT, 6, 32)
    info = engine.decoder.describe()
    assert info["split_threads"] and info["packed_head"] == packs
    assert (heads, splits) == (([1] * 6, []) if packs else ([], [1] * 6))  # prefill's head row + 5 steps
