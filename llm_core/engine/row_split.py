"""One-row fp32 matmuls split across threads: the batch-1 decode step's Linears and head.

At one row a Linear is a matrix-vector product whose cost is reading the weight from memory (Pope et al.,
"Efficiently Scaling Transformer Inference", 2022, sec. 3). MKL runs it on one thread whatever torch's
thread count (2-core EPYC, gpt2-small's 48 block Linears: 18.8 ms on one thread, 18.0 on two), and one core
cannot draw the memory bandwidth two can. So the output columns are cut into one contiguous block per
thread and the blocks run as one batched matmul, `torch.bmm`, which hands each batch entry to its own
thread of torch's pool: the block Linears from row blocks of the model's own (out, in) weight, the head
from column blocks of its (C, V) copy (`InferenceHead`), no copy of either. gpt2-small's 48 block Linears
went from 18.1-19.2 to 10.7-11.3 ms a token, the 50257-way head from 5.4 to 3.7-4.1 ms
(`benchmarks/decode_speed.py`). Each output element is still one dot product over the input, computed by
another kernel, so the logits move by fp32 rounding (tests/test_engine_row_split.py states the tolerance).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def split_matmul(x: torch.Tensor, weight_t: torch.Tensor, bias: torch.Tensor | None, parts: int) -> torch.Tensor:
    """x (1, in) @ weight_t (in, out) [+ bias (out,)] -> (1, out), the out columns cut into `parts` blocks
    computed as one batched matmul (one block a thread); the last out % parts columns by one more matmul.
    weight_t may be any strided view, such as a Linear's weight.t()."""
    if x.shape[0] != 1:
        raise ValueError(f"split_matmul: x must be one row, got shape {tuple(x.shape)}")
    n_in, n_out = weight_t.shape
    width = n_out // parts if parts > 0 else 0  # columns per block
    if parts < 2 or width == 0:
        out = x @ weight_t
        return out + bias if bias is not None else out
    main = width * parts
    out = x.new_empty(1, n_out)
    blocks = weight_t[:, :main].unflatten(1, (parts, width)).permute(1, 0, 2)  # (parts, in, width), a view
    torch.bmm(x.expand(parts, 1, n_in), blocks, out=out[:, :main].view(parts, 1, width))
    if main < n_out:
        torch.mm(x, weight_t[:, main:], out=out[:, main:])
    return out.add_(bias) if bias is not None else out


class RowSplitLinear(nn.Module):
    """An inference-only fp32 Linear for decoding one row at a time: one row of input runs `split_matmul`
    over the model's own weight (shared, not copied), a block per torch thread at the call; any other row
    count runs `F.linear`."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = linear.weight.detach()  # (out, in): the model's storage
        self.bias = None if linear.bias is None else linear.bias.detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)  # (rows, in)
        if flat.shape[0] != 1:
            return F.linear(x, self.weight, self.bias)
        out = split_matmul(flat, self.weight.t(), self.bias, torch.get_num_threads())  # (1, out)
        return out.view(*x.shape[:-1], self.out_features)


def row_split_applies(weight: torch.Tensor) -> bool:
    """Split one-row matmuls of this weight: fp32 on the CPU with more than one torch thread (on a GPU one
    kernel already spreads over the whole device)."""
    return weight.device.type == "cpu" and weight.dtype == torch.float32 and torch.get_num_threads() > 1
