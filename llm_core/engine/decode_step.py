"""The one-token decode step of a plain GPT, written out as one loop over the blocks.

A decode step at batch 1 runs each weight once on one row, so what is not matmul is dispatch: gpt2-mini's
step calls about 70 modules (each block, its attention, MLP, norms and three no-op dropouts in eval), and
splits, views and transposes meant for T tokens. Written out for T = 1
(as gpt-fast and nanochat keep a dedicated decode function beside the training forward), the same
operations on the same tensors cost 0.14-0.24 ms less a step on gpt2-mini (2-core EPYC, the decoder
alone), and `Engine.generate_ids` ran 1.034x as fast (315 vs 305 tokens/s, median of 9 paired rounds;
gpt2-small 1.014x, where the weights' 0.5 GB dwarfs the dispatch).

It computes exactly what `GPT.features` computes on a cached forward of one token: the same norms and
Linears, called as the modules they are (the Engine's split or packed copies, a LoRA or DoRA wrapper), the
same `KVCache.attend`. Only the wrappers and the no-op dropouts are skipped, so it applies
only where they are plain: `Block`s of `CausalSelfAttention` and a dense `MLP`, nothing training. A Mixture-
of-Experts layer, a block type of one's own, or dropout in training runs the model's own forward instead.
tests/test_engine_decode_step.py checks it bit for bit against that forward.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..model import MLP, Block, CausalSelfAttention, GPT
from .kv_cache import KVCache


def step_applies(model: nn.Module) -> bool:
    """The written-out step computes this model's forward: a GPT (or a copy of one) of plain blocks, in eval."""
    if not isinstance(model, GPT) or model.training or model.drop.training:
        return False
    if type(model.tok_emb) is not nn.Embedding or type(model.pos_emb) is not nn.Embedding:
        return False
    return all(type(b) is Block and type(b.attn) is CausalSelfAttention and type(b.mlp) is MLP
               and not (b.training or b.attn.training or b.mlp.training) for b in model.blocks)


def one_token_features(model: GPT, tokens: torch.Tensor, cache: KVCache) -> torch.Tensor:
    """tokens (B, 1) at position `cache.length` -> the final hidden states (B, C), as
    `model.features(tokens, positions, cache)[:, -1]`; writes the new keys and values into the cache (the
    caller advances it, as after a forward)."""
    B = tokens.shape[0]
    cache.check_room(B, 1)  # before the position embedding is looked up at cache.length
    C = model.config.d_model
    H = model.config.n_heads
    x = model.tok_emb(tokens[:, 0]) + model.pos_emb.weight[cache.length]  # (B, C)
    for layer, block in enumerate(model.blocks):
        attn, mlp = block.attn, block.mlp
        qkv = attn.qkv(block.ln1(x)).view(B, 3, H, 1, C // H)  # q, k, v of each head: (B, 3, H, 1, hd)
        y = cache.attend(layer, qkv[:, 0], qkv[:, 1], qkv[:, 2])  # (B, H, 1, hd)
        x = x + attn.proj(y.view(B, C))  # (B, H, 1, hd) is (B, C) in memory
        x = x + mlp.proj(F.gelu(mlp.fc(block.ln2(x)), approximate="tanh"))
    return model.ln_f(x)  # (B, C)
