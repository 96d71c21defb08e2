"""One-row matmuls split across threads (`llm_core.engine.split_linear`): the same linear map, written out in
fp64, at fp32 rounding (stated tolerance 1e-5 relative), and the Engine's fp32 decoding on it keeps
cached == uncached greedy tokens."""
from __future__ import annotations

import pytest
import torch

from engine_fakes import ByteTokenizer, tiny_model
from test_engine_cache import PROMPT, reference_greedy
from llm_core import Engine
from llm_core.engine import KVCache, SamplingParams
from llm_core.engine.fast import FastPaths, LinearsCopy
from llm_core.engine.split_linear import SplitLinear, split_applies, split_matmul
from llm_core.onednn_linear import is_plain_linear


def written_out(x, weight, bias):
    """x W^T + b in fp64."""
    out = x.double() @ weight.double().t()
    return out + bias.double() if bias is not None else out


@pytest.mark.parametrize("parts", [1, 2, 3, 4, 201])  # 1: unsplit; more parts than columns: unsplit
@pytest.mark.parametrize("rows,n_out", [(1, 40), (1, 200), (3, 40)])  # 40 / 3: a rest; 3 rows: F.linear
@pytest.mark.parametrize("with_bias", [True, False])
def test_split_matmul_is_the_linear_map_written_out(parts, rows, n_out, with_bias):
    g = torch.Generator().manual_seed(parts)
    weight = torch.randn(n_out, 24, generator=g)  # (out, in): split 2 / 3 (with a rest) / 4 ways
    bias = torch.randn(n_out, generator=g) if with_bias else None
    x = torch.randn(rows, 24, generator=g)
    got = split_matmul(x, weight, bias, parts)
    assert got.shape == (rows, n_out) and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), written_out(x, weight, bias), atol=1e-5, rtol=1e-5)


def test_split_matmul_leaves_more_than_one_row_to_linear(monkeypatch):
    """Steps of several rows run oneDNN-packed weights (`fast.PackedLinear`); the split is for one row."""
    calls, real = [], torch.bmm
    monkeypatch.setattr(torch, "bmm", lambda *a, **k: calls.append(a) or real(*a, **k))
    x, weight = torch.randn(3, 24), torch.randn(40, 24)
    assert torch.equal(split_matmul(x, weight, None, 2), torch.nn.functional.linear(x, weight)) and calls == []
    split_matmul(x[:1], weight, None, 2)
    assert len(calls) == 1


def test_split_linear_shares_the_weight_and_leaves_many_rows_to_linear():
    torch.manual_seed(0)
    linear = torch.nn.Linear(24, 36)
    split = SplitLinear(linear)
    assert split.weight.data_ptr() == linear.weight.data_ptr() and split.bias.data_ptr() == linear.bias.data_ptr()
    with torch.no_grad():
        x = torch.randn(1, 1, 24)  # one row
        torch.testing.assert_close(split(x).double(), written_out(x[0], linear.weight, linear.bias).view(1, 1, 36),
                                   atol=1e-5, rtol=1e-5)
        for shape in ((4, 1, 24), (2, 9, 24)):  # a batched step of 4, a prefill's rows: F.linear itself
            many = torch.randn(*shape)
            assert torch.equal(split(many), linear(many))


def test_split_applies_to_fp32_cpu_weights_with_threads_to_split_over(monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert split_applies(torch.zeros(2, 2))
    assert not split_applies(torch.zeros(2, 2, dtype=torch.float64))
    assert not split_applies(torch.zeros(2, 2, dtype=torch.bfloat16))
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert not split_applies(torch.zeros(2, 2))


def test_split_copy_shares_every_parameter_and_follows_weight_updates(monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    model = tiny_model(context_length=16, seed=3, dtype=torch.float32)
    copies = LinearsCopy.split()
    split = copies.get(model)
    linears = [m for m in split.modules() if isinstance(m, SplitLinear)]
    assert len(linears) == 4 * model.config.n_layers and is_plain_linear(split.lm_head)
    assert {p.data_ptr() for p in split.parameters()} | {m.weight.data_ptr() for m in linears} <= \
        {p.data_ptr() for p in model.parameters()}
    assert all(is_plain_linear(m) for m in model.modules() if isinstance(m, torch.nn.Linear))  # untouched
    assert copies.get(model) is split
    with torch.no_grad():
        model.blocks[1].attn.qkv.weight.mul_(0.5)
    assert copies.get(model) is not split
    assert LinearsCopy.split().get(model.double()) is None  # not fp32: nothing to split


@pytest.mark.parametrize("window,n_new", [(None, 30), (5, 23)])
def test_batch_one_fp32_decoding_split_over_two_threads_keeps_cached_equal_uncached(window, n_new):
    model = tiny_model(context_length=16, seed=4, dtype=torch.float32)
    engine = Engine(model, ByteTokenizer(), FastPaths(threads=2))
    got = engine.generate_ids(PROMPT, n_new, SamplingParams(window=window, stop_ids=()))
    assert engine.decoder.describe()["split_threads"]
    assert got == reference_greedy(model, PROMPT, n_new, window or 16)


def test_a_split_step_gives_the_plain_logits_to_fp32_rounding():
    model = tiny_model(context_length=32, seed=5, dtype=torch.float32)
    engine = Engine(model, ByteTokenizer(), FastPaths(threads=2))
    ids = torch.tensor([PROMPT + [33, 34]])  # (1, T)
    cache = KVCache.for_model(model, 1, 32)
    with torch.no_grad():
        engine.decoder(ids[:, :-1], torch.arange(ids.shape[1] - 1), cache)
        cache.advance(ids.shape[1] - 1)
        have = engine.decoder(ids[:, -1:], torch.tensor([ids.shape[1] - 1]), cache)  # one row: split
        want = model(ids)[:, -1]
    assert engine.decoder.describe()["split_threads"]
    torch.testing.assert_close(have, want, atol=1e-5 * float(want.abs().max()), rtol=1e-5)


@pytest.mark.parametrize("with_bias", [True, False])
def test_one_row_uses_block_views_made_once_and_follows_the_weights(monkeypatch, with_bias):
    """At one row a SplitLinear runs one (b)addbmm over views of the weight made when it was built, for
    that thread count; another thread count at the call takes `split_matmul`."""
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    torch.manual_seed(1)
    linear = torch.nn.Linear(24, 36, bias=with_bias)
    split = SplitLinear(linear)
    assert split.one_row and split.weight_blocks.shape == (2, 18, 24)
    assert split.weight_blocks.data_ptr() == linear.weight.data_ptr()  # a view, not a copy
    x = torch.randn(1, 1, 24)
    with torch.no_grad():
        torch.testing.assert_close(split(x).double(), written_out(x[0], linear.weight, linear.bias).view(1, 1, 36),
                                   atol=1e-5, rtol=1e-5)
        linear.weight.mul_(-2.0)  # an optimizer step, in place: the views see it
        torch.testing.assert_close(split(x).double(), written_out(x[0], linear.weight, linear.bias).view(1, 1, 36),
                                   atol=1e-5, rtol=1e-5)
    calls = []
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)
    import llm_core.engine.split_linear as split_linear

    real = split_linear.split_matmul
    monkeypatch.setattr(split_linear, "split_matmul", lambda *a: calls.append(a[3]) or real(*a))
    with torch.no_grad():
        got = split(x)
    assert calls == [3]
    torch.testing.assert_close(got.double(), written_out(x[0], linear.weight, linear.bias).view(1, 1, 36),
                               atol=1e-5, rtol=1e-5)


def test_a_width_the_threads_do_not_divide_has_no_one_row_views(monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert not SplitLinear(torch.nn.Linear(4, 7)).one_row  # 7 columns: split_matmul handles the rest
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert not SplitLinear(torch.nn.Linear(4, 8)).one_row  # one thread: nothing to split
