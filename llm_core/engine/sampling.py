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

from .screened_head import ScreenedLogits


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


def top_k_keeps_all(k: int | None, vocab_size: int) -> bool:
    """True when top-k removes no token: no k, or k at least the vocabulary."""
    return k is None or k >= vocab_size


def top_p_keeps_all(p: float | None) -> bool:
    """True when top-p removes no token: no p, or p >= 1."""
    return p is None or p >= 1.0


def filter_top_k(logits: torch.Tensor, k: int | None) -> torch.Tensor:
    """Set every logit below the k-th largest of its row to -inf. (B, V) -> (B, V)."""
    if top_k_keeps_all(k, logits.shape[-1]):
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # (B, 1)
    return logits.masked_fill(logits < kth, float("-inf"))


def filter_top_p(logits: torch.Tensor, p: float | None) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose probability sum reaches p. (B, V) -> (B, V)."""
    if top_p_keeps_all(p):
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


def temperature_weights(logits: torch.Tensor, temperature: float, out: torch.Tensor | None = None) -> torch.Tensor:
    """exp((logits - max) / temperature), the softmax before its normalisation, (B, V) -> (B, V) fp32,
    written into `out` when given (a decode loop passes the same fp32 buffer every step). `draw`
    normalises by the row total itself, so plain temperature sampling skips the softmax's division. Why
    the buffer: at 8 x 50257 each fresh fp32 tensor is 1.6 MB that the allocator maps and the CPU
    page-faults in again on every step (1,950 faults and 4 ms a step with the softmax path)."""
    x = logits.float()
    peak = x.amax(-1, keepdim=True)  # (B, 1)
    if out is not None:
        shifted = torch.sub(x, peak, out=out)
    else:
        shifted = x - peak if x is logits else x.sub_(peak)  # never write into the caller's tensor
    return shifted.div_(temperature).exp_()


def sample_next(
    logits: torch.Tensor | ScreenedLogits,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    generators: list[torch.Generator],
    work: torch.Tensor | None = None,
) -> torch.Tensor:
    """Pick one token per row from last-position logits (B, V) -> (B,). temperature 0 = argmax. `work`, an
    fp32 (B, V) buffer, is where plain temperature sampling writes its weights (see `temperature_weights`).
    Logits screened by a bf16 copy of the head (`screened_head.ScreenedLogits`) give the same argmax and the
    same temperature distribution as the fp32 head's; other rules read the fp32 head from them."""
    if isinstance(logits, ScreenedLogits):
        if temperature == 0:
            return logits.argmax()
        if top_k_keeps_all(top_k, logits.shape[-1]) and top_p_keeps_all(top_p):
            return draw_screened(logits, temperature, generators, work)
        logits = logits.fallback()
    if temperature == 0:
        if logits.dtype in (torch.bfloat16, torch.float16):  # (exact) torch's half argmax is 5x slower on the
            logits = logits.float()  # CPU: 158 vs 32 us over 50257 logits, 8% of a bf16 gpt2-mini token
        return logits.argmax(dim=-1)
    if top_k_keeps_all(top_k, logits.shape[-1]) and top_p_keeps_all(top_p):  # plain temperature sampling
        return draw(temperature_weights(logits, temperature, work), generators)
    return draw(next_token_probs(logits, temperature, top_k, top_p), generators)


_BLOCK = 1024  # tokens per block of the two-level cumulative sum in `draw`


def draw(probs: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
    """One token per row of `probs` (B, V), probabilities or any non-negative weights, by inverse
    transform sampling: row i draws u_i ~ U[0, 1) from generators[i] and takes the first token whose
    cumulative weight exceeds u_i times the row's total (a zero-weight token is never taken).

    One random number per row: torch.multinomial's single-draw path makes V exponential variates per row,
    1.2 ms per row at V = 50257 on the benchmark CPU, more than a gpt2-mini layer costs. The cumulative sum
    is two-level and reads `probs` in place (no padded or fp64 copy of it): totals of blocks of 1024 tokens
    (fp32 sums, relative error about 1e-7), their cumulative sum in fp64, then the cumulative sum in fp64
    of the one block u falls in. -> (B,)"""
    B, V = probs.shape
    u = torch.cat([torch.rand(1, generator=generators[i], dtype=torch.float64, device=probs.device)
                   for i in range(B)])  # (B,)
    full = V // _BLOCK
    totals = [probs[:, : full * _BLOCK].view(B, full, _BLOCK).sum(-1)] if full else []  # (B, full)
    if V > full * _BLOCK:
        totals.append(probs[:, full * _BLOCK :].sum(-1, keepdim=True))  # (B, 1): the last, shorter block
    block_cdf = torch.cat(totals, 1).double().cumsum(-1)  # (B, nb)
    nb = block_cdf.shape[1]
    target = u * block_cdf[:, -1]  # (B,)
    j = torch.searchsorted(block_cdf, target[:, None], right=True).clamp_(max=nb - 1)  # (B, 1) block index
    before = torch.where(j > 0, block_cdf.gather(1, (j - 1).clamp(min=0)), torch.zeros_like(target[:, None]))
    index = j * _BLOCK + torch.arange(_BLOCK, device=probs.device)  # (B, BLOCK): the chosen block's tokens
    row = probs.gather(1, index.clamp(max=V - 1)).masked_fill_(index >= V, 0)  # (B, BLOCK)
    k = torch.searchsorted(row.double().cumsum(-1), target[:, None] - before, right=True)  # (B, 1)
    # k == BLOCK when rounding puts the target past the block's own sum: its last positive token
    last = _BLOCK - 1 - row.gt(0).flip(-1).int().argmax(-1, keepdim=True)
    k = torch.where(k >= _BLOCK, last, k)
    return (j * _BLOCK + k).squeeze(1).clamp_(max=V - 1)


# Where the screen's envelope E is more than this many temperatures wide, a draw might be accepted less than
# half the time (the acceptance rate is at least exp(-2 E / T)), and the step reads the fp32 head instead.
MAX_ENVELOPE_OVER_T = 0.35


def draw_screened(logits: ScreenedLogits, temperature: float, generators: list[torch.Generator],
                  work: torch.Tensor | None = None) -> torch.Tensor:
    """One token per row from softmax(x / T) of the fp32 logits x, reading only the bf16 screen a and one fp32
    logit per draw: rejection sampling (von Neumann, "Various techniques used in connection with random
    digits", 1951). The proposal is q_j ~ exp(a_j / T); with E >= max_j (x_j - a_j) (the screen's bound,
    `ScreenedLogits.envelope`), exp(x_j / T) <= exp(E / T) exp(a_j / T) for every j, so a drawn j accepted
    with probability exp((x_j - a_j - E) / T) <= 1 is distributed exactly as softmax(x / T). A rejected
    row draws again from q. Row i uses only generators[i] (a proposal uniform, then an acceptance uniform,
    per try), so a row samples the same whatever the batch. -> (B,)"""
    envelope = logits.envelope()  # (B,) E_i
    if max(envelope) / temperature > MAX_ENVELOPE_OVER_T:
        return draw(temperature_weights(logits.fallback(), temperature, work), generators)
    weights = temperature_weights(logits.values, temperature, work)  # (B, V) exp((a - max a) / T)
    tokens = draw(weights, generators)  # (B,)
    pending, tries = list(range(len(generators))), 0
    while pending:
        rows = torch.tensor(pending, device=tokens.device)
        cols = tokens.index_select(0, rows)
        x = logits.exact(rows, cols).double()  # (n,) fp32 logits of the drawn tokens
        a = logits.values[rows, cols].double()
        e = torch.tensor([envelope[r] for r in pending], dtype=torch.float64, device=x.device)
        accept = torch.exp((x - a - e) / temperature)  # (n,) <= 1
        u = torch.cat([torch.rand(1, generator=generators[r], dtype=torch.float64, device=x.device)
                       for r in pending])
        tries += len(pending)
        rejected = [r for r, ok in zip(pending, (u < accept).tolist()) if not ok]
        if rejected:
            tokens[rejected] = draw(weights[rejected], [generators[r] for r in rejected])
        pending = rejected
    logits.answered(tries)
    return tokens
