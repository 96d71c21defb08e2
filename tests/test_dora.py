"""DoRA: value and gradients against the formula, norm axis, zero-norm rows, init, merge/unmerge."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

from llm_core.adapters import DoRALinear, add_adapters, merge_adapters, set_merged
from llm_core.model import GPT, GPTConfig
from llm_core.onednn_linear import is_plain_linear


def _layer(detach_norm: bool, seed: int = 0) -> DoRALinear:
    g = torch.Generator().manual_seed(seed)
    base = nn.Linear(6, 5)
    with torch.no_grad():
        base.weight.copy_(torch.randn(5, 6, generator=g))
        base.bias.copy_(torch.randn(5, generator=g))
    layer = DoRALinear(base, rank=3, alpha=6, detach_norm=detach_norm, generator=g)
    with torch.no_grad():  # move away from the init point so m, A, B all matter
        layer.B.copy_(torch.randn(3, 5, generator=g) * 0.5)
        layer.m.mul_(torch.rand(5, generator=g) + 0.5)
    return layer


def _dora_reference(W0, b, m, A, B, scale, x, detach_norm):
    """Straight from the paper: V = W0 + scale (A B)^T, W = m V / ||V||_row, y = x W^T + b."""
    V = W0 + scale * (A @ B).T  # (out, in)
    norm = torch.sqrt((V * V).sum(dim=1, keepdim=True))  # (out, 1): over the input dimension
    if detach_norm:
        norm = norm.detach()
    W = m[:, None] * V / norm
    return x @ W.T + b


@pytest.mark.parametrize("detach_norm", [True, False])
def test_forward_and_gradients_match_formula(detach_norm: bool) -> None:
    layer = _layer(detach_norm)
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(9))
    m = layer.m.detach().clone().requires_grad_(True)
    A = layer.A.detach().clone().requires_grad_(True)
    B = layer.B.detach().clone().requires_grad_(True)
    y = layer(x)
    y_ref = _dora_reference(layer.weight.detach(), layer.bias.detach(), m, A, B, 2.0, x, detach_norm)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)

    upstream = torch.randn(y.shape, generator=torch.Generator().manual_seed(10))
    (y * upstream).sum().backward()
    (y_ref * upstream).sum().backward()
    for name, ours, ref in (("m", layer.m.grad, m.grad), ("A", layer.A.grad, A.grad), ("B", layer.B.grad, B.grad)):
        torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5, msg=name)
    assert layer.weight.grad is None  # base stays frozen


def test_detached_norm_changes_the_gradient() -> None:
    """The memory trick is an approximation: the two modes agree on values, not on gradients."""
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(9))
    grads = []
    for detach in (True, False):
        layer = _layer(detach)
        layer(x).pow(2).sum().backward()
        grads.append(layer.B.grad)
    assert not torch.allclose(grads[0], grads[1], atol=1e-4)


def test_magnitude_is_per_output_feature_norm() -> None:
    base = nn.Linear(6, 5)
    layer = DoRALinear(copy.deepcopy(base), rank=2, alpha=4)
    assert layer.m.shape == (5,)
    torch.testing.assert_close(layer.m, torch.sqrt((base.weight.detach() ** 2).sum(dim=1)))
    x = torch.randn(3, 6, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(layer(x), base(x), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("detach_norm", [True, False])
def test_zero_norm_rows_give_no_nan(detach_norm: bool) -> None:
    base = nn.Linear(4, 3)
    with torch.no_grad():
        base.weight[1].zero_()
    layer = DoRALinear(base, rank=2, alpha=4, detach_norm=detach_norm)  # B = 0, so V's row 1 is zero
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    y = layer(x)
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y[:, 1], base.bias[1].expand(5))  # zero direction: only the bias
    y.sum().backward()
    for p in (layer.m, layer.A, layer.B):
        assert torch.isfinite(p.grad).all()
    assert torch.isfinite(layer.merged_weight()).all()


def _gpt() -> GPT:
    model = GPT(GPTConfig(vocab_size=40, context_length=16, d_model=32, n_layers=2, n_heads=4))
    model.reset_parameters(torch.Generator().manual_seed(0))
    return model.eval()


def test_dora_model_init_equals_base() -> None:
    model = _gpt()
    idx = torch.randint(0, 40, (2, 12), generator=torch.Generator().manual_seed(1))
    before = model(idx)
    add_adapters(model, kind="dora", rank=4, targets="attn,mlp,head", generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(model(idx), before, atol=1e-5, rtol=1e-5)
    trainable = {n.rsplit(".", 1)[1] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"A", "B", "m"}


def test_merge_unmerge_exact_and_merge_adapters() -> None:
    model = add_adapters(_gpt(), kind="dora", rank=4, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith((".B", ".m")):
                p.add_(torch.randn(p.shape, generator=g) * 0.1)
    idx = torch.randint(0, 40, (2, 12), generator=torch.Generator().manual_seed(1))
    base_weights = {n: p.detach().clone() for n, p in model.named_parameters() if n.endswith("weight")}
    expected = model(idx)
    set_merged(model, True)
    assert not torch.equal(model.blocks[0].mlp.fc.weight, base_weights["blocks.0.mlp.fc.weight"])
    torch.testing.assert_close(model(idx), expected, atol=1e-5, rtol=1e-5)
    set_merged(model, False)
    for n, p in model.named_parameters():
        if n in base_weights:
            assert torch.equal(p, base_weights[n]), n  # bit-for-bit
    merge_adapters(model)
    assert is_plain_linear(model.blocks[1].attn.proj)
    torch.testing.assert_close(model(idx), expected, atol=1e-5, rtol=1e-5)
