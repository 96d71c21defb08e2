"""Cross-entropy of bf16 logits and its gradient in one pass (`bf16_kernels.c`, `wb_cross_entropy_bf16`).

For each row i of logits z (bf16, V of them): loss_i = logsumexp(z_i) - z_i[y_i] in fp32, and optionally
the gradient of that loss, softmax(z_i) - onehot(y_i), rounded to bf16 and written over z_i. The loss by
logsumexp needs no special case for a target whose probability is below fp32's normal range (the eager
path's -log p_y does). `llm_core.linear_ce` calls it on the head's logits under bf16 autocast.
"""
from __future__ import annotations

import torch

from . import library


def cross_entropy_bf16(z: torch.Tensor, targets: torch.Tensor, losses: torch.Tensor, write_grad: bool) -> None:
    """z (R, V) bf16 CPU with unit stride along V; targets (R,) int64 in [0, V); losses (R,) fp32, written.
    With `write_grad`, z is overwritten by softmax(z) - onehot(targets) in bf16. A row holding a NaN or an
    infinite logit gets a NaN loss (and a NaN gradient)."""
    lib = library()
    if lib is None:
        raise RuntimeError("cross_entropy_bf16: the CPU kernels are not available here "
                           "(llm_core.cpu_kernels.status() says why)")
    R, V = z.shape
    if z.dtype != torch.bfloat16 or z.device.type != "cpu" or z.stride(1) != 1:
        raise ValueError(f"cross_entropy_bf16: z must be bf16 on the CPU with unit stride along V, got "
                         f"{z.dtype} on {z.device} with strides {tuple(z.stride())}")
    if targets.shape != (R,) or targets.dtype != torch.int64 or not targets.is_contiguous():
        raise ValueError(f"cross_entropy_bf16: targets must be contiguous int64 of shape ({R},), got "
                         f"{targets.dtype} {tuple(targets.shape)}")
    if losses.shape != (R,) or losses.dtype != torch.float32 or not losses.is_contiguous():
        raise ValueError(f"cross_entropy_bf16: losses must be contiguous fp32 of shape ({R},), got "
                         f"{losses.dtype} {tuple(losses.shape)}")
    threads = torch.get_num_threads()
    scratch = torch.empty(threads, V + 16, dtype=torch.float32)  # each thread's row of exps
    lib.wb_cross_entropy_bf16(z.data_ptr(), z.data_ptr() if write_grad else None, R, V, z.stride(0),
                              targets.data_ptr(), losses.data_ptr(), scratch.data_ptr(), threads)
