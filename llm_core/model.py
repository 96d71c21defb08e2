"""A GPT-2-architecture decoder-only transformer.

Radford et al., "Language Models are Unsupervised Multitask Learners" (2019): learned token and position
embeddings, pre-LayerNorm blocks of causal multi-head self-attention and a GELU MLP, a final LayerNorm and
a linear head, optionally tied to the token embedding. Attention runs through
`llm_core.attention.causal_attention`: `torch.nn.functional.scaled_dot_product_attention`'s fused kernels,
except for training on the CPU under bf16 autocast, which takes a faster blocked kernel of explicit matmuls.

Two hooks keep other components out of this file:
- `cache`: an object with `attend(layer, q, k, v) -> y` (the inference engine's KV cache) that stores the
  new keys/values and attends over everything it holds; without it attention is plain causal SDPA.
- `moe_experts > 0`: the MLP of the chosen layers is a Mixture-of-Experts layer (`llm_core.moe`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import causal_attention
from .cpu_kernels import gelu_tanh
from .embedding import COLUMN_MAJOR_MIN_VOCAB, Embedding, TiedGradient, column_major_parameter
from .errors import ConfigError
from .linear_ce import IGNORE_INDEX, linear_cross_entropy
from .onednn_linear import Linear, is_plain_linear

if TYPE_CHECKING:
    from .tokenizer import Tokenizer


@dataclass
class GPTConfig:
    vocab_size: int = 50257
    context_length: int = 1024
    d_model: int = 768
    n_layers: int = 12
    n_heads: int = 12
    d_ff: int = 0  # hidden width of the MLP; 0 means 4 * d_model as in GPT-2
    dropout: float = 0.0
    qkv_bias: bool = True
    tie_weights: bool = True  # output head shares the token-embedding matrix (GPT-2 does)
    layer_norm_eps: float = 1e-5
    # Mixture-of-Experts feed-forward (0 experts = dense MLP everywhere).
    moe_experts: int = 0
    moe_top_k: int = 2
    moe_every: int = 1  # every n-th layer (counting from the last) is MoE: 1 = all, 2 = every other
    moe_aux_weight: float = 0.01  # Switch-Transformer load-balancing loss weight
    moe_z_weight: float = 0.0  # router z-loss weight (ST-MoE); 0 disables it

    def __post_init__(self) -> None:
        for name in ("vocab_size", "context_length", "d_model", "n_layers", "n_heads"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"GPTConfig.{name}: must be a positive integer, got {value!r}")
        if self.d_model % self.n_heads:
            raise ConfigError(
                f"GPTConfig.d_model: {self.d_model} is not divisible by n_heads={self.n_heads}"
            )
        if self.d_ff < 0:
            raise ConfigError(f"GPTConfig.d_ff: must be >= 0, got {self.d_ff}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"GPTConfig.dropout: must be in [0, 1), got {self.dropout}")
        if self.moe_experts < 0 or self.moe_experts == 1 and self.moe_top_k != 1:
            raise ConfigError(
                f"GPTConfig.moe_experts: {self.moe_experts} experts cannot route top-{self.moe_top_k}"
            )
        if self.moe_experts:
            if self.moe_top_k not in (1, 2) or self.moe_top_k > self.moe_experts:
                raise ConfigError(
                    f"GPTConfig.moe_top_k: must be 1 or 2 and <= moe_experts={self.moe_experts}, got {self.moe_top_k}"
                )
            if self.moe_every < 1:
                raise ConfigError(f"GPTConfig.moe_every: must be >= 1, got {self.moe_every}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def hidden_dim(self) -> int:
        return self.d_ff or 4 * self.d_model

    def is_moe_layer(self, layer: int) -> bool:
        return self.moe_experts > 0 and (self.n_layers - 1 - layer) % self.moe_every == 0

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "GPTConfig":
        """A named shape (see PRESETS) with optional field overrides."""
        if name not in PRESETS:
            raise ConfigError(f"unknown model preset {name!r} (choose from {', '.join(PRESETS)})")
        return cls(**{**PRESETS[name], **overrides})


PRESETS: dict[str, dict[str, Any]] = {
    # CPU-sized model for the embedded default experiment (vocab set from its tokenizer).
    "tiny": dict(vocab_size=1024, context_length=256, d_model=192, n_layers=4, n_heads=4),
    # A distillation student of the default experiment: about a quarter of tiny's parameters (0.49M vs
    # 1.93M at vocabulary 512). Half the layers as well as a narrower width: at this size a decode step's
    # cost is mostly per-layer overhead, so depth is what makes the student faster at inference.
    "tiny-student": dict(vocab_size=1024, context_length=256, d_model=128, n_layers=2, n_heads=4),
    # The benchmark shape used across benchmarks/ (the "gpt2-mini" of the tutorials).
    "gpt2-mini": dict(vocab_size=50257, context_length=256, d_model=384, n_layers=6, n_heads=6),
    "gpt2-small": dict(vocab_size=50257, context_length=1024, d_model=768, n_layers=12, n_heads=12),
    "gpt2-medium": dict(vocab_size=50257, context_length=1024, d_model=1024, n_layers=24, n_heads=16),
    "gpt2-large": dict(vocab_size=50257, context_length=1024, d_model=1280, n_layers=36, n_heads=20),
    "gpt2-xl": dict(vocab_size=50257, context_length=1024, d_model=1600, n_layers=48, n_heads=25),
}


class AttentionCache(Protocol):
    """What the model needs from a KV cache (implemented in llm_core.engine)."""

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor: ...


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig, layer: int) -> None:
        super().__init__()
        self.layer = layer
        self.n_heads = config.n_heads
        self.dropout = config.dropout
        # One fused projection for q, k and v (GPT-2's c_attn): one matmul instead of three.
        self.qkv = Linear(config.d_model, 3 * config.d_model, bias=config.qkv_bias)
        self.proj = Linear(config.d_model, config.d_model)
        self.resid_drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, cache: AttentionCache | None = None) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)  # 3 x (B, T, C)
        # (B, T, C) -> (B, n_heads, T, head_dim)
        q = q.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)
        k = k.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)
        v = v.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)
        if cache is None:
            y = causal_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        else:
            y = cache.attend(self.layer, q, k, v)  # (B, n_heads, T, head_dim)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_drop(self.proj(y))


class MLP(nn.Module):
    """The GPT-2 feed-forward block (also each expert of an MoE layer, `llm_core.moe`)."""

    def __init__(self, d_model: int, d_hidden: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc = Linear(d_model, d_hidden)
        self.proj = Linear(d_hidden, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # GPT-2 uses the tanh approximation of GELU ("gelu_new" in transformers); bf16 on the CPU through
        # `llm_core.cpu_kernels` (3x torch's kernel there)
        return self.drop(self.proj(gelu_tanh(self.fc(x))))


class Block(nn.Module):
    def __init__(self, config: GPTConfig, layer: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.attn = CausalSelfAttention(config, layer)
        self.ln2 = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        if config.is_moe_layer(layer):
            from .moe import MoEFeedForward

            self.mlp: nn.Module = MoEFeedForward(
                d_model=config.d_model,
                d_hidden=config.hidden_dim,
                n_experts=config.moe_experts,
                top_k=config.moe_top_k,
                dropout=config.dropout,
            )
        else:
            self.mlp = MLP(config.d_model, config.hidden_dim, config.dropout)

    def forward(self, x: torch.Tensor, cache: AttentionCache | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), cache)
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.tok_emb = Embedding(config.vocab_size, config.d_model)
        self.pos_emb = Embedding(config.context_length, config.d_model)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.n_layers))
        self.ln_f = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.lm_head = Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_weights:
            if config.vocab_size >= COLUMN_MAJOR_MIN_VOCAB:
                # A large vocabulary's (V, C) matrix stored as its transpose: the head's matmuls run faster
                # (`llm_core.embedding`).
                self.tok_emb.weight = column_major_parameter(config.vocab_size, config.d_model, self.tok_emb.weight)
            self.lm_head.weight = self.tok_emb.weight
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """GPT-2 init: N(0, 0.02), residual projections scaled by 1/sqrt(2 * n_layers), zero biases."""
        residual_std = 0.02 / math.sqrt(2 * self.config.n_layers)
        for name, p in self.named_parameters():
            if p.dim() == 1:
                if name.endswith("weight"):  # LayerNorm gain
                    nn.init.ones_(p)
                else:
                    nn.init.zeros_(p)
                continue
            std = residual_std if name.endswith("proj.weight") else 0.02
            with torch.no_grad():  # drawn in row-major order whatever p's layout: the same seed, the same weights
                p.copy_(torch.empty(p.shape, dtype=p.dtype, device=p.device).normal_(0.0, std, generator=generator))

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        *,
        positions: torch.Tensor | None = None,
        cache: AttentionCache | None = None,
        reduction: str = "mean",
    ) -> torch.Tensor:
        """Token ids (B, T) -> logits (B, T, vocab_size); with `targets` (B, T), the cross-entropy instead.

        `targets` hold the next token of each position (pre-shifted labels) and IGNORE_INDEX (-100) where
        nothing is predicted. The loss is the mean over the counted positions (`reduction="sum"`: the sum;
        `"none"`: (B, T), 0 where ignored), computed by the fused chunked head of `llm_core.linear_ce`
        (the (B, T, V) logits are never held at once) when the head is a plain bias-free Linear, and by
        `F.cross_entropy` over fp32 logits otherwise (an adapter on the head). Calling `forward`, not a
        helper, keeps a DistributedDataParallel wrapper's gradient hooks in the path.

        `positions` (T,) or (B, T) are the position ids (default 0..T-1); a KV cache passes the absolute
        positions of the new tokens (and keeps them inside the context for learned positions).
        """
        if targets is None:
            return self.lm_head(self.features(idx, positions, cache))  # (B, T, vocab_size)
        if targets.shape != idx.shape:
            raise ValueError(f"targets: shape {tuple(targets.shape)} must equal the ids' {tuple(idx.shape)}")
        head = self.lm_head
        if is_plain_linear(head) and head.bias is None:
            # A tied W gets the lookup's and the head's gradient in one buffer (`llm_core.embedding`).
            tied = TiedGradient() if head.weight is self.tok_emb.weight and type(self.tok_emb) is Embedding else None
            h = self.features(idx, positions, cache, tied=tied)  # (B, T, C)
            return linear_cross_entropy(h, head.weight, targets, reduction=reduction, tied=tied)
        h = self.features(idx, positions, cache)  # (B, T, C)
        logits = head(h).float()  # (B, T, V)
        return F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=IGNORE_INDEX, reduction=reduction)

    def features(self, idx: torch.Tensor, positions: torch.Tensor | None = None,
                 cache: AttentionCache | None = None, *, tied: TiedGradient | None = None) -> torch.Tensor:
        """The final hidden states (after ln_f) of token ids (B, T): (B, T, d_model). `forward` puts the LM
        head on them; a reward model puts a scalar head on them (`llm_core.rl.reward_model`). `tied`: the
        caller puts the head tied to the token embedding on these states, passing it the same object
        (`llm_core.embedding.TiedGradient`)."""
        B, T = idx.shape
        if positions is None:
            if T > self.config.context_length:
                raise ValueError(
                    f"sequence of {T} tokens is longer than the context length {self.config.context_length}"
                )
            positions = torch.arange(T, device=idx.device)
        tokens = self.tok_emb(idx, tied=tied) if tied is not None else self.tok_emb(idx)  # (B, T, C)
        x = self.drop(tokens + self.pos_emb(positions))  # (B, T, C)
        for block in self.blocks:
            x = block(x, cache)
        return self.ln_f(x)  # (B, T, C)

    # --- Mixture-of-Experts auxiliary losses -------------------------------------------------------
    def moe_layers(self) -> list[nn.Module]:
        if not self.config.moe_experts:
            return []
        from .moe import MoEFeedForward

        return [m for m in self.modules() if isinstance(m, MoEFeedForward)]

    def auxiliary_loss(self) -> torch.Tensor:
        """Weighted load-balancing (+ z) loss of the last forward pass; 0 for a dense model."""
        total = self.tok_emb.weight.new_zeros(())
        for m in self.moe_layers():
            total = total + self.config.moe_aux_weight * m.aux_loss
            if self.config.moe_z_weight:
                total = total + self.config.moe_z_weight * m.z_loss
        return total

    # --- Sizes ------------------------------------------------------------------------------------
    def num_parameters(self, trainable_only: bool = False) -> int:
        """Unique parameters (a tied head counts once)."""
        seen: set[int] = set()
        total = 0
        for p in self.parameters():
            if id(p) in seen or (trainable_only and not p.requires_grad):
                continue
            seen.add(id(p))
            total += p.numel()
        return total

    def num_active_parameters(self) -> int:
        """Parameters used per token: an MoE layer counts its router and top_k of its experts."""
        total = self.num_parameters()
        for m in self.moe_layers():
            total -= sum(p.numel() for p in m.parameters()) - m.active_parameters()
        return total

    def flops_per_token(self, training: bool = True) -> float:
        """Approximate FLOPs per token (Kaplan et al. 2020; PaLM appendix B).

        Forward = 2 * N_active (matmuls, embeddings excluded) + 2 * n_layers * T * d_model for attention
        scores and weighted values over a full context; training triples it (backward = 2x forward).
        """
        cfg = self.config
        n = self.num_active_parameters() - self.pos_emb.weight.numel()
        if not cfg.tie_weights:
            n -= self.tok_emb.weight.numel()  # the embedding lookup is not a matmul; the head is
        forward = 2 * n + 2 * cfg.n_layers * cfg.context_length * cfg.d_model
        return float(3 * forward if training else forward)

    # --- Hugging Face GPT-2 format ---------------------------------------------------------------
    @classmethod
    def from_hf(cls, folder: str | Path) -> "GPT":
        """Load a GPT-2 checkpoint saved by transformers' `save_pretrained` (config.json + model.safetensors)."""
        from .hf import load_hf

        return load_hf(folder)

    def save_hf(self, folder: str | Path, tokenizer: "Tokenizer | None" = None) -> list[str]:
        """Write config.json + model.safetensors in the Hugging Face GPT-2 format; with `tokenizer` also
        generation_config.json and the tokenizer files. Returns the file names."""
        from .hf import save_hf

        return save_hf(self, folder, tokenizer)
