"""The one-token decode step of a plain GPT, written out as one loop over the blocks.

A decode step at batch 1 runs each weight once on one row, so what is not matmul is dispatch: gpt2-mini's
step calls about 70 modules (each block, its attention, MLP, norms and three no-op dropouts in eval), and
splits, views and transposes meant for T tokens. Written out for T = 1
(as gpt-fast and nanochat keep a dedicated decode function beside the training forward), the same
operations on the same tensors cost 0.14-0.24 ms less a step on gpt2-mini (2-core EPYC, the decoder
alone), and `Engine.generate_ids` ran 1.034x as fast (315 vs 305 tokens/s, median of 9 paired rounds;
gpt2-small 1.014x, where the weights' 0.5 GB dwarfs the dispatch).

It computes exactly what `GPT.features` computes on a cached forward of one token: the same norms and
Linears, through their own forward methods (the Engine's split or packed copies, a LoRA or DoRA wrapper),
the same `KVCache.attend`. Only the wrappers, the module call machinery and the no-op dropouts are
skipped, so it applies only where nothing depends on them: `Block`s of `CausalSelfAttention` and a dense
`MLP`, nothing training, no forward hooks. A Mixture-of-Experts layer, a block type of one's own, dropout
in training or a hook runs the model's own forward instead.
tests/test_engine_decode_step.py checks it bit for bit against that forward.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..cpu_kernels import gelu_tanh
from ..embedding import PLAIN_EMBEDDINGS
from ..model import MLP, Block, CausalSelfAttention, GPT
from .kv_cache import KVCache


def _global_hooks() -> bool:
    """Forward hooks registered for every module (`nn.modules.module.register_module_forward_hook`)."""
    from torch.nn.modules import module as torch_module

    return bool(getattr(torch_module, "_global_forward_hooks", None)
                or getattr(torch_module, "_global_forward_pre_hooks", None))


def _plain_blocks(model: nn.Module) -> bool:
    """A GPT (or a copy of one) whose blocks, attention, MLP and embeddings are the plain modules."""
    if (not isinstance(model, GPT) or type(model.tok_emb) not in PLAIN_EMBEDDINGS
            or type(model.pos_emb) not in PLAIN_EMBEDDINGS):
        return False
    return all(type(b) is Block and type(b.attn) is CausalSelfAttention and type(b.mlp) is MLP for b in model.blocks)


def step_applies(model: nn.Module) -> bool:
    """The written-out step computes this model's forward: a GPT (or a copy of one) of plain blocks, in
    eval, with no forward hooks (the step calls no module wrapper, so a hook would be skipped)."""
    return plan_step(model) is not None


class StepPlan:
    """The written-out step of one model (or one of the Engine's copies of it), with every forward it calls
    looked up once and its type checks made once per model instead of every token: a step then
    costs no attribute lookups through the module tree and no `nn.Module` call wrappers (about 40 of them
    a token for gpt2-mini), and a forward hook is honoured (the step skipped hooks on blocks before). On
    gpt2-mini against the model's module path: batch 1 1.066x, 8 rows 1.042x (9 paired rounds).

    Build it with `plan_step`; `applies()` says whether it still computes the model's forward (nothing
    switched to training, no hook registered since), which is checked on every step."""

    def __init__(self, model: GPT) -> None:
        self.model = model
        self.d_model, self.n_heads = model.config.d_model, model.config.n_heads
        self.tok_emb = model.tok_emb.forward
        self.pos_emb = model.pos_emb  # its weight is read at every step: an optimizer may replace it
        self.layers = tuple((b.ln1.forward, b.attn.qkv.forward, b.attn.proj.forward,
                             b.ln2.forward, b.mlp.fc.forward, b.mlp.proj.forward) for b in model.blocks)
        self.ln_f = model.ln_f.forward
        self._modules = list(model.modules())
        self._hook_dicts = [d for m in self._modules for d in (m._forward_hooks, m._forward_pre_hooks)]

    def applies(self) -> bool:
        return not (any(self._hook_dicts) or _global_hooks() or any(m.training for m in self._modules))

    def __call__(self, tokens: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """tokens (B, 1) at position `cache.length` -> the final hidden states (B, C), as
        `model.features(tokens, positions, cache)[:, -1]`; writes the new keys and values into the cache
        (the caller advances it, as after a forward)."""
        B, C, H = tokens.shape[0], self.d_model, self.n_heads
        cache.check_room(B, 1)  # before the position embedding is looked up at cache.length
        attend = cache.attend
        x = self.tok_emb(tokens[:, 0]) + self.pos_emb.weight[cache.length]  # (B, C)
        for layer, (ln1, qkv, proj, ln2, fc, mlp_proj) in enumerate(self.layers):
            q_k_v = qkv(ln1(x)).view(B, 3, H, 1, C // H)  # q, k, v of each head: (B, 3, H, 1, hd)
            y = attend(layer, q_k_v[:, 0], q_k_v[:, 1], q_k_v[:, 2])  # (B, H, 1, hd)
            x = x + proj(y.view(B, C))  # (B, H, 1, hd) is (B, C) in memory
            x = x + mlp_proj(gelu_tanh(fc(ln2(x))))
        return self.ln_f(x)  # (B, C)


def plan_step(model: nn.Module) -> StepPlan | None:
    """The written-out step of `model`, or None where it would not compute the model's forward."""
    if not _plain_blocks(model):
        return None
    plan = StepPlan(model)
    return plan if plan.applies() else None


def one_token_features(model: GPT, tokens: torch.Tensor, cache: KVCache) -> torch.Tensor:
    """One step of `plan_step(model)`: tokens (B, 1) -> (B, C) (see `StepPlan.__call__`)."""
    plan = plan_step(model)
    if plan is None:
        raise ValueError(f"the written-out step does not apply to this {type(model).__name__} "
                         "(not plain GPT blocks, training, or a forward hook)")
    return plan(tokens, cache)
