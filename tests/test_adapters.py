"""LoRA adapters: the formula, injection by target, merge/unmerge, tied head, MoE, finetuning (saving and
loading them: test_adapters_peft.py)."""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from llm_core.adapters import (
    DoRALinear,
    LoRALinear,
    adapter_summary,
    adapters_disabled,
    add_adapters,
    merge_adapters,
    resolve_targets,
    set_merged,
)
from llm_core.errors import ConfigError
from llm_core.model import GPT, GPTConfig
from llm_core.onednn_linear import is_plain_linear


def _gpt(seed: int = 0, **overrides) -> GPT:
    cfg = GPTConfig(vocab_size=40, context_length=16, d_model=32, n_layers=2, n_heads=4, **overrides)
    model = GPT(cfg)
    model.reset_parameters(torch.Generator().manual_seed(seed))
    return model.eval()


def _tokens(seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 40, (2, 12), generator=torch.Generator().manual_seed(seed))


def _randomise_adapters(model: nn.Module, seed: int = 5) -> None:
    """B starts at zero (a no-op adapter); give every adapter tensor a value so tests see the update."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith((".A", ".B")):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)


def test_lora_layer_formula_and_scaling() -> None:
    base = nn.Linear(6, 5)
    with torch.no_grad():
        base.weight.copy_(torch.randn(5, 6, generator=torch.Generator().manual_seed(0)))
    x = torch.randn(3, 6, generator=torch.Generator().manual_seed(1))
    for rank_scaled, scale in ((True, 8.0 / 4), (False, 8.0)):
        layer = LoRALinear(copy.deepcopy(base), rank=4, alpha=8, rank_scaled=rank_scaled,
                           generator=torch.Generator().manual_seed(2))
        assert layer.A.shape == (6, 4) and layer.B.shape == (4, 5)
        assert torch.count_nonzero(layer.B) == 0
        # Kaiming-uniform (a=sqrt(5)) bound 1/sqrt(fan_in) with fan_in = in_features.
        assert layer.A.abs().max() <= 1 / math.sqrt(6) and layer.A.std() > 0.1
        torch.testing.assert_close(layer(x), base(x))  # B = 0: the base layer
        with torch.no_grad():
            layer.B.copy_(torch.randn(4, 5, generator=torch.Generator().manual_seed(3)))
        expected = x @ base.weight.T + base.bias + scale * (x @ layer.A @ layer.B)
        torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ConfigError, match="rank"):
        LoRALinear(base, rank=0)


def test_lora_model_init_equals_base_and_freezes_the_rest() -> None:
    model = _gpt()
    idx = _tokens()
    before = model(idx)
    add_adapters(model, kind="lora", rank=4, alpha=8, targets="attn,mlp,head",
                 generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(model(idx), before, atol=1e-5, rtol=1e-5)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.endswith((".A", ".B")) for n in trainable)
    assert model.adapter_config.kind == "lora" and model.adapter_config.rank == 4
    # The tied head keeps sharing (and freezing) the embedding.
    assert model.lm_head.weight is model.tok_emb.weight and not model.tok_emb.weight.requires_grad


def test_targets_groups_globs_and_errors() -> None:
    model = _gpt()
    assert resolve_targets(model, "attn") == [
        "blocks.0.attn.qkv", "blocks.0.attn.proj", "blocks.1.attn.qkv", "blocks.1.attn.proj"]
    assert resolve_targets(model, "head") == ["lm_head"]
    assert resolve_targets(model, "blocks.1.mlp.*") == ["blocks.1.mlp.fc", "blocks.1.mlp.proj"]
    with pytest.raises(ConfigError, match="'nothing.here' matches no Linear"):
        resolve_targets(model, "attn,nothing.here")
    with pytest.raises(ConfigError, match="kind"):
        add_adapters(model, kind="ia3")
    add_adapters(model, targets="*.attn.qkv")
    assert isinstance(model.blocks[0].attn.qkv, LoRALinear) and isinstance(model.blocks[0].attn.proj, nn.Linear)
    with pytest.raises(ConfigError, match="already has adapters"):
        add_adapters(model)


def test_trainable_count_and_summary() -> None:
    model = add_adapters(_gpt(), rank=4, targets="attn,mlp")
    d, r = 32, 4
    per_layer = r * (d + 3 * d) + r * (d + d) + r * (d + 4 * d) + r * (4 * d + d)
    summary = adapter_summary(model)
    assert summary.trainable == 2 * per_layer == model.num_parameters(trainable_only=True)
    assert summary.total == model.num_parameters()
    assert str(summary).startswith(f"{100 * summary.trainable / summary.total:.1f}% trainable (")


def test_merged_equals_unmerged_and_unmerge_is_exact() -> None:
    model = add_adapters(_gpt(), rank=4, targets="attn,mlp,head")
    _randomise_adapters(model)
    idx = _tokens()
    base_weights = {n: p.detach().clone() for n, p in model.named_parameters() if n.endswith("weight")}
    unmerged_out = model(idx)
    set_merged(model, True)
    assert model.blocks[0].attn.qkv.merged and not model.lm_head.merged  # tied head is never written into
    torch.testing.assert_close(model(idx), unmerged_out, atol=1e-5, rtol=1e-5)
    set_merged(model, False)
    for n, p in model.named_parameters():
        if n in base_weights:
            assert torch.equal(p, base_weights[n]), n


def test_merge_adapters_folds_into_plain_linear_and_unties_head() -> None:
    model = add_adapters(_gpt(), rank=4, targets="attn,mlp,head")
    _randomise_adapters(model)
    idx = _tokens()
    expected = model(idx)
    embedding = model.tok_emb.weight.detach().clone()
    merge_adapters(model)
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    assert is_plain_linear(model.blocks[0].attn.qkv) and model.adapter_config is None
    torch.testing.assert_close(model(idx), expected, atol=1e-5, rtol=1e-5)
    # The head got its own merged weight; the embedding keeps the base values; config records the untie.
    assert model.lm_head.weight is not model.tok_emb.weight and not model.config.tie_weights
    assert torch.equal(model.tok_emb.weight, embedding)
    assert all(p.requires_grad for p in model.parameters())
    # A model built from the new config and the state dict computes the same thing.
    rebuilt = GPT(model.config).eval()
    rebuilt.load_state_dict(model.state_dict())
    torch.testing.assert_close(rebuilt(idx), expected, atol=1e-5, rtol=1e-5)


def test_adapters_disabled_gives_the_base_model() -> None:
    model = _gpt()
    idx = _tokens()
    base_out = model(idx)
    add_adapters(model, rank=4)
    _randomise_adapters(model)
    adapted = model(idx)
    assert not torch.allclose(adapted, base_out, atol=1e-4)
    for merged in (False, True):
        set_merged(model, merged)
        with adapters_disabled(model):
            torch.testing.assert_close(model(idx), base_out, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(model(idx), adapted, atol=1e-5, rtol=1e-5)
        assert model.blocks[0].attn.qkv.merged == merged


def test_lora_on_moe_model_reaches_attention_and_experts() -> None:
    model = _gpt(moe_experts=4, moe_top_k=2)
    idx = _tokens()
    before = model(idx)
    add_adapters(model, rank=2, targets="attn,mlp", generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(model(idx), before, atol=1e-5, rtol=1e-5)
    wrapped = [n for n, m in model.named_modules() if isinstance(m, LoRALinear)]
    assert "blocks.0.mlp.experts.3.fc" in wrapped and "blocks.1.attn.qkv" in wrapped
    assert not any("router" in n for n in wrapped) and not model.blocks[0].mlp.router.weight.requires_grad
    loss = F.cross_entropy(model(idx).flatten(0, 1), idx.flatten()) + model.auxiliary_loss()
    loss.backward()
    routed = [e for e, f in enumerate(model.blocks[0].mlp.expert_fraction.tolist()) if f > 0]
    assert model.blocks[0].mlp.experts[routed[0]].fc.B.grad.abs().sum() > 0
    assert model.num_active_parameters() < model.num_parameters()


# --- finetuning on a small budget ---------------------------------------------------------------------
# A "pretraining" Markov chain and a "finetuning" chain that rewires the successors of 8 of 32 tokens:
# the finetuned model must learn new behaviour, but most of what it knows still applies (as with
# instruction tuning a pretrained model). Both chains have a loss floor of H([.4,.3,.2,.1]) = 1.28 nats.
VOCAB, CONTEXT = 32, 32


def _chain(rewired_rows: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    P = torch.zeros(VOCAB, VOCAB)
    for i in range(VOCAB):
        P[i, torch.randperm(VOCAB, generator=g)[:4]] = torch.tensor([0.4, 0.3, 0.2, 0.1])
    perm = torch.randperm(VOCAB, generator=torch.Generator().manual_seed(1))
    P[:rewired_rows] = P[:rewired_rows][:, perm]
    return P


def _sample(P: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    seqs = torch.empty(n, CONTEXT + 1, dtype=torch.long)
    seqs[:, 0] = torch.randint(0, VOCAB, (n,), generator=g)
    for t in range(CONTEXT):
        seqs[:, t + 1] = torch.multinomial(P[seqs[:, t]], 1, generator=g)[:, 0]
    return seqs


def _train(model: GPT, data: torch.Tensor, steps: int, lr: float) -> None:
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(7)
    for _ in range(steps):
        batch = data[torch.randint(0, len(data), (16,), generator=g)]
        loss = F.cross_entropy(model(batch[:, :-1]).flatten(0, 1), batch[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


@torch.no_grad()
def _val_loss(model: GPT, data: torch.Tensor) -> float:
    return F.cross_entropy(model(data[:, :-1]).flatten(0, 1), data[:, 1:].flatten()).item()


def test_lora_and_dora_finetuning_close_to_full_finetuning() -> None:
    pretrain, finetune, val = _sample(_chain(0), 2000, 1), _sample(_chain(8), 512, 2), _sample(_chain(8), 256, 3)
    cfg = GPTConfig(vocab_size=VOCAB, context_length=CONTEXT, d_model=64, n_layers=2, n_heads=4)
    base = GPT(cfg)
    base.reset_parameters(torch.Generator().manual_seed(0))
    _train(base, pretrain, steps=150, lr=3e-3)
    pretrained_loss = _val_loss(base, val)

    full = copy.deepcopy(base)
    _train(full, finetune, steps=100, lr=1e-3)
    full_loss = _val_loss(full, val)
    assert full_loss < 0.7 * pretrained_loss  # the finetuning task is not already solved

    for kind in ("lora", "dora"):
        model = add_adapters(copy.deepcopy(base), kind=kind, rank=2, alpha=4,
                             generator=torch.Generator().manual_seed(2))
        assert adapter_summary(model).fraction < 0.05
        _train(model, finetune, steps=100, lr=1e-2)
        loss = _val_loss(model, val)
        assert loss < 1.10 * full_loss, (kind, loss, full_loss)
        # The base weights did not move.
        assert torch.equal(model.tok_emb.weight, base.tok_emb.weight)
        if kind == "dora":
            assert isinstance(model.blocks[0].attn.qkv, DoRALinear)
