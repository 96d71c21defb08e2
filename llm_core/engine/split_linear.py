"""One-row fp32 matmuls split across threads: the block Linears of a batch-1 decode step (and its head where
oneDNN does not pack it: `fast.InferenceHead` runs it packed, faster at one row too).

A decode step at batch 1 multiplies one row by every weight, so its cost is reading the weights from
memory (Pope et al., "Efficiently Scaling Transformer Inference", 2022, sec. 3). MKL runs such a product on
one thread whatever torch's thread count (2-core EPYC, gpt2-small's 48 block Linears at one row: 18.8 ms on
one thread, 18.0 on two), and one core cannot draw the memory bandwidth two can. So the output columns are
cut into one contiguous block per thread and the blocks run as one batched matmul, `torch.bmm`, which hands
each batch entry to its own thread of torch's pool: the block Linears and the head alike from row blocks of
the model's own (out, in) weight, no copy. On that machine, 2 threads, one row of gpt2-small: the 48 block
Linears 18.1-19.2 -> 10.7-11.3 ms, the 50257-way head 5.4 -> 3.7-4.1 ms.

Steps of more rows (batched sampling, beams) run oneDNN-packed weights instead (`fast.PackedLinear`: the
gpt2-mini head at 8 rows 1.5 ms against 3.2 ms split). At one row the block Linears run as fast split as
packed (gpt2-mini's, 13-28 us either way) and need no copy; the head runs packed (0.75-1.25 vs 1.1-1.3 ms).

Each output element is still one dot product over the input, computed by another kernel, so the logits
move by fp32 rounding (tests/test_engine_split_linear.py states the tolerance).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def split_matmul(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, parts: int) -> torch.Tensor:
    """x (1, in) @ weight (out, in)^T [+ bias (out,)] -> (1, out), as F.linear, with the out columns cut
    into `parts` blocks (row blocks of `weight`, views) computed as one batched matmul, one block a thread;
    the last out % parts columns by one more matmul. More than one row: `F.linear` itself.

    The row runs as weight_block @ x^T: (parts, out/parts, in) @ (in, 1) is the output's own layout, and
    it streams each block's rows in order (gpt2-small's block Linears 8.3 ms vs 10.4 as x @ weight_block^T,
    the gpt2-mini head 1.25 vs 1.42 from a (C, V) copy)."""
    n_out, n_in = weight.shape
    width = n_out // parts if parts > 0 else 0  # output columns per block
    if x.shape[0] != 1 or parts < 2 or width == 0:
        return F.linear(x, weight, bias)
    main = width * parts
    out = x.new_empty(1, n_out)
    blocks = weight[:main].view(parts, width, n_in)  # (parts, width, in)
    # (parts, width, 1) is out[0, :main] itself: bmm writes it in place
    torch.bmm(blocks, x.t().expand(parts, n_in, 1), out=out[:, :main].view(parts, width, 1))
    if main < n_out:
        torch.mm(x, weight[main:].t(), out=out[:, main:])
    return out.add_(bias) if bias is not None else out


class SplitLinear(nn.Module):
    """An inference-only fp32 Linear for batch-1 decode steps: one row of input runs `split_matmul` over
    the model's own weight (shared, not copied), a block per torch thread; more rows run `F.linear`.

    The blocks of the weight and of the bias are views made once, for the thread count at construction,
    and one `baddbmm` adds the bias as it writes (gpt2-mini's block Linears 11-26 us a call against 15-30
    through `split_matmul`, which slices, views and adds again on every call: 0.1 ms of a 3.2 ms step)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = linear.weight.detach()  # (out, in): the model's storage
        self.bias = None if linear.bias is None else linear.bias.detach()
        self.parts = torch.get_num_threads()
        width = self.out_features // self.parts
        self.one_row = self.parts > 1 and width > 0 and width * self.parts == self.out_features
        if self.one_row:  # views of the model's storage: they follow its in-place updates
            self.weight_blocks = self.weight.view(self.parts, width, self.in_features)  # (parts, width, in)
            self.bias_blocks = None if self.bias is None else self.bias.view(self.parts, width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)  # (rows, in)
        if flat.shape[0] != 1:
            return F.linear(x, self.weight, self.bias)
        if self.one_row and torch.get_num_threads() == self.parts:
            x_t = flat.t().expand(self.parts, self.in_features, 1)  # (parts, in, 1)
            if self.bias_blocks is None:
                y = torch.bmm(self.weight_blocks, x_t)
            else:
                y = torch.baddbmm(self.bias_blocks, self.weight_blocks, x_t)
            return y.view(*x.shape[:-1], self.out_features)  # (parts, width, 1) is the row in order
        out = split_matmul(flat, self.weight, self.bias, torch.get_num_threads())  # (1, out)
        return out.view(*x.shape[:-1], self.out_features)


def split_applies(weight: torch.Tensor) -> bool:
    """Split one-row matmuls of this weight: fp32 on the CPU with more than one torch thread (on a GPU one
    kernel already spreads over the whole device)."""
    return weight.device.type == "cpu" and weight.dtype == torch.float32 and torch.get_num_threads() > 1
