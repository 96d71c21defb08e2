"""Mixture-of-Experts throughput: sorted dispatch vs run-every-expert-and-mask vs a dense MLP.

    python benchmarks/moe.py                      # 8 experts, top-2, gpt2-mini width, forward+backward
    python benchmarks/moe.py --mode forward --tokens 4096

Three layers on the same tokens, timed in one run:
- dispatch: `llm_core.moe.MoEFeedForward` (each expert runs only on the tokens routed to it);
- masked:   the same router and experts, but every expert runs on every token and the outputs of the
            experts a token did not choose are multiplied by zero (the naive implementation);
- dense:    a GPT-2 MLP with the same *active* size (hidden width top_k * d_hidden), i.e. the FLOPs
            one token costs in the MoE layer.
Prints tokens/s and the ratios; target: dispatch >= 2x masked for 8 experts, top-2.
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from llm_core.moe import MoEFeedForward


class MaskedMoE(nn.Module):
    """Run every expert on every token, then zero the weights of the experts not selected."""

    def __init__(self, moe: MoEFeedForward) -> None:
        super().__init__()
        self.moe = moe

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])  # (N, C)
        logits, top_idx, weights = self.moe.route(flat)
        dense_weights = torch.zeros_like(logits).scatter(1, top_idx, weights).to(x.dtype)  # (N, E), 0 = masked
        out = torch.zeros_like(flat)
        for e, expert in enumerate(self.moe.experts):
            out = out + dense_weights[:, e : e + 1] * expert(flat)  # every expert sees all N tokens
        return out.reshape(x.shape)


class DenseMLP(nn.Module):
    def __init__(self, d_model: int, d_hidden: int) -> None:
        super().__init__()
        self.fc = nn.Linear(d_model, d_hidden)
        self.proj = nn.Linear(d_hidden, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.fc(x), approximate="tanh"))


def tokens_per_second(layer: nn.Module, x: torch.Tensor, mode: str, repeats: int) -> float:
    def step() -> None:
        if mode == "forward":
            with torch.no_grad():
                layer(x)
        else:
            layer.zero_grad(set_to_none=True)
            layer(x).square().mean().backward()

    step()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - start)  # min over repeats: least disturbed by other load
    return x.shape[0] * x.shape[1] / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d-model", type=int, default=384)
    parser.add_argument("--d-hidden", type=int, default=1536)
    parser.add_argument("--experts", type=int, default=8)
    parser.add_argument("--top-k", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=2048, help="tokens per batch (batch 8 x tokens/8)")
    parser.add_argument("--mode", choices=["train", "forward"], default="train")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = leave the default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    g = torch.Generator().manual_seed(0)
    moe = MoEFeedForward(args.d_model, args.d_hidden, args.experts, args.top_k)
    with torch.no_grad():
        for p in moe.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    masked = MaskedMoE(moe)
    dense = DenseMLP(args.d_model, args.top_k * args.d_hidden)
    x = torch.randn(8, args.tokens // 8, args.d_model, generator=g)

    with torch.no_grad():  # sanity: both MoE implementations compute the same function
        torch.testing.assert_close(moe(x), masked(x), atol=1e-4, rtol=1e-4)

    results = {
        "dispatch (sorted)": tokens_per_second(moe, x, args.mode, args.repeats),
        "masked (all experts)": tokens_per_second(masked, x, args.mode, args.repeats),
        f"dense (hidden {args.top_k}x{args.d_hidden})": tokens_per_second(dense, x, args.mode, args.repeats),
    }
    print(
        f"MoE layer: d_model={args.d_model}, d_hidden={args.d_hidden}, {args.experts} experts, top-{args.top_k}, "
        f"{x.shape[0] * x.shape[1]} tokens, {args.mode}, {torch.get_num_threads()} threads"
    )
    dispatch = results["dispatch (sorted)"]
    for name, tps in results.items():
        print(f"  {name:<28} {tps:>12,.0f} tokens/s   dispatch / this = {dispatch / tps:5.2f}x")
    ratio = dispatch / results["masked (all experts)"]
    verdict = "meets" if ratio >= 2 else "misses"
    print(f"dispatch is {ratio:.2f}x the masked approach ({verdict} the 2x target)")


if __name__ == "__main__":
    main()
