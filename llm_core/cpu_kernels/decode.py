"""fp32 kernels of the Engine's decode step (`decode_kernels.c`): sampling and one-query attention.

A gpt2-mini decode step takes 2.2-2.7 ms on the 2-core EPYC, and every torch op inside it costs a few
microseconds of dispatch, allocation and thread wake-up, more than when timed alone, as the step's 81 MB
of weights have just evicted the caches. Temperature sampling took 15-25 such ops a step (max, min, the
weights, the two-level cumulative sum, the searches, the gathers) and attention three a layer (two cache
writes and SDPA, which reads the cached keys and values at 18 GB/s at 8 rows). Here:

- `row_max_min`: each row's max and min (the screen's envelope and the weights' shift) in one pass;
- `temperature_draw`: softmax(x / T) sampling by inverse transform, the same two-level cumulative sum as
  `llm_core.engine.sampling.draw` with the weights computed on the fly;
- `one_query_attention`: the cache write and softmax(q K^T / sqrt(d)) V for every (row, head), one pass
  over each head's keys and one over its values.

gpt2-mini fp32, temperature 0.8, in one process: 2.70 -> 2.23 ms a step at batch 1 and 4.53 -> 3.50 ms at
8 rows, the same tokens (benchmarks/decode_speed.py). The results equal torch's up to fp32 rounding (exp
within about 1 ulp, other summation orders); tests/test_cpu_kernels.py checks them against fp64.
"""
from __future__ import annotations

import math

import torch

from . import library, runs_on


def _lib():
    lib = library()
    if lib is None:
        raise RuntimeError("the CPU kernels are not available here (llm_core.cpu_kernels.status() says why)")
    return lib


def rows_apply(x: torch.Tensor) -> bool:
    """`row_max_min` and `temperature_draw` take x: fp32 (B, V) on the CPU, unit stride along V."""
    return x.dim() == 2 and x.dtype == torch.float32 and x.stride(1) == 1 and runs_on(x)


def row_max_min(x: torch.Tensor) -> list[tuple[float, float]]:
    """(max, min) of each row of x (B, V) fp32 (NaN for both where the row holds a NaN)."""
    if not rows_apply(x):
        raise ValueError(f"row_max_min: x must be a 2-D fp32 CPU tensor with unit stride along its rows, got "
                         f"{x.dtype} {tuple(x.shape)} on {x.device}")
    B, V = x.shape
    out = torch.empty(B, 2)
    _lib().wb_row_max_min_f32(x.data_ptr(), B, V, x.stride(0), out.data_ptr(), torch.get_num_threads())
    return [(hi, lo) for hi, lo in out.tolist()]


def temperature_draw(x: torch.Tensor, rows: list[int], tops: list[float], temperature: float,
                     u: list[float]) -> list[int]:
    """One token for each row rows[k] of x (B, V) fp32, drawn from softmax(x[rows[k]] / temperature) with
    the uniform u[k] in [0, 1): the first token whose cumulative weight exp((x_j - tops[k]) / T) exceeds
    u[k] times the row's total. tops[k] must be at least the row's max (weights <= 1) and finite."""
    if not rows_apply(x):
        raise ValueError(f"temperature_draw: x must be a 2-D fp32 CPU tensor with unit stride along its rows, "
                         f"got {x.dtype} {tuple(x.shape)} on {x.device}")
    B, V = x.shape
    n = len(rows)
    if not (len(tops) == len(u) == n) or any(not 0 <= r < B for r in rows):
        raise ValueError(f"temperature_draw: {n} rows in [0, {B}) with as many tops and uniforms, got rows "
                         f"{rows}, {len(tops)} tops, {len(u)} uniforms")
    if not (temperature > 0 and math.isfinite(temperature)):
        raise ValueError(f"temperature_draw: temperature must be positive and finite, got {temperature}")
    threads = torch.get_num_threads()
    rows_t = torch.tensor(rows, dtype=torch.int64)
    tops_t = torch.tensor(tops, dtype=torch.float32)
    u_t = torch.tensor(u, dtype=torch.float64)
    tokens = torch.empty(n, dtype=torch.int64)
    scratch = torch.empty(threads, V + 16)  # each thread's row of weights
    block_sums = torch.empty(threads, (V + 1023) // 1024, dtype=torch.float64)
    _lib().wb_temperature_draw_f32(x.data_ptr(), n, rows_t.data_ptr(), V, x.stride(0), tops_t.data_ptr(),
                                   1.0 / temperature, u_t.data_ptr(), tokens.data_ptr(), scratch.data_ptr(),
                                   block_sums.data_ptr(), threads)
    return tokens.tolist()


MAX_HEAD_DIM = 256  # the kernel keeps a head's query and output in registers / on its stack


def attention_applies(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, keys: torch.Tensor,
                      values: torch.Tensor) -> bool:
    """`one_query_attention` takes these: one fp32 query per (row, head) on the CPU, q, k, v sharing their
    strides with unit stride along the head dim, a head dim that is a multiple of 16 up to 256, and cache
    buffers keys, values (rows, heads, max_len, head_dim) of one layout, contiguous in their last two dims."""
    B, H, T, D = q.shape
    return (T == 1 and D % 16 == 0 and D <= MAX_HEAD_DIM
            and q.dtype == k.dtype == v.dtype == keys.dtype == values.dtype == torch.float32
            and q.stride() == k.stride() == v.stride() and q.stride(-1) == 1
            and keys.stride() == values.stride() and keys.stride(-1) == 1 and keys.stride(-2) == D
            and runs_on(q))


def one_query_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, keys: torch.Tensor,
                        values: torch.Tensor, pos: int, checked: bool = False) -> torch.Tensor:
    """Write k, v (B, H, 1, D) at position `pos` of the cache buffers keys, values (rows >= B, H, max_len, D),
    then attend q (B, H, 1, D) over positions 0..pos -> (B, H, 1, D), as
    `F.scaled_dot_product_attention(q, keys[:B, :, :pos + 1], values[:B, :, :pos + 1])` after the writes.
    `checked`: the caller has already found `attention_applies` and the position and rows inside the
    buffers (`KVCache.attend`, every layer of every step), so they are not checked again."""
    B, H, _, D = q.shape
    if not checked:
        if not attention_applies(q, k, v, keys, values):
            raise ValueError("one_query_attention: needs one fp32 query per (row, head) with q, k, v sharing "
                             f"strides and a head dim a multiple of 16 up to {MAX_HEAD_DIM}, got q "
                             f"{tuple(q.shape)} strides {tuple(q.stride())}, k {tuple(k.stride())}, v "
                             f"{tuple(v.stride())}")
        if not (0 <= pos < keys.shape[2]) or keys.shape[0] < B or keys.shape[1] != H or keys.shape[3] != D:
            raise ValueError(f"one_query_attention: position {pos} and {B} x {H} x {D} do not fit a cache of "
                             f"{tuple(keys.shape)}")
    threads = torch.get_num_threads()
    out = torch.empty(B, H, 1, D)
    scratch = torch.empty(threads, pos + 17)  # each thread's scores
    _lib().wb_one_query_attention_f32(q.data_ptr(), k.data_ptr(), v.data_ptr(), q.stride(0), q.stride(1),
                                      keys.data_ptr(), values.data_ptr(), keys.stride(0), keys.stride(1), pos,
                                      out.data_ptr(), B, H, D, 1.0 / math.sqrt(D), scratch.data_ptr(), threads)
    return out
