"""Mixture-of-Experts layer: dispatch vs a naive loop, dense equivalence, upcycling, aux losses, sizes."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from llm_core.errors import ConfigError
from llm_core.model import GPT, MLP, GPTConfig
from llm_core.moe import MoEFeedForward, upcycle_to_moe


def _moe(n_experts: int = 4, top_k: int = 2, seed: int = 0) -> MoEFeedForward:
    layer = MoEFeedForward(d_model=16, d_hidden=32, n_experts=n_experts, top_k=top_k)
    # Redraw every value from an owned generator (larger than GPT-2 init, so routing is not a near-tie).
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return layer


def _naive_moe(layer: MoEFeedForward, x: torch.Tensor) -> torch.Tensor:
    """Written from the definition: for each token, the softmax over its top-k logits mixes those experts."""
    flat = x.reshape(-1, x.shape[-1])
    rows = []
    for token in flat:
        logits = token @ layer.router.weight.T  # (E,)
        top = torch.topk(logits, layer.top_k)
        weights = torch.softmax(top.values, dim=0)
        out = torch.zeros_like(token)
        for w, e in zip(weights, top.indices.tolist()):
            expert = layer.experts[e]
            hidden = F.gelu(token @ expert.fc.weight.T + expert.fc.bias, approximate="tanh")
            out = out + w * (hidden @ expert.proj.weight.T + expert.proj.bias)
        rows.append(out)
    return torch.stack(rows).reshape(x.shape)


@pytest.mark.parametrize("top_k", [1, 2])
def test_dispatch_matches_naive_loop_outputs_and_gradients(top_k: int) -> None:
    layer = _moe(top_k=top_k)
    twin = copy.deepcopy(layer)
    x = torch.randn(3, 5, 16, generator=torch.Generator().manual_seed(1))
    x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    y = layer(x1)
    y_ref = _naive_moe(twin, x2)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)

    upstream = torch.randn(y.shape, generator=torch.Generator().manual_seed(2))
    (y * upstream).sum().backward()
    (y_ref * upstream).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, atol=1e-5, rtol=1e-5)
    for (name, p), (_, q) in zip(layer.named_parameters(), twin.named_parameters()):
        assert (p.grad is None) == (q.grad is None), name
        if p.grad is not None:
            torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=1e-5, msg=name)
    # The router learns through the mixing weights (top-2) even without the aux loss.
    if top_k == 2:
        assert layer.router.weight.grad.abs().sum() > 0


def test_top1_single_expert_equals_dense_mlp() -> None:
    cfg = GPTConfig(vocab_size=10, context_length=8, d_model=16, n_layers=1, n_heads=2, d_ff=32)
    dense = MLP(cfg.d_model, cfg.hidden_dim, cfg.dropout)
    layer = MoEFeedForward(d_model=16, d_hidden=32, n_experts=1, top_k=1)
    layer.experts[0].load_state_dict(dense.state_dict(), strict=False)
    x = torch.randn(2, 7, 16, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(layer(x), dense(x), atol=1e-6, rtol=1e-6)
    assert layer.expert_fraction.tolist() == [1.0]


def _tiny(**overrides) -> GPT:
    cfg = GPTConfig(vocab_size=50, context_length=16, d_model=32, n_layers=3, n_heads=4, **overrides)
    model = GPT(cfg)
    model.reset_parameters(torch.Generator().manual_seed(0))
    return model.eval()


def test_upcycled_model_equals_dense_model() -> None:
    dense = _tiny(moe_every=2)
    moe = upcycle_to_moe(dense, n_experts=4, top_k=2, generator=torch.Generator().manual_seed(3)).eval()
    assert moe.config.moe_experts == 4 and len(moe.moe_layers()) == 2  # layers 2 and 0 (every 2nd from the end)
    assert isinstance(moe.blocks[1].mlp, MLP)
    idx = torch.randint(0, 50, (2, 16), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(moe(idx), dense(idx), atol=1e-5, rtol=1e-5)
    # Every expert is a copy of the dense MLP; the router comes from the generator (reproducible).
    torch.testing.assert_close(moe.blocks[2].mlp.experts[3].fc.weight, dense.blocks[2].mlp.fc.weight)
    again = upcycle_to_moe(dense, 4, 2, generator=torch.Generator().manual_seed(3))
    assert torch.equal(again.blocks[0].mlp.router.weight, moe.blocks[0].mlp.router.weight)
    assert moe.blocks[0].mlp.router.weight.std() > 0
    # Tied head survives.
    assert moe.lm_head.weight is moe.tok_emb.weight


def test_upcycle_refuses_moe_input_and_bad_top_k() -> None:
    with pytest.raises(ConfigError, match="already MoE"):
        upcycle_to_moe(_tiny(moe_experts=2, moe_top_k=1), n_experts=4)
    with pytest.raises(ConfigError, match="moe_top_k"):
        upcycle_to_moe(_tiny(), n_experts=4, top_k=3)


def test_aux_z_loss_and_expert_fraction_by_hand() -> None:
    layer = _moe(n_experts=4, top_k=2)
    x = torch.randn(2, 6, 16, generator=torch.Generator().manual_seed(4))
    layer(x)
    logits = x.reshape(-1, 16) @ layer.router.weight.T  # (N, E)
    probs = torch.softmax(logits, dim=-1)
    chosen = torch.topk(logits, 2, dim=-1).indices
    n_tokens = logits.shape[0]
    f = torch.tensor([(chosen == e).sum().item() / (n_tokens * 2) for e in range(4)])
    P = probs.mean(dim=0)
    expected_aux = 4 * sum(f[e] * P[e] for e in range(4))
    expected_z = (torch.log(torch.exp(logits).sum(dim=-1)) ** 2).mean()
    torch.testing.assert_close(layer.aux_loss, expected_aux, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(layer.z_loss, expected_z, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(layer.expert_fraction, f)
    assert layer.aux_loss.requires_grad and not layer.expert_fraction.requires_grad


def test_model_auxiliary_loss_weights_layers() -> None:
    model = _tiny(moe_experts=4, moe_top_k=2, moe_aux_weight=0.5, moe_z_weight=0.25)
    model(torch.randint(0, 50, (2, 8), generator=torch.Generator().manual_seed(0)))
    layers = model.moe_layers()
    expected = sum(0.5 * m.aux_loss + 0.25 * m.z_loss for m in layers)
    torch.testing.assert_close(model.auxiliary_loss(), expected)
    assert len(layers) == 3


def test_active_vs_total_parameters() -> None:
    layer = MoEFeedForward(d_model=16, d_hidden=32, n_experts=8, top_k=2)
    expert = 16 * 32 + 32 + 32 * 16 + 16
    router = 16 * 8
    assert sum(p.numel() for p in layer.parameters()) == router + 8 * expert
    assert layer.active_parameters() == router + 2 * expert
    model = _tiny(moe_experts=8, moe_top_k=2)
    moe_params = 3 * (32 * 8 + 8 * (32 * 128 + 128 + 128 * 32 + 32))
    inactive = 3 * 6 * (32 * 128 + 128 + 128 * 32 + 32)
    assert model.num_parameters() - model.num_active_parameters() == inactive
    assert model.num_parameters() > moe_params
