import pytest
import torch
import torch.nn.functional as F

from llm_core import attention
from llm_core.attention import (BLOCKED_ATTENTION_MAX_T, ONE_QUERY_UPCAST_SCORES, blocked_causal_attention,
                                causal_attention, one_query_attention, uses_blocked_attention)


def written_out(q, k, v):
    """softmax(q k^T / sqrt(D) + causal mask) v, each step spelled out."""
    T, D = q.shape[-2], q.shape[-1]
    scores = q @ k.transpose(-1, -2) / D ** 0.5  # (B, H, T, T)
    scores = scores.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def qkv(B=2, H=3, T=20, D=8, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, T, D, generator=g, dtype=torch.float64).to(dtype).requires_grad_() for _ in range(3)]


def values_and_grads(fn, inputs, dy):
    y = fn(*inputs)
    y.backward(dy.to(y.dtype))
    return [y.detach().double()] + [t.grad.double() for t in inputs]


@pytest.mark.parametrize("T,block", [(20, 128), (20, 7), (20, 1), (24, 8), (33, 16)])
def test_blocked_attention_equals_attention_written_out_in_fp64(T, block):
    inputs = qkv(T=T)
    dy = torch.randn(2, 3, T, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ours = values_and_grads(lambda q, k, v: blocked_causal_attention(q, k, v, block=block), inputs, dy)
    want = values_and_grads(written_out, qkv(T=T), dy)
    for a, b in zip(ours, want):  # same math in fp64: only the order of the sums differs
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)


def test_blocked_attention_in_bf16_is_as_close_to_fp64_as_the_bf16_flash_kernel():
    T = 40
    base = [t.detach().to(torch.bfloat16) for t in qkv(T=T)]
    dy = torch.randn(2, 3, T, 8, generator=torch.Generator().manual_seed(1)).to(torch.bfloat16)

    def run(fn, dtype):
        return values_and_grads(fn, [t.to(dtype).requires_grad_() for t in base], dy)

    want = run(written_out, torch.float64)  # the same bf16 inputs, exact arithmetic
    ours = run(lambda q, k, v: blocked_causal_attention(q, k, v, block=16), torch.bfloat16)
    flash = run(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True), torch.bfloat16)
    for name, a, f, w in zip(("y", "dq", "dk", "dv"), ours, flash, want):
        ours_err, flash_err = float((a - w).norm() / w.norm()), float((f - w).norm() / w.norm())
        assert ours_err < 1e-2, name  # bf16 keeps 8 bits: a few 1e-3 relative
        assert ours_err < 2 * flash_err + 1e-3, (name, ours_err, flash_err)


def test_blocked_attention_takes_strided_inputs_and_keeps_bf16_under_autocast():
    B, H, T, D = 2, 3, 12, 8
    x = torch.randn(B, T, 3 * H * D, dtype=torch.bfloat16, requires_grad=True)
    # As the model makes them: (B, T, C) split and transposed to (B, H, T, D), not contiguous
    q, k, v = (t.view(B, T, H, D).transpose(1, 2) for t in x.split(H * D, dim=2))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = blocked_causal_attention(q, k, v, block=5)
    assert y.dtype == torch.bfloat16 and y.shape == (B, H, T, D)
    y.float().sum().backward()
    qd, kd, vd = (t.detach().double() for t in (q, k, v))
    torch.testing.assert_close(y.double(), written_out(qd, kd, vd), atol=3e-2, rtol=3e-2)
    assert x.grad is not None and x.grad.dtype == torch.bfloat16 and torch.isfinite(x.grad).all()


def test_which_kernel_causal_attention_takes():
    def q(T=256, dtype=torch.bfloat16, grad=True):
        return torch.zeros(2, 4, T, 8, dtype=dtype, requires_grad=grad)

    assert uses_blocked_attention(q())
    assert uses_blocked_attention(q(BLOCKED_ATTENTION_MAX_T))
    assert not uses_blocked_attention(q(BLOCKED_ATTENTION_MAX_T + 1))  # its T^2 probabilities: flash's memory
    assert not uses_blocked_attention(q(grad=False))  # inference: the flash forward
    with torch.no_grad():
        assert not uses_blocked_attention(q())
    assert not uses_blocked_attention(q(), dropout_p=0.1)  # attention dropout: SDPA's
    assert not uses_blocked_attention(q(dtype=torch.float32))  # fp32: the flash kernel is as fast


def test_causal_attention_values_on_either_kernel():
    for grad in (True, False):
        q, k, v = (t.detach().to(torch.bfloat16).requires_grad_(grad) for t in qkv(T=30))
        y = causal_attention(q, k, v)
        assert uses_blocked_attention(q) == grad
        want = written_out(*(t.detach().double() for t in (q, k, v)))
        torch.testing.assert_close(y.double(), want, atol=3e-2, rtol=3e-2)


def test_a_block_of_no_queries_is_refused():
    q, k, v = qkv()
    with pytest.raises(ValueError, match="block: must be a positive number of queries, got 0"):
        blocked_causal_attention(q, k, v, block=0)


# --- one query per row over a KV cache (decoding) -------------------------------------------------------
def one_query(B, H, L, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = (torch.randn(B, H, 1, 64, generator=g) * 2).to(dtype)  # scores of a few units, as trained models have
    return q, torch.randn(B, H, L, 64, generator=g).to(dtype), torch.randn(B, H, L, 64, generator=g).to(dtype)


def no_mask_written_out(q, k, v):
    """softmax(q k^T / sqrt(D)) v in fp64: one query sees every key."""
    q, k, v = (t.double() for t in (q, k, v))
    return torch.softmax(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5, dim=-1) @ v


@pytest.mark.parametrize("B,H,L", [(8, 6, 160), (1, 12, 640), (2, 4, 300)])
def test_one_query_over_a_bf16_cache_is_the_fp64_result_rounded_once(B, H, L):
    q, k, v = one_query(B, H, L, torch.bfloat16)
    assert B * H * L >= ONE_QUERY_UPCAST_SCORES  # the fp32 path
    y = one_query_attention(q, k, v)
    assert y.dtype == torch.bfloat16 and y.shape == (B, H, 1, 64)
    want = no_mask_written_out(q, k, v)
    err = (y.double() - want).abs()
    assert (err <= want.abs() * 2 ** -8 + 1e-6).all()  # within bf16's rounding of the exact value
    flash_err = (F.scaled_dot_product_attention(q, k, v).double() - want).abs().max()
    assert err.max() <= flash_err * 1.01 + 1e-6  # and no further from it than the flash kernel


def test_one_query_takes_sdpa_below_the_threshold_in_fp32_and_under_autocast(monkeypatch):
    calls = []
    sdpa = F.scaled_dot_product_attention
    monkeypatch.setattr(attention.F, "scaled_dot_product_attention", lambda *a, **kw: calls.append(1) or sdpa(*a, **kw))
    small = one_query(1, 4, 16, torch.bfloat16)  # 64 scores
    assert torch.equal(one_query_attention(*small), sdpa(*small)) and len(calls) == 1
    fp32 = one_query(8, 6, 160, torch.float32)
    torch.testing.assert_close(one_query_attention(*fp32).double(), no_mask_written_out(*fp32), atol=1e-5, rtol=1e-5)
    assert len(calls) == 2
    with torch.autocast("cpu", dtype=torch.bfloat16):  # RL rollouts decode under autocast: SDPA casts
        one_query_attention(*one_query(8, 6, 160, torch.bfloat16))
    assert len(calls) == 3
    one_query_attention(*one_query(8, 6, 160, torch.bfloat16))
    assert len(calls) == 3  # the fp32 path
