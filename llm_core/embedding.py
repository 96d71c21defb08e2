"""The tied token embedding of a large vocabulary, stored column-major: the layout the head's matmuls want.

GPT-2 ties its output head to the token embedding (Press & Wolf, "Using the Output Embedding to Improve
Language Models", 2017): one (V, C) matrix W is looked up row by row at the input and multiplied by every
hidden state at the output. The head is where a small model spends its training step (for gpt2-mini,
V = 50257 and C = 384, its three matmuls are 118 of the step's 187 GFLOP), and for those matmuls W is
better kept as its transpose W^T (C, V) in memory, with W a transposed view of it (strides (1, V)):

- dL/dh = G W reads W with its long dimension V as the reduction: oneDNN's bf16 kernel ran it in 44.9 ms
  over a contiguous (C, V) W^T against 54.1 ms over the row-major (V, C) W (gpt2-mini, 4 x 256 rows,
  2-core EPYC with AVX512-BF16);
- dL/dW comes out of the matmul as (C, V) (the layout that runs at speed, `llm_core.linear_ce`), so with a
  column-major W it is the gradient's own layout: a 2.3-3.0 ms cast into fp32 instead of a 7.8-9.7 ms
  transposing copy;
- the logits h W^T read a contiguous W^T (43.3 against 45.4 ms: 2 ms slower).

The lookup pays the rest: each looked-up row is V elements apart in memory (gpt2-mini's 1024 ids: 0.8
against 0.04 ms), and so is its gradient. GPT's tied embedding takes the layout from a vocabulary of
COLUMN_MAJOR_MIN_VOCAB tokens. The whole training step of gpt2-mini against the same model with a
row-major W, in one process over 16 paired steps: bf16 autocast 1.003-1.037x (five runs), fp32
1.059-1.062x. The state dict, `.shape`, checkpoints and every other use see the usual (V, C) matrix: only
the strides differ.

What the layout needs from the rest of the code:
- The lookup's gradient must come in the weight's layout too, or autograd adds a row-major (V, C)
  gradient into the head's column-major one through a transposing add (32 ms a step for gpt2-mini).
  `Embedding` (an `nn.Embedding` with the same parameters and state dict) builds it in that layout.
- torch's fused AdamW runs 2.6x slower on non-contiguous tensors, so `llm_core.training.optim.AdamW`
  hands it the contiguous W^T views of the parameter, its gradient and its moments (an elementwise update
  is the same on any view).
- `safetensors.torch.save_model` cannot find the tied pair of a strided tensor, so checkpoints are written
  by `llm_core.training.checkpoint.save_weights` (the same file).

One gradient for the tied W, whatever its layout: autograd would zero a (V, C) gradient for the lookup,
scatter its N rows into it and add it to the head's, about 6 ms of memory traffic for gpt2-mini. In
`GPT.forward(ids, targets)` the head's backward, which runs first (the lookup's input gradient flows
through it), hands its dL/dW over (`TiedGradient`) and the lookup adds its rows into that buffer and
returns the sum as W's one gradient: the step 1.024-1.029x under bf16 autocast for gpt2-mini, 1.012x in
fp32, 1.02-1.03x for the default experiment (16 paired steps), with the same weights after two steps.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


# The vocabulary from which a tied embedding is stored column-major. Below it the head's matmuls gain less
# than the strided lookup and its gradient cost: with 16 x 256 tokens a step under bf16 autocast, the
# default experiment (vocabulary 512, width 192) ran 0.98x and a width-384 model with 8192 tokens 0.97x
# column-major; GPT-2's 50257 gains (module docstring).
COLUMN_MAJOR_MIN_VOCAB = 32768


def column_major(weight: torch.Tensor) -> bool:
    """A 2-D tensor stored as its transpose: strides (1, rows), not contiguous."""
    return (weight.dim() == 2 and not weight.is_contiguous()
            and weight.stride() == (1, weight.shape[0]))


def column_major_parameter(rows: int, cols: int, like: torch.Tensor) -> nn.Parameter:
    """An uninitialised (rows, cols) parameter stored as the contiguous transpose (cols, rows)."""
    return nn.Parameter(torch.empty(cols, rows, dtype=like.dtype, device=like.device).t())


class TiedGradient:
    """Hands the tied W's gradient from the output head's backward to the lookup's, within one forward pass
    (`GPT.forward(ids, targets)`): the lookup adds its rows into the head's gradient and returns the sum,
    instead of autograd adding a zeroed (V, C) gradient of the lookup into the head's (module docstring).
    The head runs its backward first: the lookup's input gradient comes through it."""

    __slots__ = ("head",)

    def __init__(self) -> None:
        self.head: torch.Tensor | None = None


class _LayoutEmbedding(torch.autograd.Function):
    """F.embedding whose weight gradient is shaped like the weight, strides included; with `tied`, added
    into the head's gradient of the same weight."""

    @staticmethod
    def forward(ctx, ids: torch.Tensor, weight: torch.Tensor, tied: TiedGradient | None) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(ids)
        ctx.weight_meta = (weight.shape, weight.stride(), weight.dtype, weight.device)
        ctx.tied = tied
        return F.embedding(ids, weight)  # (..., C)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (ids,) = ctx.saved_tensors
        shape, stride, dtype, device = ctx.weight_meta
        rows = grad.reshape(-1, shape[1]).to(dtype)  # (N, C): one row per looked-up id
        ids = ids.reshape(-1)
        head = ctx.tied.head if ctx.tied is not None else None
        if head is not None:  # into the head's gradient, already in W's layout and dtype
            ctx.tied.head = None
            grad_w = head
        else:
            grad_w = torch.empty_strided(shape, stride, dtype=dtype, device=device).zero_()  # (V, C) in W's layout
        if not column_major(grad_w):
            grad_w.index_add_(0, ids, rows)  # repeated ids add up, as in F.embedding's own backward
            return None, grad_w, None
        # Column-major: rows of repeated ids added up first (in the same order) into a small contiguous
        # (U, C), then each distinct id's sum added into its column of W^T. Adding the N rows straight into
        # the strided (V, C) took 3.2 ms for 4096 rows of the default experiment's width (one strided add
        # per row), this 0.8; gpt2-mini's 1024 rows 3.3 against 2.0 (both with the zeroing).
        ids, inverse = torch.unique(ids, return_inverse=True)  # (U,) sorted, (N,)
        summed = torch.zeros(ids.numel(), shape[1], dtype=dtype, device=device).index_add_(0, inverse, rows)
        grad_w.t().index_add_(1, ids, summed.t())
        return None, grad_w, None


class Embedding(nn.Embedding):
    """`nn.Embedding` (same parameters, state dict and isinstance checks) whose weight may be column-major:
    then, with a gradient to compute, its lookup's gradient keeps that layout (module docstring). `tied`:
    the output head tied to this weight is on this lookup's states in the same graph (`TiedGradient`)."""

    def forward(self, ids: torch.Tensor, tied: TiedGradient | None = None) -> torch.Tensor:
        weight = self.weight
        if (torch.is_grad_enabled() and weight.requires_grad  # (decoding stops here: no gradient)
                and (tied is not None or column_major(weight))
                and self.padding_idx is None and self.max_norm is None and not self.scale_grad_by_freq
                and not self.sparse):
            return _LayoutEmbedding.apply(ids, weight, tied)
        return super().forward(ids)


PLAIN_EMBEDDINGS = (nn.Embedding, Embedding)
