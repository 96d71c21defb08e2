"""Causal self-attention, softmax(q k^T / sqrt(d) + causal mask) v (Vaswani et al., "Attention Is All You
Need", 2017), and the kernel each case runs through.

Most cases go to `torch.nn.functional.scaled_dot_product_attention`, which picks a fused kernel on every
backend. One case does not: training on the CPU under bf16 autocast. There the CPU flash kernel is slow
(2 cores, torch 2.13, causal forward + backward of 16 x 4 heads x 48 at T = 256: 21 ms in bf16, 18 ms in
fp32), because it walks the scores in small tiles with an online softmax (Dao et al., "FlashAttention",
2022) that suits a GPU's SRAM, not a CPU's cache. `blocked_causal_attention` instead makes the scores of
`QUERY_BLOCK` queries at a time with one bf16 batched matmul, against only the keys those queries can see
(the blocks above the diagonal are never computed: (n + 1) / 2n of the T x T scores for n blocks), takes the
softmax with fp32 accumulation, and keeps the bf16 probabilities for the backward pass instead of recomputing
them. The same shape takes 5.9 ms (gpt2-mini's 4 x 6 x 64: 2.5 vs 8.6 ms; gpt2-small's 2 x 12 x 64 at
T = 1024: 31 vs 73 ms), at the cost of B x heads x T^2 / 2 bf16 probabilities a layer held for backward, so
it is used up to `BLOCKED_ATTENTION_MAX_T`. `benchmarks/train_speed.py --attention` measures it.

The rounding is bf16's, as in the bf16 flash kernel: scores and probabilities rounded to bf16, sums in
fp32 (tests/test_attention.py compares both with attention written out in fp64).

Decoding has its own case: one new query per row over every cached key (`one_query_attention`, called by
the KV cache). Over a bf16 cache on the CPU the flash kernel costs about 0.04 us a (row, head, key) score
(gpt2-small at 640 keys: 320 us a layer, 3.8 ms of a token over 12 layers), while the same attention
computed in fp32 from an upcast copy of the keys and values takes 82 us, and is as accurate as SDPA's
math kernel (the fp64 result rounded once to bf16).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# Queries per block: a block's scores, 128 x T per head, stay within the CPU's cache for the softmax
# (2 cores, T = 256 and 512: 128-row blocks beat 64 and 256; T = 1024: 128 and 256 tie).
QUERY_BLOCK = 128
# The probabilities kept for backward grow with T^2 (gpt2-small, batch 2 at T = 1024: 25 MB a layer); past
# GPT-2's context the flash kernel, whose memory grows with T, takes over.
BLOCKED_ATTENTION_MAX_T = 1024


# One query's attention over a bf16 / fp16 cache on the CPU runs in fp32 from this many (row, head, key)
# scores on; below it the flash kernel is quicker than the upcast copies (2-core EPYC: 6 x 64 keys 18 vs
# 22 us, 6 x 100 keys 27 vs 23 us, 8 rows x 6 x 160 keys 294 vs 82 us).
ONE_QUERY_UPCAST_SCORES = 512


def one_query_attention(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Attention of one new query per row, q (B, n_heads, 1, hd), over every cached position, keys and
    values (B, n_heads, L, hd), with no mask (the newest token sees all before it) -> (B, n_heads, 1, hd).
    A half-precision cache on the CPU past ONE_QUERY_UPCAST_SCORES scores is computed in fp32 and rounded
    once (module docstring); everything else, and anything under autocast, goes to SDPA."""
    B, H, _, D = q.shape
    if (q.device.type == "cpu" and keys.dtype in (torch.bfloat16, torch.float16) and q.dtype == keys.dtype
            and B * H * keys.shape[2] >= ONE_QUERY_UPCAST_SCORES and not torch.is_autocast_enabled("cpu")):
        scores = torch.matmul(q.float(), keys.float().transpose(-1, -2)).mul_(1.0 / math.sqrt(D))  # (B, H, 1, L)
        return torch.matmul(torch.softmax(scores, dim=-1), values.float()).to(q.dtype)
    return F.scaled_dot_product_attention(q, keys, values)


def uses_blocked_attention(q: torch.Tensor, dropout_p: float = 0.0) -> bool:
    """True where `causal_attention` runs `blocked_causal_attention` for queries `q` (B, n_heads, T, hd):
    bf16 on the CPU with a gradient to compute, no attention dropout, T <= BLOCKED_ATTENTION_MAX_T."""
    return (q.dtype == torch.bfloat16 and q.device.type == "cpu" and q.requires_grad and torch.is_grad_enabled()
            and dropout_p == 0.0 and q.shape[-2] <= BLOCKED_ATTENTION_MAX_T)


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float = 0.0) -> torch.Tensor:
    """Causal attention of (B, n_heads, T, head_dim) tensors -> (B, n_heads, T, head_dim), by the kernel
    `uses_blocked_attention` picks."""
    if uses_blocked_attention(q, dropout_p):
        return blocked_causal_attention(q, k, v)
    return F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout_p)


def blocked_causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                             block: int = QUERY_BLOCK) -> torch.Tensor:
    """Causal attention computed `block` queries at a time by explicit matmuls in q's dtype (see the module
    docstring); the same values as `F.scaled_dot_product_attention(q, k, v, is_causal=True)` up to rounding."""
    if block < 1:
        raise ValueError(f"block: must be a positive number of queries, got {block}")
    return _BlockedCausalAttention.apply(q, k, v, block)


class _BlockedCausalAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block: int) -> torch.Tensor:  # type: ignore[override]
        B, H, T, D = q.shape
        scale = 1.0 / math.sqrt(D)
        # (B, H, T, D) -> (B*H, T, D): one batched matmul over every head
        qf, kf, vf = (t.reshape(B * H, T, D) for t in (q, k, v))
        y = torch.empty_like(qf)
        probs = []
        with torch.autocast(q.device.type, enabled=False):  # autocast would run the softmax in fp32
            for s in range(0, T, block):
                e = min(T, s + block)
                # Queries s..e-1 see keys 0..e-1; of those, key j > query i is masked: the -inf upper
                # triangle of the last e - s columns.
                mask = torch.zeros(e - s, e, dtype=q.dtype, device=q.device)
                mask[:, s:] = float("-inf")
                mask[:, s:].triu_(1)
                scores = torch.baddbmm(mask, qf[:, s:e], kf[:, :e].transpose(1, 2), alpha=scale)  # (BH, e-s, e)
                p = torch.softmax(scores, dim=-1)  # fp32 sums inside, rounded to q's dtype
                torch.bmm(p, vf[:, :e], out=y[:, s:e])  # (BH, e-s, D)
                probs.append(p)
        ctx.save_for_backward(qf, kf, vf, *probs)
        ctx.scale, ctx.block = scale, block
        return y.view(B, H, T, D)

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor):  # type: ignore[override]
        qf, kf, vf, *probs = ctx.saved_tensors
        B, H, T, D = grad_y.shape
        gy = grad_y.reshape(B * H, T, D).to(qf.dtype)
        dq = torch.empty_like(qf)
        dk, dv = torch.zeros_like(kf), torch.zeros_like(vf)
        with torch.autocast(qf.device.type, enabled=False):
            for p, s in zip(probs, range(0, T, ctx.block)):
                e = min(T, s + ctx.block)
                dp = torch.bmm(gy[:, s:e], vf[:, :e].transpose(1, 2))  # dL/dp: (BH, e-s, e)
                # dL/dscores = p * (dp - sum(p * dp)); masked scores have p = 0, so no mask is needed here.
                ds = torch._softmax_backward_data(dp, p, -1, p.dtype)
                dv[:, :e].baddbmm_(p.transpose(1, 2), gy[:, s:e])
                torch.bmm(ds, kf[:, :e], out=dq[:, s:e]).mul_(ctx.scale)
                dk[:, :e].baddbmm_(ds.transpose(1, 2), qf[:, s:e], alpha=ctx.scale)
        return dq.view(B, H, T, D), dk.view(B, H, T, D), dv.view(B, H, T, D), None
