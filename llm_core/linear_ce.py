"""Fused linear + cross-entropy: the loss of a vocabulary head `h @ W.T` and its gradient in one buffer.

For a 50257-token head the logits of a 4 x 256 batch are 206 MB in fp32; the plain path
(`F.cross_entropy(lm_head(h).float(), y)`) writes them, upcasts them, writes their log-softmax and, in
backward, a gradient of the same size again: about two gigabytes of memory traffic per step around the
matmuls (Wijmans et al., "Cut Your Losses in Large-Vocabulary Language Models", 2024; the "fused linear
cross entropy" of Hsu et al., Liger Kernel, 2024). Here one (N, V) buffer in the compute dtype (bf16 under
autocast: half the bytes of fp32 logits) first holds the logits z = h W^T, made by a few large matmuls,
and is then turned in place, `chunk` rows at a time, into the gradient of cross-entropy with respect to them,

    dCE/dz = softmax(z) - onehot(y),

while each row's loss is -log softmax(z)_y from the same fp32 softmax. Backward is then two matmuls,
dL/dh = w * (G W) and dL/dW = (w * h)^T G transposed, where w is each row's weight (1/N for the mean):
nothing is recomputed, and no fp32 copy of the logits exists beyond one chunk. In no-grad code (eval)
the logits are made a chunk at a time and only the losses are kept.

Under bf16 on a CPU that runs `llm_core.cpu_kernels`, each block's softmax-to-gradient pass is one fused
call instead of the chunk loop (the loss as logsumexp(z) - z_y; 9 against 18 ms for gpt2-mini's batch).

gpt2-mini under bf16 autocast (4 x 256 tokens, 2-core EPYC), the head's forward + backward: 231 ms with
the logits made per chunk of 83 rows, log_softmax then exp for the gradient, and G^T as a matmul's left
operand; 174 ms now (one exp a logit, the head's 118 GFLOP at 76% of the measured bf16 matmul peak).

Precision: the logits are rounded to the compute dtype exactly as `F.linear` under autocast rounds them,
the softmax and the loss are taken in fp32 (as the plain path's `.float()` does; a row whose p_y is below
fp32's normal range takes its loss from log_softmax instead), and the gradient is rounded to the compute
dtype where autocast's backward rounds it. tests/test_linear_ce.py compares loss and gradients with
`F.cross_entropy` over the full logits (fp32: 1e-5 relative; bf16 autocast: against the same plain path
under autocast).
"""
from __future__ import annotations

import torch

from . import cpu_kernels
from .embedding import TiedGradient, column_major
from .onednn_linear import matmul_nt, routes

IGNORE_INDEX = -100
# Rows of logits one matmul makes: 1335 for GPT-2's vocabulary (all of a 4 x 256 batch). With a gradient to
# keep they go straight into the (N, V) buffer; in no-grad code (and on the fp32 oneDNN route) into one
# block's buffer, which bounds that memory (134 MB in bf16, 268 MB in fp32). One matmul of all 1024 rows of
# gpt2-mini's 4 x 256 bf16 batch took 44 ms, blocks of 83 rows 63-72 ms, of 512-667 rows 47-54 ms; the
# whole bf16 training step ran 1.028x with one block of 1024 rows instead of 667 + 357 (5 paired rounds).
# The same blocks with and without a gradient, so that a policy and its frozen reference (DPO) compute the
# same losses bit for bit.
LOGITS_ELEMENTS = 1 << 26
# Rows whose softmax is taken at a time: 4 MB of fp32 probabilities (20 rows of GPT-2's vocabulary), which
# stay near the core (gpt2-mini bf16, head forward + backward: 171-177 ms at 16-32 rows, 182-184 at 83-256).
CHUNK_ELEMENTS = 1 << 20
# Below this a probability from the softmax is denormal in fp32 (fewer significant bits); the loss of such
# a row comes from log_softmax instead of log(p_y).
_SMALLEST_P = torch.finfo(torch.float32).tiny


def _compute_dtype(h: torch.Tensor) -> torch.dtype:
    """The dtype `F.linear` would compute in here: autocast's when autocast is on for h's device."""
    device = h.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return h.dtype


class _LinearCrossEntropy(torch.autograd.Function):
    """Per-row cross-entropy (N,) of logits h @ weight.T against targets; see the module docstring."""

    @staticmethod
    def forward(ctx, h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,  # type: ignore[override]
                compute_dtype: torch.dtype, chunk: int | None, tied: TiedGradient | None) -> torch.Tensor:
        N, V = h.shape[0], weight.shape[0]
        need_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        chunk = chunk or max(1, CHUNK_ELEMENTS // V)
        block = max(1, LOGITS_ELEMENTS // V)
        with torch.autocast(h.device.type, enabled=False):
            hc, wc = h.to(compute_dtype), weight.to(compute_dtype)
            acc = torch.promote_types(compute_dtype, torch.float32)  # fp32, or fp64 for an fp64 model
            losses = torch.empty(N, dtype=acc, device=h.device)
            grad_z = torch.empty(N, V, dtype=compute_dtype, device=h.device) if need_grad else None
            onednn = routes(hc, wc)  # fp32 through oneDNN (`onednn_linear`): its own block, no out=
            fused = cpu_kernels.applies(hc)  # bf16 on the CPU: the whole block in one pass (`cpu_kernels`)
            for b in range(0, N, block):
                be = min(N, b + block)
                if onednn:
                    z = matmul_nt(hc[b:be], wc)  # (rows, V) fp32
                else:
                    z = grad_z[b:be] if grad_z is not None else hc.new_empty(be - b, V)
                    torch.mm(hc[b:be], wc.t(), out=z)  # (rows, V) in the compute dtype, as F.linear makes them
                if fused:  # losses from logsumexp, and z turned into its gradient in place
                    cpu_kernels.cross_entropy_bf16(z, targets[b:be].contiguous(), losses[b:be], grad_z is not None)
                    continue
                for s in range(b, be, chunk):
                    e = min(be, s + chunk)
                    zc, t = z[s - b : e - b], targets[s:e, None]  # (R, V), (R, 1)
                    p = torch.softmax(zc, dim=1, dtype=acc)  # (R, V) fp32: one exp a logit
                    p_y = p.gather(1, t)  # (R, 1)
                    losses[s:e] = -torch.log(p_y).squeeze(1)
                    tiny = p_y.squeeze(1) < _SMALLEST_P  # p_y not held to fp32's precision: log_softmax
                    if bool(tiny.any()):
                        rows = tiny.nonzero().squeeze(1)
                        logp_y = torch.log_softmax(zc[rows], dim=1, dtype=acc).gather(1, t[rows])
                        losses[s + rows] = -logp_y.squeeze(1)
                    if grad_z is not None:
                        p.scatter_add_(1, t, torch.full(t.shape, -1.0, dtype=acc, device=p.device))  # - onehot(y)
                        grad_z[s:e].copy_(p)  # the logits become their gradient, rounded to the compute dtype
        if grad_z is not None:
            ctx.save_for_backward(hc, wc, grad_z)
        ctx.dtypes = (h.dtype, weight.dtype)
        ctx.tied = tied
        return losses

    @staticmethod
    def backward(ctx, grad_losses: torch.Tensor):  # type: ignore[override]
        hc, wc, grad_z = ctx.saved_tensors
        h_dtype, w_dtype = ctx.dtypes
        row = grad_losses.to(torch.promote_types(hc.dtype, torch.float32))[:, None]  # (N, 1): each row's weight
        grad_h = grad_w = None
        with torch.autocast(hc.device.type, enabled=False):
            if ctx.needs_input_grad[0]:
                grad_h = (matmul_nt(grad_z, wc.t()).to(row.dtype) * row).to(h_dtype)  # G W: (N, C)
            if ctx.needs_input_grad[1]:
                scaled_h = (hc.to(row.dtype) * row).to(hc.dtype)  # (N, C)
                # dL/dW in the weight's own layout (autograd would otherwise copy it into that layout):
                # row-major (V, C), or column-major as GPT's tied embedding is stored (`llm_core.embedding`).
                row_major = not column_major(wc)
                if routes(grad_z, wc):  # fp32 through oneDNN: straight into that layout
                    grad_w = (matmul_nt(grad_z.t(), scaled_h.t()) if row_major
                              else matmul_nt(scaled_h.t(), grad_z.t()).t()).to(w_dtype)
                else:
                    # (C, N) @ (N, V), then cast into the weight's layout and dtype: for a row-major weight a
                    # transposing copy, where G^T (N-major) as the left operand ran at 0.6x (gpt2-mini bf16:
                    # 88 vs 53 + 11 ms); for a column-major one a plain cast
                    grad_w = torch.empty_like(wc, dtype=w_dtype)
                    grad_w.copy_(torch.mm(scaled_h.t(), grad_z).t())
        if ctx.tied is not None and grad_w is not None:  # the tied lookup adds its rows and returns the sum
            ctx.tied.head, grad_w = grad_w, None
        return grad_h, grad_w, None, None, None, None


def linear_cross_entropy(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                         reduction: str = "mean", ignore_index: int = IGNORE_INDEX,
                         chunk: int | None = None, tied: TiedGradient | None = None) -> torch.Tensor:
    """Cross-entropy of logits `h @ weight.T` against `targets`, never holding all the logits.

    h (..., C), weight (V, C), targets (...) with `ignore_index` at positions that do not count.
    `reduction`: "mean" over the counted positions (a scalar; NaN when none counts, as `F.cross_entropy`),
    "sum", or "none" (the shape of `targets`, 0 at ignored positions). `chunk`: rows whose softmax is taken
    at a time (default CHUNK_ELEMENTS // V). `tied`: `weight` is also looked up by the embedding that
    made h, which takes this head's dL/dW and returns both in one gradient (`llm_core.embedding`).
    """
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction: must be 'mean', 'sum' or 'none', got {reduction!r}")
    C, V = h.shape[-1], weight.shape[0]
    flat_h, flat_t = h.reshape(-1, C), targets.reshape(-1)  # (M, C), (M,)
    keep = flat_t != ignore_index
    if bool(keep.all()):
        rows, hv, tv = None, flat_h, flat_t
    else:  # only counted positions go through the head (a prompt-masked SFT batch skips its prompts)
        rows = keep.nonzero().squeeze(1)
        hv, tv = flat_h.index_select(0, rows), flat_t.index_select(0, rows)
    if tv.numel():
        lo, hi = (int(x) for x in torch.aminmax(tv))
        if lo < 0 or hi >= V:
            raise IndexError(f"targets: ids must be in [0, {V}) or {ignore_index}, got {lo}..{hi}")
    losses = _LinearCrossEntropy.apply(hv, weight, tv, _compute_dtype(h), chunk, tied)  # (N,) fp32 (fp64 model: fp64)
    if reduction == "mean":
        return losses.sum() / keep.sum()  # 0 / 0 = NaN when nothing counts
    if reduction == "sum":
        return losses.sum()
    if rows is None:
        return losses.view(targets.shape)
    return losses.new_zeros(flat_t.shape).index_copy(0, rows, losses).view(targets.shape)
