"""Sparse Mixture-of-Experts feed-forward layer with top-k routing, and dense-to-MoE "upcycling".

Shazeer et al., "Outrageously Large Neural Networks: The Sparsely-Gated Mixture-of-Experts Layer" (2017);
Fedus et al., "Switch Transformers" (2021) for the load-balancing loss; Zoph et al., "ST-MoE" (2022) for
the router z-loss; Komatsuzaki et al., "Sparse Upcycling" (2022) for starting the experts from a dense MLP.

A router (a bias-free Linear) scores every token against E experts. Each token goes to its top-k experts
(k = 1 or 2) and its output is the mix of those experts' outputs, weighted by a softmax over the *selected*
logits only (so the k weights sum to 1, as in Mixtral). Each expert is a GPT-2 MLP (fc -> GELU(tanh) ->
proj), so a dense checkpoint's MLP weights can be copied into every expert.

Dispatch: the (token, expert) assignments are sorted by expert, each expert runs once on the contiguous
block of tokens routed to it, and the weighted results are scattered back with `index_add`. Compute per
token is therefore k expert MLPs, not E: that is the whole point of a sparse model (compare
`benchmarks/moe.py`, which also times the naive "run every expert on every token and mask" approach).
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import ConfigError
from .model import GPT, MLP


# One expert is the GPT-2 MLP itself (same module, same parameter names: dense weights copy over).
Expert = MLP


class MoEFeedForward(nn.Module):
    """E expert MLPs behind a top-k router.

    After every forward pass the layer holds, for the training loop and the UI:
    - `aux_loss`: Switch-Transformer load-balancing loss `E * sum_i f_i * P_i`, where `f_i` is the share of
      the N*k (token, expert) assignments that went to expert i and `P_i` the mean router probability (full
      softmax over all E logits) of expert i. Only `P` carries gradient (f comes from an argmax). With
      perfectly balanced routing it equals 1 for any k (we normalise f by N*k, so it sums to 1; some
      implementations normalise by N and get k instead).
    - `z_loss`: router z-loss `mean(logsumexp(logits)^2)`, keeping router logits small (ST-MoE).
    - `expert_fraction`: (E,) detached `f`, the fraction of routed tokens each expert received.
    """

    def __init__(self, d_model: int, d_hidden: int, n_experts: int, top_k: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        if n_experts < 1:
            raise ConfigError(f"MoEFeedForward.n_experts: must be >= 1, got {n_experts}")
        if not 1 <= top_k <= min(2, n_experts):
            raise ConfigError(f"MoEFeedForward.top_k: must be 1 or 2 and <= n_experts={n_experts}, got {top_k}")
        self.n_experts = n_experts
        self.top_k = top_k
        self.router = nn.Linear(d_model, n_experts, bias=False)
        self.experts = nn.ModuleList(Expert(d_model, d_hidden) for _ in range(n_experts))
        self.drop = nn.Dropout(dropout)
        zero = torch.zeros(())
        self.aux_loss: torch.Tensor = zero
        self.z_loss: torch.Tensor = zero
        self.expert_fraction: torch.Tensor = torch.zeros(n_experts)

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Tokens (N, C) -> router logits (N, E) in float32, chosen experts (N, k), mixing weights (N, k)."""
        # Routing decisions are sensitive to rounding: keep the router's softmax in float32 under autocast.
        logits = self.router(x).float()  # (N, E)
        top_logits, top_idx = logits.topk(self.top_k, dim=-1)  # (N, k) each
        weights = F.softmax(top_logits, dim=-1)  # (N, k), sums to 1 over the selected experts
        return logits, top_idx, weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, shape[-1])  # (N, C)
        n_tokens, k = flat.shape[0], self.top_k
        logits, top_idx, weights = self.route(flat)

        # Sort the N*k assignments by expert so each expert's tokens form one contiguous block.
        assigned_expert = top_idx.reshape(-1)  # (N*k,)
        order = torch.argsort(assigned_expert, stable=True)  # (N*k,)
        token_index = order // k  # (N*k,) which token each sorted assignment belongs to
        sorted_weights = weights.reshape(-1)[order].to(x.dtype)  # (N*k,)
        counts = torch.bincount(assigned_expert, minlength=self.n_experts)  # (E,)

        expert_inputs = flat[token_index]  # (N*k, C) gathered, grouped by expert
        outputs = []
        start = 0
        for expert, count in zip(self.experts, counts.tolist()):
            if count == 0:
                continue  # an expert nobody chose costs nothing
            block = slice(start, start + count)
            outputs.append(expert(expert_inputs[block]) * sorted_weights[block, None])  # (count, C)
            start += count
        mixed = torch.cat(outputs) if outputs else expert_inputs[:0]
        # Scatter back: a token routed to two experts receives both weighted outputs.
        out = flat.new_zeros(flat.shape).index_add(0, token_index, mixed)  # (N, C)

        # Auxiliary losses and load statistics from this batch.
        fraction = counts.float() / (n_tokens * k)  # (E,) f_i, sums to 1
        mean_prob = F.softmax(logits, dim=-1).mean(dim=0)  # (E,) P_i
        self.aux_loss = self.n_experts * (fraction * mean_prob).sum()
        self.z_loss = torch.logsumexp(logits, dim=-1).pow(2).mean()
        self.expert_fraction = fraction.detach()
        return self.drop(out.reshape(shape))

    def active_parameters(self) -> int:
        """Parameters a single token uses: the router and top_k experts."""
        router = sum(p.numel() for p in self.router.parameters())
        one_expert = sum(p.numel() for p in self.experts[0].parameters())
        return router + self.top_k * one_expert


def upcycle_to_moe(
    model: "GPT", n_experts: int, top_k: int = 2, generator: torch.Generator | None = None
) -> "GPT":
    """A new MoE GPT whose experts all start as copies of `model`'s dense MLPs (Sparse Upcycling).

    Attention, embeddings and norms are copied; each MoE layer's experts get the dense `fc`/`proj`
    weights; only the router is new, drawn from N(0, 0.02) with `generator`. Because every expert is the
    same function and the top-k mixing weights sum to 1, the upcycled model computes exactly what the dense
    model did until training makes the experts diverge. Which layers become MoE follows `moe_every`.
    """
    from .model import GPT

    cfg = model.config
    if cfg.moe_experts:
        raise ConfigError(f"upcycle_to_moe: the model is already MoE ({cfg.moe_experts} experts)")
    if getattr(model, "adapter_config", None) is not None:
        raise ConfigError("upcycle_to_moe: the model has adapters; merge_adapters(model) first")
    new_cfg = dataclasses.replace(cfg, moe_experts=n_experts, moe_top_k=top_k)  # validates n_experts/top_k
    reference = next(model.parameters())
    moe_model = GPT(new_cfg).to(device=reference.device, dtype=reference.dtype)

    dense_state = model.state_dict()
    new_state = moe_model.state_dict()
    for name in list(new_state):
        parts = name.split(".")
        if ".mlp.experts." in name:  # blocks.{i}.mlp.experts.{e}.{fc|proj}.{weight|bias}
            source = ".".join(parts[:3] + parts[5:])  # drop "experts.{e}"
            new_state[name] = dense_state[source].clone()
        elif ".mlp.router." in name:
            router = torch.empty(new_state[name].shape, device="cpu", dtype=torch.float32)
            router.normal_(0.0, 0.02, generator=generator)
            new_state[name] = router.to(new_state[name])
        else:
            new_state[name] = dense_state[name].clone()
    moe_model.load_state_dict(new_state)
    return moe_model
