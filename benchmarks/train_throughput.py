"""Training throughput: our GPT vs a naive from-scratch reference, measured in the same run.

The reference is written the way the classic from-scratch tutorials write it: separate q/k/v projections,
an explicit causal mask with masked_fill + softmax attention, hand-written LayerNorm and GELU, fp32. Ours:
fused qkv, `scaled_dot_product_attention`, bf16 autocast where supported (see llm_core.device).

Both train the same shape (gpt2-mini: width 384, 6 layers, 6 heads, context 256, vocab 50257, batch 4) with
AdamW on the same random tokens. Prints tokens/s of each, the ratio (target >= 2.0 on a 2-core CPU), and model
FLOPs utilisation against a matmul peak measured here (bf16 and fp32).

    python benchmarks/train_throughput.py [--steps 6] [--warmup 2] [--threads 2]
"""
from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn as nn

from llm_core import GPT, GPTConfig
from llm_core.device import autocast, pick_device, supports_bf16


class NaiveLayerNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(dim))
        self.shift = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=-1, keepdim=True)
        var = x.var(dim=-1, keepdim=True, unbiased=False)
        return self.scale * (x - mean) / torch.sqrt(var + self.eps) + self.shift


class NaiveGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * x * (1 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


class NaiveAttention(nn.Module):
    def __init__(self, d: int, heads: int, context: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, d // heads
        self.W_query = nn.Linear(d, d)
        self.W_key = nn.Linear(d, d)
        self.W_value = nn.Linear(d, d)
        self.out_proj = nn.Linear(d, d)
        self.register_buffer("mask", torch.triu(torch.ones(context, context), diagonal=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q = self.W_query(x).view(B, T, self.heads, self.head_dim).transpose(1, 2)
        k = self.W_key(x).view(B, T, self.heads, self.head_dim).transpose(1, 2)
        v = self.W_value(x).view(B, T, self.heads, self.head_dim).transpose(1, 2)
        scores = q @ k.transpose(2, 3)  # (B, H, T, T)
        scores = scores.masked_fill(self.mask.bool()[:T, :T], -torch.inf)
        weights = torch.softmax(scores / self.head_dim**0.5, dim=-1)
        y = (weights @ v).transpose(1, 2).reshape(B, T, C)
        return self.out_proj(y)


class NaiveBlock(nn.Module):
    def __init__(self, d: int, heads: int, context: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = NaiveLayerNorm(d), NaiveLayerNorm(d)
        self.att = NaiveAttention(d, heads, context)
        self.ff = nn.Sequential(nn.Linear(d, 4 * d), NaiveGELU(), nn.Linear(4 * d, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.att(self.norm1(x))
        return x + self.ff(self.norm2(x))


class NaiveGPT(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos_emb = nn.Embedding(cfg.context_length, cfg.d_model)
        self.blocks = nn.Sequential(*[NaiveBlock(cfg.d_model, cfg.n_heads, cfg.context_length) for _ in range(cfg.n_layers)])
        self.final_norm = NaiveLayerNorm(cfg.d_model)
        self.out_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        T = idx.shape[1]
        x = self.tok_emb(idx) + self.pos_emb(torch.arange(T, device=idx.device))
        return self.out_head(self.final_norm(self.blocks(x)))


def tokens_per_second(model: nn.Module, batches, device, use_autocast: bool, steps: int, warmup: int) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()

    def step(x, y):
        with autocast(device, enabled=use_autocast):
            logits = model(x)
        loss = nn.functional.cross_entropy(logits.float().flatten(0, 1), y.flatten())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for i in range(warmup):
        step(*batches[i % len(batches)])
    start = time.perf_counter()
    for i in range(steps):
        step(*batches[i % len(batches)])
    elapsed = time.perf_counter() - start
    x = batches[0][0]
    return steps * x.numel() / elapsed


def matmul_peak(dtype: torch.dtype, device, n: int = 1024, reps: int = 10) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="alternate the two models this many times")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = pick_device()
    cfg = GPTConfig.preset("gpt2-mini")
    gen = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(4):
        seq = torch.randint(0, cfg.vocab_size, (args.batch, cfg.context_length + 1), generator=gen)
        batches.append((seq[:, :-1].to(device), seq[:, 1:].to(device)))

    torch.manual_seed(0)
    ours, naive = GPT(cfg).to(device), NaiveGPT(cfg).to(device)
    ours_tps, naive_tps = [], []
    # Alternate the two so a noisy neighbour slows both alike; keep each one's best round.
    for _ in range(args.rounds):
        naive_tps.append(tokens_per_second(naive, batches, device, False, args.steps, args.warmup))
        ours_tps.append(tokens_per_second(ours, batches, device, True, args.steps, args.warmup))
    best_ours, best_naive = max(ours_tps), max(naive_tps)

    flops_per_token = ours.flops_per_token(training=True)
    peak_bf16 = matmul_peak(torch.bfloat16, device)
    peak_fp32 = matmul_peak(torch.float32, device)
    bf16 = supports_bf16(device)  # off on CPUs without bf16 in hardware (see llm_core.device)
    peak_ours = peak_bf16 if bf16 else peak_fp32
    print(f"device={device} threads={args.threads} shape=gpt2-mini batch={args.batch} ctx={cfg.context_length}")
    print(f"naive reference (fp32, explicit attention):  {best_naive:9.0f} tokens/s")
    print(f"llm_core GPT ({'bf16 autocast' if bf16 else 'fp32, no bf16 hw'}, SDPA): {best_ours:9.0f} tokens/s")
    print(f"ratio ours / naive: {best_ours / best_naive:.2f}x (target >= 2.0)")
    print(f"matmul peak measured: bf16 {peak_bf16 / 1e9:.1f} GFLOP/s, fp32 {peak_fp32 / 1e9:.1f} GFLOP/s")
    print(
        f"MFU: ours {best_ours * flops_per_token / peak_ours:.1%} of {'bf16' if bf16 else 'fp32'} peak; "
        f"naive {best_naive * flops_per_token / peak_fp32:.1%} of fp32 peak"
    )


if __name__ == "__main__":
    main()
