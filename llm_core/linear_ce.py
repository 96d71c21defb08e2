"""Fused linear + cross-entropy: the loss of a vocabulary head `h @ W.T` without keeping its logits.

For a 50257-token head the logits of a 4 x 256 batch are 206 MB in fp32; the plain path
(`F.cross_entropy(lm_head(h).float(), y)`) writes them, upcasts them, writes their log-softmax and, in
backward, a gradient of the same size again: about two gigabytes of memory traffic per step around two
matmuls. Here the rows are processed `chunk` at a time (Wijmans et al., "Cut Your Losses in
Large-Vocabulary Language Models", 2024; the "fused linear cross entropy" of Hsu et al., Liger Kernel,
2024): each chunk's logits z = h W^T are made, their log-sum-exp gives the loss, and the same buffer is
turned in place into the gradient of cross-entropy with respect to the logits,

    dCE/dz = softmax(z) - onehot(y),

stored in the compute dtype (bf16 under autocast: half the bytes of fp32 logits). Backward is then two
matmuls, dL/dh = w * (G W) and dL/dW = G^T (w * h), where w is each row's weight (1/N for the mean), so
the logits are never materialised for the whole batch and nothing is recomputed. In no-grad code (eval)
only the losses are computed.

Precision: the logits are rounded to the compute dtype exactly as `F.linear` under autocast rounds them,
the log-sum-exp is taken in fp32 (as the plain path's `.float()` does), and the gradient is rounded to the
compute dtype where autocast's backward rounds it. tests/test_linear_ce.py compares loss and gradients
with `F.cross_entropy` over the full logits (fp32: 1e-5 relative; bf16 autocast: against the same plain
path under autocast).
"""
from __future__ import annotations

import torch

IGNORE_INDEX = -100
# Elements of one chunk's logits (rows x vocabulary): 16 MB in fp32, which keeps a chunk's softmax and
# its gradient within the last-level cache of most CPUs while a chunk still has enough rows (83 for
# GPT-2's vocabulary) for an efficient matmul.
CHUNK_ELEMENTS = 1 << 22


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
                compute_dtype: torch.dtype, chunk: int) -> torch.Tensor:
        N, V = h.shape[0], weight.shape[0]
        need_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        with torch.autocast(h.device.type, enabled=False):
            hc, wc = h.to(compute_dtype), weight.to(compute_dtype)
            acc = torch.promote_types(compute_dtype, torch.float32)  # fp32, or fp64 for an fp64 model
            losses = torch.empty(N, dtype=acc, device=h.device)
            grad_z = torch.empty(N, V, dtype=compute_dtype, device=h.device) if need_grad else None
            for s in range(0, N, chunk):
                e = min(N, s + chunk)
                t = targets[s:e, None]  # (R, 1)
                z = torch.mm(hc[s:e], wc.t())  # (R, V) in the compute dtype, as F.linear makes them
                logp = torch.log_softmax(z, dim=1, dtype=acc)  # (R, V) fp32: one fused kernel
                losses[s:e] = -logp.gather(1, t).squeeze(1)
                if grad_z is not None:
                    p = logp.exp_()  # softmax, in place
                    p.scatter_add_(1, t, torch.full(t.shape, -1.0, dtype=acc, device=p.device))  # - onehot(y)
                    grad_z[s:e].copy_(p)  # rounded to the compute dtype
        if grad_z is not None:
            ctx.save_for_backward(hc, wc, grad_z)
        ctx.dtypes = (h.dtype, weight.dtype)
        return losses

    @staticmethod
    def backward(ctx, grad_losses: torch.Tensor):  # type: ignore[override]
        hc, wc, grad_z = ctx.saved_tensors
        h_dtype, w_dtype = ctx.dtypes
        row = grad_losses.to(torch.promote_types(hc.dtype, torch.float32))[:, None]  # (N, 1): each row's weight
        grad_h = grad_w = None
        with torch.autocast(hc.device.type, enabled=False):
            if ctx.needs_input_grad[0]:
                grad_h = (torch.mm(grad_z, wc).to(row.dtype) * row).to(h_dtype)  # (N, C)
            if ctx.needs_input_grad[1]:
                grad_w = torch.mm(grad_z.t(), (hc.to(row.dtype) * row).to(hc.dtype)).to(w_dtype)  # (V, C)
        return grad_h, grad_w, None, None, None


def linear_cross_entropy(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                         reduction: str = "mean", ignore_index: int = IGNORE_INDEX,
                         chunk: int | None = None) -> torch.Tensor:
    """Cross-entropy of logits `h @ weight.T` against `targets`, never holding all the logits.

    h (..., C), weight (V, C), targets (...) with `ignore_index` at positions that do not count.
    `reduction`: "mean" over the counted positions (a scalar; NaN when none counts, as `F.cross_entropy`),
    "sum", or "none" (the shape of `targets`, 0 at ignored positions). `chunk` rows per chunk (default:
    CHUNK_ELEMENTS // V).
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
    chunk = chunk or max(1, CHUNK_ELEMENTS // V)
    losses = _LinearCrossEntropy.apply(hv, weight, tv, _compute_dtype(h), chunk)  # (N,) fp32 (fp64 model: fp64)
    if reduction == "mean":
        return losses.sum() / keep.sum()  # 0 / 0 = NaN when nothing counts
    if reduction == "sum":
        return losses.sum()
    if rows is None:
        return losses.view(targets.shape)
    return losses.new_zeros(flat_t.shape).index_copy(0, rows, losses).view(targets.shape)
