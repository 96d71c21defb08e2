"""Decoding rules: greedy, temperature, top-k and nucleus (top-p) sampling, with per-row seeded generators.

- Temperature rescales logits before the softmax (t < 1 sharpens, t > 1 flattens; t = 0 means greedy).
- Top-k keeps the k most likely tokens (Fan et al., "Hierarchical Neural Story Generation", 2018).
- Top-p keeps the smallest set of most likely tokens whose probability reaches p (Holtzman et al.,
  "The Curious Case of Neural Text Degeneration", 2020).
Top-k is applied first, then top-p on the renormalised distribution, as in most implementations.

Every row of a batch draws from its own `torch.Generator`, so sample i of a batch is exactly the sample a
single-row call seeded with the same seed would draw (N batched samples = N independent seeded samples).
The arguments are validated once, by `SamplingParams` (`params.py`).
"""
from __future__ import annotations

import torch


def derive_seed(seed: int, index: int) -> int:
    """Seed of sample `index` of a call seeded with `seed` (a fixed mix, so nearby seeds don't overlap)."""
    return (seed * 0x9E3779B97F4A7C15 + index * 0xBF58476D1CE4E5B9 + 1) % (2**63)


def seeded_generators(seeds: list[int], device: torch.device) -> list[torch.Generator]:
    """One generator per row, each seeded with its own seed."""
    gens = []
    for s in seeds:
        g = torch.Generator(device=device)
        g.manual_seed(s)
        gens.append(g)
    return gens


def filter_top_k(logits: torch.Tensor, k: int | None) -> torch.Tensor:
    """Set every logit below the k-th largest of its row to -inf. (B, V) -> (B, V)."""
    if k is None or k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # (B, 1)
    return logits.masked_fill(logits < kth, float("-inf"))


def filter_top_p(logits: torch.Tensor, p: float | None) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose probability sum reaches p. (B, V) -> (B, V)."""
    if p is None or p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = torch.softmax(sorted_logits, dim=-1)
    # Probability mass strictly before each token: a token is kept while that mass is still below p,
    # so the token that crosses p is kept and the most likely token always is.
    mass_before = torch.cumsum(probs, dim=-1) - probs
    drop_sorted = mass_before >= p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def next_token_probs(
    logits: torch.Tensor, temperature: float, top_k: int | None = None, top_p: float | None = None
) -> torch.Tensor:
    """The sampling distribution (B, V) after temperature, top-k and top-p (temperature must be > 0)."""
    logits = logits.float() / temperature
    logits = filter_top_p(filter_top_k(logits, top_k), top_p)
    return torch.softmax(logits, dim=-1)


def sample_next(
    logits: torch.Tensor,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    generators: list[torch.Generator],
) -> torch.Tensor:
    """Pick one token per row from last-position logits (B, V) -> (B,). temperature 0 = argmax."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = next_token_probs(logits, temperature, top_k, top_p)  # (B, V)
    return draw(probs, generators)


_BLOCK = 1024  # tokens per block of the two-level cumulative sum in `draw`


def draw(probs: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
    """One token per row of `probs` (B, V) by inverse transform sampling: row i draws u_i ~ U[0, 1) from
    generators[i] and takes the first token whose cumulative probability exceeds u_i times the row's
    total (a zero-probability token is never taken). One random number per row: torch.multinomial's
    single-draw path makes V exponential variates per row, 1.2 ms per row at V = 50257 on the benchmark
    CPU, more than a gpt2-mini layer costs. The cumulative sum is two-level (block totals, then the one
    block u falls in) and in fp64, so it costs one pass over `probs` and 50k small terms add up exactly
    enough. -> (B,)"""
    B, V = probs.shape
    u = torch.cat([torch.rand(1, generator=generators[i], dtype=torch.float64, device=probs.device)
                   for i in range(B)])  # (B,)
    nb = -(-V // _BLOCK)
    blocks = torch.nn.functional.pad(probs, (0, nb * _BLOCK - V)).view(B, nb, _BLOCK)  # (B, nb, BLOCK)
    block_cdf = blocks.sum(-1, dtype=torch.float64).cumsum(-1)  # (B, nb)
    target = u * block_cdf[:, -1]  # (B,)
    j = torch.searchsorted(block_cdf, target[:, None], right=True).clamp_(max=nb - 1)  # (B, 1) block index
    before = torch.where(j > 0, block_cdf.gather(1, (j - 1).clamp(min=0)), torch.zeros_like(target[:, None]))
    row = blocks.gather(1, j[:, :, None].expand(B, 1, _BLOCK)).squeeze(1)  # (B, BLOCK): the chosen block
    k = torch.searchsorted(row.double().cumsum(-1), target[:, None] - before, right=True)  # (B, 1)
    # k == BLOCK only when rounding puts the target past the block's own sum: its last positive token
    last = _BLOCK - 1 - row.gt(0).flip(-1).int().argmax(-1, keepdim=True)
    k = torch.where(k >= _BLOCK, last, k)
    return (j * _BLOCK + k).squeeze(1).clamp_(max=V - 1)
