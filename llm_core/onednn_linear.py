"""fp32 Linear layers through oneDNN on CPUs with AVX-512.

torch runs an fp32 `F.linear` or `torch.mm` on the CPU with MKL's sgemm. On AMD processors MKL takes its
AVX2 code path, so on an AVX-512 EPYC (Zen 5, 2 cores) it reaches half of the machine's fp32 peak: 235
GFLOP/s at 2048^3, against 505-529 for oneDNN's fp32 kernels, which choose their code by the instruction
set, not the vendor (`torch.ops.mkldnn._linear_pointwise`, the linear that inductor uses for frozen
weights). At gpt2-mini's training shapes (1024 rows) the forward and dL/dx ran 2.1-2.3x as fast, dL/dW
1.5-2.1x. With oneDNN held to AVX2 (`ONEDNN_MAX_CPU_ISA=AVX2`) the two were within 10% of each other, so
the route is taken only where torch reports AVX-512 (`llm_core.device.onednn_fp32_pays`).

`linear(x, weight, bias)` is `F.linear` with that route for fp32 CPU tensors outside autocast (under
autocast `F.linear` computes in bf16, where torch already calls oneDNN), with its own backward: dL/dx =
g W and dL/dW = g^T x as two more oneDNN products, dL/db = the column sums of g. The model's `Linear` is
an `nn.Linear` whose forward is `linear`, so its parameters, state dict and every check that a module is
an `nn.Linear` are unchanged. `matmul_nt(a, b)` is a @ b^T the same way, for code that keeps its own
backward (the fused head + cross-entropy).

The results are IEEE fp32; they differ from MKL's in summation order only: relative 1e-6 on these
shapes (tests/test_onednn_linear.py states the tolerance against fp64).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from .device import has_onednn_linear, onednn_fp32_pays


def onednn_matmul(a: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """a (M, K) @ weight (N, K)^T [+ bias (N,)] -> (M, N) by oneDNN's linear, whatever the dtype and the
    machine's verdict; transposed views are taken as they are, and `weight` may be one packed by
    `torch.ops.mkldnn._reorder_linear_weight` (the Engine's few-row copies). Needs `has_onednn_linear()`."""
    return torch.ops.mkldnn._linear_pointwise(a, weight, bias, "none", [], "")


def onednn_packing(weight: torch.Tensor) -> bool:
    """oneDNN's pre-packed linear (the kernel inductor's CPU backend uses for frozen weights) exists for
    this weight: a CPU build with oneDNN, and fp32 or bf16 (it has no fp64)."""
    return (weight.device.type == "cpu" and weight.dtype in (torch.float32, torch.bfloat16)
            and has_onednn_linear())


# Rows oneDNN is told to expect when it packs a weight (its batch-size hint). Packed for 16 rows, a weight ran
# every count from 1 to 16 as fast as packed for that count, or faster (2-core EPYC, AVX512, two threads):
# the fp32 gpt2-mini head at 1 / 8 / 16 rows 1.28 / 1.59 / 2.04 ms, against 1.54 / 2.69 / 3.30 packed for
# one row; on one thread 1.68 / 2.76 ms against MKL's one-row 2.48 and 8-row sgemm 7.7.
PACK_ROWS = 16


def pack_weight(weight: torch.Tensor) -> torch.Tensor:
    """weight (out, in) packed once in oneDNN's blocked layout for PACK_ROWS rows, for `onednn_matmul`
    (where `onednn_packing(weight)`): the Engine's few-row copies and its bf16 screen of the head."""
    return torch.ops.mkldnn._reorder_linear_weight(weight, PACK_ROWS)


def routes(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """This product goes through oneDNN: fp32 on the CPU, outside autocast and outside a graph torch.compile
    traces, rows to multiply, and oneDNN's fp32 kernels faster here than torch's default
    (`onednn_fp32_pays`)."""
    if torch.compiler.is_compiling():  # inductor lowers F.linear itself, and cannot lower this op on a
        return False  # weight it did not pack ("LoweringException: AssertionError")
    return (x.dtype == torch.float32 and weight.dtype == torch.float32 and x.device.type == "cpu"
            and weight.device.type == "cpu" and x.numel() > 0 and x.dim() >= 1
            and not torch.is_autocast_enabled("cpu") and onednn_fp32_pays())


class _OneDNNLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:  # type: ignore[override]
        x2 = x.reshape(-1, x.shape[-1])  # (M, in)
        ctx.save_for_backward(x2, weight)
        ctx.has_bias = bias is not None
        return onednn_matmul(x2, weight, bias).view(*x.shape[:-1], weight.shape[0])  # (..., out)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        x2, weight = ctx.saved_tensors
        g2 = grad.reshape(-1, grad.shape[-1])  # (M, out)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = onednn_matmul(g2, weight.t()).view(*grad.shape[:-1], weight.shape[1])  # g W: (..., in)
        if ctx.needs_input_grad[1]:
            grad_w = onednn_matmul(g2.t(), x2.t())  # g^T x: (out, in), the weight's own layout
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = g2.sum(0)  # (out,)
        return grad_x, grad_w, grad_b


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """`F.linear(x, weight, bias)`: x (..., in), weight (out, in), bias (out,) -> (..., out), through oneDNN
    where `routes` says so (module docstring)."""
    if not routes(x, weight):
        return F.linear(x, weight, bias)
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad
                                    or (bias is not None and bias.requires_grad)):
        return _OneDNNLinear.apply(x, weight, bias)
    return onednn_matmul(x.reshape(-1, x.shape[-1]), weight, bias).view(*x.shape[:-1], weight.shape[0])


def matmul_nt(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a (M, K) @ b (N, K)^T -> (M, N), with no autograd: oneDNN where `routes` says so, else torch.mm."""
    if routes(a, b):
        return onednn_matmul(a, b)
    return torch.mm(a, b.t())


class Linear(nn.Linear):
    """`nn.Linear` whose forward is `linear`: the model's layers (same parameters, same state dict)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)


PLAIN_LINEARS = (nn.Linear, Linear)


def is_plain_linear(module: nn.Module) -> bool:
    """An `nn.Linear` or the model's `Linear`, not an adapter or another subclass."""
    return type(module) in PLAIN_LINEARS
