"""Exact greedy decoding through a bf16 screen of the output head.

A decode step at batch 1 reads every weight once, and the tied 50257-way head is most of them: 77 of gpt2-
mini's 120 MB in fp32, 154 of gpt2-small's 495. Greedy decoding needs only the argmax of the head, not every
logit exact. So the head runs in two passes:

1. the screen: a = bf16(W) @ bf16(h), from a bf16 copy of W packed by oneDNN (half the bytes of the fp32
   head; fp32 accumulation in the kernel, the result rounded to bf16);
2. the check: a rigorous bound e_j >= |W_j . h - a_j| for every token j (below), and the fp32 dot products
   W_j . h recomputed for the candidates only: the tokens whose upper bound a_j + e_j reaches the best lower
   bound max_i(a_i - e_i). No other token can be the argmax, since its true logit is below that of the
   token with the best lower bound.

The logits returned hold the fp32 value at every candidate and the screen's value elsewhere, provably below
the largest candidate: their argmax is the fp32 head's (up to fp32 rounding, as between any two fp32
kernels), and nothing else is guaranteed, so only greedy steps ask for it (`Decoder(..., argmax_only=True)`).
Sampling, beams and log-probabilities run the fp32 head.

The bound (Higham, "Accuracy and Stability of Numerical Algorithms", 2nd ed., 2002, ch. 3), for a row
W_j = Wb_j + E_j (Wb = bf16(W), E the rounding residue) and h = hb + d (hb = bf16(h)):

    W_j . h - fl(Wb_j . hb) = E_j . h + Wb_j . d + (Wb_j . hb - fl(Wb_j . hb))
    |...| <= ||E_j|| ||h|| + ||Wb_j|| ||d|| + gamma_K ||Wb_j|| ||hb||       (Cauchy-Schwarz; gamma_K ~ K u32)

with the products of two bf16 values exact in fp32 (8 + 8 significant bits) and the K-term sum in fp32 off
by at most gamma_K = K u32 / (1 - K u32) of the sum of |terms|, in any order. The row norms enter through
their maxima R = max ||E_j|| and S = max ||Wb_j||, one constant c per step; rounding the result to bf16 adds
at most 2^-6 |a_j| (2^-7 for round-to-nearest, doubled for a kernel that truncates). Since a + 2^-6 |a| rises
with a, the candidates are the tokens whose screened logit clears one threshold. When more than
`MAX_CANDIDATE_FRACTION` of the vocabulary clears it (near-uniform logits), or h is not finite, the step
runs the fp32 head instead (`ScreenedHead.fallbacks` counts them).

gpt2-mini, batch 1, 32 + 128 greedy tokens (2-core EPYC, AVX512-BF16): 1.2-1.3 candidates a step on
average, 8 at most, for random weights; 1.8 for a gpt2-mini trained briefly (`benchmarks/screened_head.py`);
tokens/s in `benchmarks/decode_speed.py` and the README.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from ..device import has_onednn_linear, supports_bf16
from ..onednn_linear import is_plain_linear, onednn_matmul

U32 = 2.0 ** -24  # fp32 unit roundoff
BF16_OUT = 2.0 ** -6  # bound on the relative rounding of the kernel's bf16 result (module docstring)
TINY = 1e-30  # absolute slack for denormals flushed to zero by bf16 dot-product instructions (K x 2^-126)
MAX_CANDIDATE_FRACTION = 1 / 64  # more candidates than this share of the vocabulary: run the fp32 head
# The screen pays where the fp32 head streams from memory: a head that stays in the CPU's caches between
# steps reads no faster at half the bytes, and the screen's ~0.1 ms of small ops a step is then a loss (2-
# core EPYC, 32 MB L3: the default experiment's 512 x 192 head and an 8192 x 192 one 0.74-0.82x, gpt2-mini's
# 77 MB head 1.13-1.20x). From 8M elements: 32 MB in fp32.
SCREEN_MIN_ELEMENTS = 1 << 23
PACK_ROWS = 16  # oneDNN's batch-size hint for the packed bf16 copy (as `fast.PACK_ROWS`)


def screen_applies(head: nn.Module, h: torch.Tensor) -> bool:
    """The screen can run and pays: a plain bias-free fp32 head of at least SCREEN_MIN_ELEMENTS on a CPU
    that computes bf16 in hardware and has oneDNN's packed linear, outside autocast (under autocast the
    head is bf16 already)."""
    if not is_plain_linear(head) or head.bias is not None:
        return False
    w = head.weight
    return (w.numel() >= SCREEN_MIN_ELEMENTS and w.dtype == torch.float32 and h.dtype == torch.float32
            and w.device.type == "cpu" and not torch.is_autocast_enabled("cpu") and has_onednn_linear()
            and supports_bf16(w.device))


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
        self.candidates = 0  # fp32 dot products recomputed, over all steps

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
            self._packed = torch.ops.mkldnn._reorder_linear_weight(wb.contiguous(), PACK_ROWS)
        self._key = key

    def __call__(self, head: nn.Module, h: torch.Tensor) -> torch.Tensor | None:
        """h (B, C) fp32 -> logits (B, V) fp32 whose row-wise argmax is the fp32 head's, or None where the
        screen does not apply or declines this step (the caller runs the fp32 head)."""
        if not screen_applies(head, h):
            return None
        weight = head.weight  # (V, C)
        self._build(weight)
        B, K = h.shape
        gamma = K * U32 / (1 - K * U32)
        hb = h.to(torch.bfloat16)  # (B, C)
        screened = onednn_matmul(hb, self._packed).float()  # (B, V): the kernel's bf16 values, held in fp32
        hbf = hb.float()
        norms = torch.linalg.vector_norm(torch.stack((h, h - hbf, hbf)), dim=-1).tolist()  # ||h||, ||d||, ||hb||
        thresholds = []
        for norm_h, norm_d, norm_hb, top in zip(*norms, screened.amax(dim=1).tolist()):  # per row, in fp64
            # c = R ||h|| + S (||d|| + 2 gamma ||hb||), raised by 4 gamma + 1e-5 of itself for the fp32
            # norms (each off by at most gamma_K)
            c = (self._r * norm_h + self._s * (norm_d + 2 * gamma * norm_hb)) * (1 + 4 * gamma + 1e-5) + TINY
            if not math.isfinite(c + top):
                self.fallbacks += 1
                return None
            # The best lower bound is L = top - c - u |top| (u = BF16_OUT); a token is a candidate when
            # g(a) = a + u |a| reaches y = L - c. g rises with a, and g^-1(y) = y - u |y| / (1 - u) whatever
            # the sign of y; 1e-6 |y| more for rounding the threshold to fp32.
            y = top - 2 * c - BF16_OUT * abs(top)
            thresholds.append(y - (BF16_OUT / (1 - BF16_OUT) + 1e-6) * abs(y) - TINY)
        threshold = torch.tensor(thresholds, dtype=screened.dtype)  # (B,)
        rows, cols = (screened >= threshold[:, None]).nonzero(as_tuple=True)  # (n,), (n,)
        if cols.numel() > max(B, math.ceil(B * weight.shape[0] * MAX_CANDIDATE_FRACTION)):
            self.fallbacks += 1
            return None
        # The candidates' fp32 logits, each one dot product over C: (n, C) * (n, C) summed -> (n,)
        exact = (weight.detach().index_select(0, cols) * h.index_select(0, rows)).sum(dim=1)
        screened.index_put_((rows, cols), exact)
        self.steps += 1
        self.candidates += cols.numel()
        return screened

    def nbytes(self) -> int:
        """Bytes of the packed bf16 copy."""
        return 0 if self._packed is None else self._packed.numel() * self._packed.element_size()
