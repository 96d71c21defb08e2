"""Exact greedy decoding and sampling through a bf16 screen of the output head.

A decode step at batch 1 reads every weight once, and the tied 50257-way head is most of them: 77 of gpt2-
mini's 120 MB in fp32, 154 of gpt2-small's 495. Greedy decoding needs only the argmax of the head, and
temperature sampling only one token drawn from its softmax; neither needs every logit in fp32. So the head
runs in two passes:

1. the screen: a = bf16(W) @ bf16(h), from a bf16 copy of W packed by oneDNN (half the bytes of the fp32
   head; fp32 accumulation in the kernel, the result rounded to bf16);
2. a rigorous bound e_j >= |W_j . h - a_j| for every token j (below), and fp32 dot products W_j . h for the
   few tokens the decoding rule needs:
   - greedy (`ScreenedLogits.argmax`): the candidates, whose upper bound a_j + e_j reaches the best lower
     bound max_i(a_i - e_i). No other token can be the argmax, since its true logit is below that of the
     token with the best lower bound. The result is the fp32 head's argmax (up to fp32 rounding, as
     between any two fp32 kernels).
   - temperature sampling (`sampling.draw_screened`): a token drawn from softmax(a / T), accepted with
     probability exp((x_j - a_j - E) / T) for E >= max_j e_j, else drawn again: rejection sampling, whose
     result is distributed exactly as softmax(x / T) of the fp32 logits x.

Other rules (top-k, top-p, beams, log-probabilities) run the fp32 head (`ScreenedLogits.fallback`), so the
Engine screens only the steps these two rules read (`Engine._screens`).

The bound (Higham, "Accuracy and Stability of Numerical Algorithms", 2nd ed., 2002, ch. 3), for a row
W_j = Wb_j + F_j (Wb = bf16(W), F the rounding residue) and h = hb + d (hb = bf16(h)):

    W_j . h - fl(Wb_j . hb) = F_j . h + Wb_j . d + (Wb_j . hb - fl(Wb_j . hb))
    |...| <= ||F_j|| ||h|| + ||Wb_j|| ||d|| + gamma_K ||Wb_j|| ||hb||       (Cauchy-Schwarz; gamma_K ~ K u32)

with the products of two bf16 values exact in fp32 (8 + 8 significant bits) and the K-term sum in fp32 off
by at most gamma_K = K u32 / (1 - K u32) of the sum of |terms|, in any order. The row norms enter through
their maxima R = max ||F_j|| and S = max ||Wb_j||, one constant c per step; rounding the result to bf16 adds
at most 2^-6 |a_j| (2^-7 for round-to-nearest, doubled for a kernel that truncates). Since a + 2^-6 |a| rises
with a, the candidates are the tokens whose screened logit clears one threshold. When more than
`MAX_CANDIDATE_FRACTION` of the vocabulary clears it (near-uniform logits), when E / T is so wide that a
draw might be rejected more often than not (`sampling.MAX_ENVELOPE_OVER_T`), or when h is not finite, the
step runs the fp32 head instead (`ScreenedHead.fallbacks` counts them).

gpt2-mini, batch 1, 32 + 128 greedy tokens (2-core EPYC, AVX512-BF16): 1.2-1.3 candidates a step on
average, 8 at most, for random weights; 1.8 for a gpt2-mini trained briefly (`benchmarks/screened_head.py`);
tokens/s in `benchmarks/decode_speed.py` and the README.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn

from ..device import supports_bf16
from ..onednn_linear import is_plain_linear, onednn_matmul, onednn_packing, pack_weight

U32 = 2.0 ** -24  # fp32 unit roundoff
BF16_OUT = 2.0 ** -6  # bound on the relative rounding of the kernel's bf16 result (module docstring)
TINY = 1e-30  # absolute slack for denormals flushed to zero by bf16 dot-product instructions (K x 2^-126)
MAX_CANDIDATE_FRACTION = 1 / 64  # more candidates than this share of the vocabulary: run the fp32 head
# The screen pays where the fp32 head streams from memory: a head that stays in the CPU's caches between
# steps reads no faster at half the bytes, and the screen's ~0.1 ms of small ops a step is then a loss (2-
# core EPYC, 32 MB L3: the default experiment's 512 x 192 head and an 8192 x 192 one 0.74-0.82x, gpt2-mini's
# 77 MB head 1.13-1.20x). From 8M elements: 32 MB in fp32.
SCREEN_MIN_ELEMENTS = 1 << 23


def screen_applies(head: nn.Module, h: torch.Tensor) -> bool:
    """The screen can run and pays: a plain bias-free fp32 head of at least SCREEN_MIN_ELEMENTS on a CPU
    that computes bf16 in hardware and has oneDNN's packed linear, outside autocast (under autocast the
    head is bf16 already)."""
    if not is_plain_linear(head) or head.bias is not None:
        return False
    w = head.weight
    return (w.numel() >= SCREEN_MIN_ELEMENTS and w.dtype == torch.float32 and h.dtype == torch.float32
            and onednn_packing(w) and not torch.is_autocast_enabled("cpu") and supports_bf16(w.device))


class ScreenedHead:
    """The bf16 screen of one head weight and its bound constants, rebuilt when the weight changes (its
    storage or torch's in-place version counter), so an Engine built once stays exact while a trainer
    updates the model."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._packed: torch.Tensor | None = None  # bf16 W packed by oneDNN
        self._r = self._s = 0.0  # max_j ||W_j - bf16(W_j)||, max_j ||bf16(W_j)||, rounded up
        self.steps = 0  # steps the screen answered
        self.fallbacks = 0  # steps it handed to the fp32 head
        self.rows = 0  # rows of those steps
        self.candidates = 0  # fp32 dot products recomputed (greedy candidates, sampled tokens), all steps

    def _build(self, weight: torch.Tensor) -> None:
        key = (weight.data_ptr(), weight._version, weight.dtype, weight.device)
        if key == self._key:
            return
        self._packed, self._key = None, None  # free the old copy before building the new one
        with torch.no_grad():
            w = weight.detach()
            wb = w.to(torch.bfloat16)
            r = s = 0.0
            for start in range(0, w.shape[0], 4096):  # 4096 rows at a time: no second full-size copy of W
                rows = slice(start, start + 4096)
                wbf = wb[rows].float()
                r = max(r, float(torch.linalg.vector_norm(w[rows] - wbf, dim=1).max()))
                s = max(s, float(torch.linalg.vector_norm(wbf, dim=1).max()))
            K = w.shape[1]
            gamma = K * U32 / (1 - K * U32)
            self._r, self._s = r * (1 + 4 * gamma), s * (1 + 4 * gamma)  # fp32 norms: each off by <= gamma_K
            self._packed = pack_weight(wb.contiguous())
        self._key = key

    def __call__(self, head: nn.Module, h: torch.Tensor,
                 full: Callable[[], torch.Tensor]) -> "ScreenedLogits | None":
        """h (B, C) fp32 -> the screened logits of one step, or None where the screen does not apply (the
        caller runs the fp32 head). `full()` computes the fp32 logits (B, V), for a step the screen
        declines later (`ScreenedLogits.fallback`)."""
        if not screen_applies(head, h):
            return None
        weight = head.weight  # (V, C)
        self._build(weight)
        K = h.shape[1]
        gamma = K * U32 / (1 - K * U32)
        hb = h.to(torch.bfloat16)  # (B, C)
        values = onednn_matmul(hb, self._packed).float()  # (B, V): the kernel's bf16 values, held in fp32
        hbf = hb.float()
        norms = torch.linalg.vector_norm(torch.stack((h, h - hbf, hbf)), dim=-1).tolist()  # ||h||, ||d||, ||hb||
        # c = R ||h|| + S (||d|| + 2 gamma ||hb||) per row (fp64), raised by 4 gamma + 1e-5 of itself for the
        # fp32 norms (each off by at most gamma_K)
        c = [(self._r * nh + self._s * (nd + 2 * gamma * nb)) * (1 + 4 * gamma + 1e-5) + TINY
             for nh, nd, nb in zip(*norms)]
        return ScreenedLogits(values, c, h, weight.detach(), full, self)

    def nbytes(self) -> int:
        """Bytes of the packed bf16 copy."""
        return 0 if self._packed is None else self._packed.numel() * self._packed.element_size()


@dataclass
class ScreenedLogits:
    """One step's head output as the screen leaves it: `values` (B, V), the bf16 screen a, with
    |W_j . h_i - a_ij| <= c_i + BF16_OUT |a_ij| (module docstring). What a decoding rule reads from it is
    exact: `argmax()` the fp32 head's argmax; `sampling.draw_screened` samples the fp32 head's
    temperature distribution by rejection. Either falls back to `full()` where the screen cannot answer."""

    values: torch.Tensor  # (B, V) fp32
    c: list[float]  # (B,) the bound's constant part, per row
    h: torch.Tensor  # (B, C) the features, fp32
    weight: torch.Tensor  # (V, C) the fp32 head
    full: Callable[[], torch.Tensor]  # -> the fp32 logits (B, V)
    stats: ScreenedHead  # counts steps, candidates, fallbacks

    @property
    def shape(self) -> torch.Size:
        return self.values.shape

    @property
    def device(self) -> torch.device:
        return self.values.device

    def expand(self, rows: int, _: int = -1) -> "ScreenedLogits":
        """A one-row step as `rows` identical rows (N samples of one prefill), like `Tensor.expand`."""
        full = self.full
        return ScreenedLogits(self.values.expand(rows, -1), self.c * rows, self.h.expand(rows, -1), self.weight,
                              lambda: full().expand(rows, -1), self.stats)

    def exact(self, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """The fp32 logits at (rows[k], cols[k]): one dot product over C each, (n,)."""
        return (self.weight.index_select(0, cols) * self.h.index_select(0, rows)).sum(dim=1)

    def envelope_of(self, maxima: list[float], minima: list[float]) -> list[float]:
        """E_i >= max_j |W_j . h_i - a_ij| per row: c_i + BF16_OUT max_j |a_ij| (inf where not finite), from
        each row's max and min of `values`, found by the caller (which reads the maxima for its proposal
        weights too). The max and min rather than an |a| temporary: torch.aminmax over dim 1 took 455 us at
        8 x 50257 against 27 for amax."""
        widest = (max(hi, -lo) for hi, lo in zip(maxima, minima))  # max_j |a_ij|
        return [e if math.isfinite(e) else math.inf for e in (c + BF16_OUT * t for c, t in zip(self.c, widest))]

    def fallback(self) -> torch.Tensor:
        """The fp32 logits (B, V), counted as a step the screen declined."""
        self.stats.fallbacks += 1
        return self.full()

    def answered(self, candidates: int) -> None:
        """Count a step the screen answered with `candidates` fp32 logits."""
        self.stats.steps += 1
        self.stats.rows += self.values.shape[0]
        self.stats.candidates += candidates

    def argmax(self) -> torch.Tensor:
        """Each row's argmax of the fp32 logits, (B,): the tokens whose interval reaches the best lower
        bound, recomputed in fp32 (module docstring); the fp32 head where too many do or h is not finite."""
        values = self.values
        B, V = values.shape
        thresholds = []
        for c, top in zip(self.c, values.amax(dim=1).tolist()):  # per row, in fp64
            if not math.isfinite(c + top):
                return self.fallback().argmax(dim=-1)
            # The best lower bound is L = top - c - u |top| (u = BF16_OUT); a token is a candidate when
            # g(a) = a + u |a| reaches y = L - c. g rises with a, and g^-1(y) = y - u |y| / (1 - u) whatever
            # the sign of y; 1e-6 |y| more for rounding the threshold to fp32.
            y = top - 2 * c - BF16_OUT * abs(top)
            thresholds.append(y - (BF16_OUT / (1 - BF16_OUT) + 1e-6) * abs(y) - TINY)
        threshold = torch.tensor(thresholds, dtype=values.dtype)  # (B,)
        rows, cols = (values >= threshold[:, None]).nonzero(as_tuple=True)  # (n,), (n,)
        if cols.numel() > max(B, math.ceil(B * V * MAX_CANDIDATE_FRACTION)):
            return self.fallback().argmax(dim=-1)
        self.answered(cols.numel())
        exact = self.exact(rows, cols)  # (n,)
        if B == 1:  # candidates come in token order, so the first of equal maxima wins, as in argmax
            return cols[exact.argmax()].view(1)
        counts = torch.bincount(rows, minlength=B).tolist()  # every row has one: its top clears its threshold
        return torch.stack([c[e.argmax()] for c, e in zip(cols.split(counts), exact.split(counts))])
