"""LoRA and DoRA: low-rank adapters around a frozen `nn.Linear`.

LoRA — Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models" (2021). The pretrained weight W0
stays frozen; a trainable low-rank update is added beside it:

    y = x W0^T + b + scale * (x A) B,      A: (in, r) Kaiming-uniform,  B: (r, out) zeros

so at initialisation the layer computes exactly what the base layer did. `scale = alpha / r` by default
(the paper's convention, which keeps the update's size roughly independent of the rank). Much tutorial
code (e.g. the LoRA chapter of "Build a Large Language Model (From Scratch)") multiplies by `alpha` alone:
pass `rank_scaled=False` for that; then `alpha` must shrink as the rank grows to keep the same step size.

DoRA — Liu et al., "DoRA: Weight-Decomposed Low-Rank Adaptation" (2024). The weight is split into a
magnitude and a direction, and LoRA only adapts the direction:

    V = W0 + scale * (A B)^T          (out, in)
    W = m * V / ||V||                 m: (out,), ||V||: per-output-feature norm
    y = x W^T + b

`m` starts as ||W0||, so again the layer starts as the base layer.

Both layers adopt the base layer's `weight`/`bias` Parameter objects (not copies): state-dict names of the
base weights do not change (`blocks.0.attn.qkv.weight`), a checkpoint of the base model loads into the
wrapped model, and a head tied to the token embedding stays tied (and frozen).

Merged mode (`merge()` / `unmerge()`) writes the effective weight into `weight` so inference is a single
matmul; the exact base weight is kept aside and copied back on unmerge (subtracting the update again
would not restore W0 bit-for-bit, and DoRA's merge is not a subtraction at all).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
from ..errors import ConfigError
from ..onednn_linear import Linear, linear


class LoRALinear(nn.Module):
    """`base` (frozen) + a rank-`rank` update scaled by `alpha / rank` (or `alpha` if not `rank_scaled`)."""

    def __init__(
        self,
        base: nn.Linear,
        rank: int = 8,
        alpha: float = 16.0,
        dropout: float = 0.0,
        rank_scaled: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise ConfigError(f"{type(self).__name__}: base must be an nn.Linear, got {type(base).__name__}")
        if not isinstance(rank, int) or rank < 1:
            raise ConfigError(f"adapter rank: must be a positive integer, got {rank!r}")
        if alpha <= 0:
            raise ConfigError(f"adapter alpha: must be > 0, got {alpha!r}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"adapter dropout: must be in [0, 1), got {dropout!r}")
        self.in_features, self.out_features = base.in_features, base.out_features
        self.rank, self.alpha, self.rank_scaled = rank, float(alpha), rank_scaled
        self.scale = self.alpha / rank if rank_scaled else self.alpha
        # Adopt (not copy) the base parameters: keeps names, ties and memory.
        self.weight = base.weight
        self.bias = base.bias
        self.weight.requires_grad_(False)
        if self.bias is not None:
            self.bias.requires_grad_(False)
        like = dict(device=base.weight.device, dtype=base.weight.dtype)
        self.A = nn.Parameter(torch.empty(self.in_features, rank, **like))  # (in, r)
        self.B = nn.Parameter(torch.zeros(rank, self.out_features, **like))  # (r, out)
        # nn.Linear's default init (kaiming_uniform_ with a=sqrt(5)) is U(-1/sqrt(fan_in), 1/sqrt(fan_in));
        # fan_in here is `in_features` (A maps the input), which kaiming_uniform_ would misread from A's
        # (in, r) layout, so the bound is written out.
        bound = 1.0 / math.sqrt(self.in_features)
        with torch.no_grad():
            # Draw on CPU so a CPU generator also seeds CUDA layers identically.
            self.A.copy_(torch.empty(self.A.shape).uniform_(-bound, bound, generator=generator))
        self.dropout = nn.Dropout(dropout)
        self.merged = False
        self.disabled = False  # `adapters_disabled(model)` flips this: the layer is then its base layer
        self._base_weight: torch.Tensor | None = None  # exact W0 while merged

    # --- the update -----------------------------------------------------------------------------
    def delta_weight(self) -> torch.Tensor:
        """scale * (A B)^T, in the (out, in) layout of `weight`."""
        return self.scale * (self.A @ self.B).T  # (out, in)

    def base_weight(self) -> torch.Tensor:
        """The frozen pretrained weight W0 (also while merged)."""
        return self._base_weight if self.merged else self.weight

    def merged_weight(self) -> torch.Tensor:
        return self.base_weight() + self.delta_weight()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = linear(x, self.weight, self.bias)  # (..., out): x W^T + b (`onednn_linear`: F.linear's fast route)
        if self.merged or self.disabled:
            return y
        # Two thin matmuls, never forming the (out, in) update: O(r (in + out)) per token.
        return y + self.scale * (self.dropout(x) @ self.A) @ self.B

    # --- merged mode ----------------------------------------------------------------------------
    @torch.no_grad()
    def merge(self) -> None:
        """Write the effective weight into `weight` (forward becomes one plain matmul)."""
        if self.merged:
            return
        effective = self.merged_weight()
        self._base_weight = self.weight.detach().clone()
        self.weight.copy_(effective)
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Restore the exact base weight."""
        if not self.merged or self._base_weight is None:
            return
        self.weight.copy_(self._base_weight)
        self._base_weight = None
        self.merged = False

    def to_linear(self) -> nn.Linear:
        """A plain Linear (the model's `nn.Linear`) computing the adapted layer (a new weight tensor; the
        base is untouched)."""
        layer = Linear(self.in_features, self.out_features, bias=self.bias is not None)
        layer.to(device=self.weight.device, dtype=self.weight.dtype)
        with torch.no_grad():
            layer.weight.copy_(self.weight if self.merged else self.merged_weight())
            if self.bias is not None:
                layer.bias.copy_(self.bias)
        return layer

    def adapter_parameters(self) -> dict[str, nn.Parameter]:
        return {"A": self.A, "B": self.B}

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}, "
            f"alpha={self.alpha:g}, scale={self.scale:g}, merged={self.merged}"
        )


class DoRALinear(LoRALinear):
    """Weight-decomposed LoRA: output `x (m * V / ||V||)^T + b` with `V = W0 + scale * (A B)^T`.

    Norm axis. `||V||` is taken per *output feature*: the L2 norm of each row of the `[out, in]` weight,
    i.e. over the input dimension, giving one magnitude per output unit (this is what PEFT does). The paper
    writes W as (d_in x d_out) and says "column-wise norm", which is the same axis; code that copies
    "column" literally onto PyTorch's `[out, in]` storage normalises per input feature instead. Per-output
    is the right choice here because `m / ||V||` is then a per-output scale that can be applied *after*
    the matmul (cheap), and because it stays meaningful for fused weights like qkv (each output unit is
    scaled on its own). Rows whose norm is zero are given direction 0 (no NaN): the output is the bias.

    Detached norm. With `detach_norm=True` (the default) `||V||` is treated as a constant in the backward
    pass, the memory trick of the paper (Sec. 4.3): the (out, in) matrix V need not be kept for backward
    and gradients to A and B flow only through the low-rank path. The paper reports no accuracy loss and
    PEFT always detaches, so we follow them by default; `detach_norm=False` gives the exact gradient.
    """

    def __init__(
        self,
        base: nn.Linear,
        rank: int = 8,
        alpha: float = 16.0,
        dropout: float = 0.0,
        rank_scaled: bool = True,
        generator: torch.Generator | None = None,
        detach_norm: bool = True,
    ) -> None:
        super().__init__(base, rank, alpha, dropout, rank_scaled, generator)
        self.detach_norm = detach_norm
        with torch.no_grad():
            self.m = nn.Parameter(self.weight.detach().norm(dim=1).clone())  # (out,) = ||W0|| per row

    def direction_norm(self) -> torch.Tensor:
        """||V|| per output feature, (out,)."""
        V = self.base_weight() + self.delta_weight()  # (out, in)
        return torch.linalg.vector_norm(V, dim=1)  # (out,)

    def magnitude_scale(self) -> torch.Tensor:
        """m / ||V|| (out,), zero where the norm is zero."""
        norm = self.direction_norm()
        if self.detach_norm:
            norm = norm.detach()
        safe = torch.where(norm > 0, norm, torch.ones_like(norm))  # avoid 0/0 in value *and* gradient
        return torch.where(norm > 0, self.m / safe, torch.zeros_like(norm))

    def merged_weight(self) -> torch.Tensor:
        V = self.base_weight() + self.delta_weight()  # (out, in)
        return self.magnitude_scale()[:, None] * V

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged or self.disabled:
            return linear(x, self.weight, self.bias)
        # x V^T = x W0^T + scale * x A B, so the (out, in) V is only needed for its norm. Dropout (if any)
        # only touches the adapter path, as in LoRA; the base path sees the clean input.
        xv = linear(x, self.weight) + self.scale * (self.dropout(x) @ self.A) @ self.B  # (..., out)
        y = self.magnitude_scale() * xv
        return y + self.bias if self.bias is not None else y

    def adapter_parameters(self) -> dict[str, nn.Parameter]:
        return {"A": self.A, "B": self.B, "m": self.m}
