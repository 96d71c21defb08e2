"""GPT-2's tanh GELU on bf16 CPU tensors, forward and backward (`bf16_kernels.c`).

GELU(x) = 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))) (Hendrycks and Gimpel, "Gaussian Error Linear
Units", 2016; GPT-2's approximation), the same function as `F.gelu(x, approximate="tanh")`, which
`gelu_tanh` runs wherever the kernels do not apply (fp32, other devices, torch.compile, switched off).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from . import applies, library


class _GeluTanhBF16(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        x = x.contiguous()
        y = torch.empty_like(x)
        library().wb_gelu_tanh_bf16(x.data_ptr(), y.data_ptr(), x.numel(), torch.get_num_threads())
        ctx.save_for_backward(x)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        grad = grad.to(torch.bfloat16).contiguous()
        dx = torch.empty_like(x)
        library().wb_gelu_tanh_backward_bf16(grad.data_ptr(), x.data_ptr(), dx.data_ptr(), x.numel(),
                                             torch.get_num_threads())
        return dx


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """GPT-2's GELU: the bf16 CPU kernel where it applies (`cpu_kernels.applies`), else torch's."""
    if applies(x):
        return _GeluTanhBF16.apply(x)
    return F.gelu(x, approximate="tanh")
