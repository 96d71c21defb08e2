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

import math

import torch
import torch.nn.functional as F

from ..cpu_kernels import decode as kernels
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


def temperature_weights(logits: torch.Tensor, temperature: float, out: torch.Tensor | None = None,
                        peak: torch.Tensor | None = None) -> torch.Tensor:
    """exp((logits - max) / temperature), the softmax before its normalisation, (B, V) -> (B, V) fp32,
    written into `out` when given (a decode loop passes the same fp32 buffer every step). `draw`
    normalises by the row total itself, so plain temperature sampling skips the softmax's division. Why
    the buffer: at 8 x 50257 each fresh fp32 tensor is 1.6 MB that the allocator maps and the CPU
    page-faults in again on every step (1,950 faults and 4 ms a step with the softmax path). `peak`: each
    row's maximum (B, 1) where the caller has it already (the screen's envelope reads it too)."""
    x = logits.float()
    if peak is None:
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
        return temperature_sample(logits, temperature, generators, work)
    return draw(next_token_probs(logits, temperature, top_k, top_p), generators)


def uniforms(generators: list[torch.Generator], rows: list[int]) -> list[float]:
    """One U[0, 1) number (fp64) from the generator of each row in `rows`, in order, on its device."""
    return [torch.rand(1, generator=generators[r], dtype=torch.float64, device=generators[r].device).item()
            for r in rows]


def temperature_sample(logits: torch.Tensor, temperature: float, generators: list[torch.Generator],
                       work: torch.Tensor | None = None) -> torch.Tensor:
    """One token per row of softmax(logits / T), (B, V) -> (B,): the decode kernel in one call where it
    takes the logits (`llm_core.cpu_kernels.decode`: fp32 on a CPU with the kernels), else `draw` over
    `temperature_weights`. Both draw one uniform per row, the same way (inverse transform)."""
    if kernels.rows_apply(logits):
        maxima = [hi for hi, _ in kernels.row_max_min(logits)]
        if all(math.isfinite(hi) for hi in maxima):  # (NaN or +inf logits: torch's ops below)
            rows = list(range(logits.shape[0]))
            u = uniforms(generators, rows)
            return torch.tensor(kernels.temperature_draw(logits, rows, maxima, temperature, u))
    return draw(temperature_weights(logits, temperature, work), generators)


_BLOCK = 1024  # tokens per block of the two-level cumulative sum in `draw`


def draw(probs: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
    """One token per row of `probs` (B, V), probabilities or any non-negative weights, by inverse
    transform sampling: row i draws u_i ~ U[0, 1) from generators[i] and takes the first token whose
    cumulative weight exceeds u_i times the row's total (a zero-weight token is never taken).

    One random number per row: torch.multinomial's single-draw path makes V exponential variates per row,
    1.2 ms per row at V = 50257 on the benchmark CPU, more than a gpt2-mini layer costs. The cumulative sum
    is two-level and reads `probs` in place (no padded or fp64 copy of it): totals of blocks of 1024 tokens
    (fp32 sums, relative error about 1e-7), their cumulative sum in fp64 from a leading 0 (so the mass
    before block b is entry b, with no second lookup), then the cumulative sum in fp64 of the one block u
    falls in, gathered as a view of whole blocks unless it is the shorter last one. Each op is a few
    microseconds more inside a decode step than alone (caches cold after the weights stream through), so
    the count matters: fewer of them took the draw from 0.19-0.23 to 0.13-0.16 ms a step at
    batch 1 and from 0.29-0.32 to 0.20-0.22 at 8 rows (gpt2-mini, the same tokens). -> (B,)"""
    B, V = probs.shape
    u = torch.cat([torch.rand(1, generator=generators[i], dtype=torch.float64, device=probs.device)
                   for i in range(B)])  # (B,)
    full = V // _BLOCK
    blocks = probs[:, : full * _BLOCK].view(B, full, _BLOCK)  # (B, full, BLOCK)
    totals = blocks.sum(-1)  # (B, full)
    if V > full * _BLOCK:  # the last, shorter block
        totals = torch.cat((totals, probs[:, full * _BLOCK :].sum(-1, keepdim=True)), 1)  # (B, nb)
    nb = totals.shape[1]
    cdf = F.pad(totals.double(), (1, 0)).cumsum_(-1)  # (B, nb + 1): entry b is the mass before block b
    target = (u * cdf[:, -1])[:, None]  # (B, 1)
    # target >= 0 = cdf[:, 0], so this counts the leading 0 too: j is the block index (the last one when
    # rounding puts the target at the very end)
    j = (torch.searchsorted(cdf, target, right=True) - 1).clamp_(max=nb - 1)  # (B, 1)
    rest = target - cdf.gather(1, j)  # (B, 1): how far into block j
    if int(j.max()) < full:  # every row's block is a whole one
        row = blocks.gather(1, j[:, :, None].expand(B, 1, _BLOCK)).squeeze(1)  # (B, BLOCK)
    else:
        index = j * _BLOCK + torch.arange(_BLOCK, device=probs.device)  # (B, BLOCK): the chosen block's tokens
        row = probs.gather(1, index.clamp(max=V - 1)).masked_fill_(index >= V, 0)
    k = torch.searchsorted(row.double().cumsum_(-1), rest, right=True)  # (B, 1)
    if int(k.max()) >= _BLOCK:  # rounding put the target past the block's own sum: its last positive token
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
    `ScreenedLogits.envelope_of`), exp(x_j / T) <= exp(E / T) exp(a_j / T) for every j, so a drawn j accepted
    with probability exp((x_j - a_j - E) / T) <= 1 is distributed exactly as softmax(x / T). A rejected
    row draws again from q. Row i uses only generators[i] (a proposal uniform, then an acceptance uniform,
    per try), so a row samples the same whatever the batch. The rows' max and min and the proposals come
    from the decode kernels where they take the screen (`llm_core.cpu_kernels.decode`), else from torch's
    ops over the proposal weights. -> (B,)"""
    values = logits.values  # (B, V) fp32
    fused = kernels.rows_apply(values)
    if fused:
        maxima, minima = (list(m) for m in zip(*kernels.row_max_min(values)))
    else:
        top = values.amax(dim=1, keepdim=True)  # (B, 1): read by the envelope and the weights
        maxima, minima = top.view(-1).tolist(), values.amin(dim=1).tolist()
    envelope = logits.envelope_of(maxima, minima)  # (B,) E_i; inf where not finite
    if max(envelope) / temperature > MAX_ENVELOPE_OVER_T:
        return temperature_sample(logits.fallback(), temperature, generators, work)
    if fused:
        def propose(rows: list[int]) -> list[int]:
            return kernels.temperature_draw(values, rows, [maxima[r] for r in rows], temperature,
                                            uniforms(generators, rows))
    else:
        weights = temperature_weights(values, temperature, work, top)  # (B, V) exp((a - max a) / T)

        def propose(rows: list[int]) -> list[int]:
            some = weights if len(rows) == len(generators) else weights[rows]
            return draw(some, [generators[r] for r in rows]).tolist()
    tokens = [0] * len(generators)
    pending, tries = list(range(len(generators))), 0
    while pending:
        drawn = propose(pending)
        rows, cols = torch.tensor(pending, device=values.device), torch.tensor(drawn, device=values.device)
        x = logits.exact(rows, cols).tolist()  # fp32 logits of the drawn tokens
        a = values[rows, cols].tolist()  # their screened values
        rejected = []
        for r, token, x_j, a_j, u in zip(pending, drawn, x, a, uniforms(generators, pending)):
            tokens[r] = token
            if not u < math.exp((x_j - a_j - envelope[r]) / temperature):  # accepted w.p. exp((x - a - E) / T)
                rejected.append(r)
        tries += len(pending)
        pending = rejected
    logits.answered(tries)
    return torch.tensor(tokens, device=values.device)
