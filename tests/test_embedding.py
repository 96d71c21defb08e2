"""The tied embedding stored column-major (llm_core/embedding.py): same values, same gradients, gradients in
the weight's own layout, the same initial weights as a row-major matrix."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from llm_core import GPT, GPTConfig
from llm_core.embedding import COLUMN_MAJOR_MIN_VOCAB, Embedding, TiedGradient, column_major, column_major_parameter
from llm_core.linear_ce import linear_cross_entropy
from training_helpers import row_major_copy

V = COLUMN_MAJOR_MIN_VOCAB + 3  # a vocabulary large enough for the column-major layout
CFG = dict(vocab_size=V, context_length=16, d_model=8, n_layers=2, n_heads=2)


def test_column_major_is_the_stored_transpose() -> None:
    assert column_major(torch.empty(5, 3).t())  # (3, 5) with strides (1, 3)
    assert not column_major(torch.empty(3, 5))
    assert not column_major(torch.empty(5, 1).t())  # (1, 5): contiguous either way
    assert not column_major(torch.empty(4, 6)[:, ::2])
    w = column_major_parameter(7, 4, torch.empty(0))
    assert w.shape == (7, 4) and w.stride() == (1, 7) and isinstance(w, torch.nn.Parameter)


def test_a_tied_gpt_stores_a_large_embedding_column_major_and_others_row_major() -> None:
    tied = GPT(GPTConfig(**CFG))
    assert tied.tok_emb.weight is tied.lm_head.weight
    assert tied.tok_emb.weight.shape == (V, 8) and column_major(tied.tok_emb.weight)
    assert tied.state_dict()["tok_emb.weight"].shape == (V, 8)
    untied = GPT(GPTConfig(**CFG, tie_weights=False))
    assert untied.tok_emb.weight.is_contiguous() and untied.lm_head.weight.is_contiguous()
    small = GPT(GPTConfig(**{**CFG, "vocab_size": COLUMN_MAJOR_MIN_VOCAB - 1}))
    assert small.tok_emb.weight is small.lm_head.weight and small.tok_emb.weight.is_contiguous()


def test_the_initial_weights_do_not_depend_on_the_layout() -> None:
    """reset_parameters draws in row-major order: the same seed gives the row-major matrix it always gave."""
    model = GPT(GPTConfig(**CFG))
    model.reset_parameters(torch.Generator().manual_seed(3))
    # Independent: the same draws into a contiguous (V, C) matrix, in named_parameters order.
    g = torch.Generator().manual_seed(3)
    for name, p in model.named_parameters():
        if p.dim() == 1:
            continue
        std = 0.02 / (2 * CFG["n_layers"]) ** 0.5 if name.endswith("proj.weight") else 0.02
        expected = torch.empty(p.shape).normal_(0.0, std, generator=g)
        assert torch.equal(p.detach(), expected), name


@pytest.mark.parametrize("layout", ["column", "row"])
def test_the_lookup_gradient_comes_in_the_weights_layout_with_repeated_ids_summed(layout: str) -> None:
    torch.manual_seed(0)
    rows = torch.randn(11, 6)
    weight = torch.nn.Parameter(rows.t().contiguous().t() if layout == "column" else rows.clone())
    emb = Embedding(11, 6)
    emb.weight = weight
    ids = torch.tensor([[1, 4, 1], [9, 1, 0]])
    out = emb(ids)
    upstream = torch.randn(out.shape)
    (grad,) = torch.autograd.grad(out, weight, upstream)
    assert torch.equal(out, rows[ids])
    assert grad.stride() == weight.stride()
    expected = torch.zeros(11, 6)
    for (b, t), i in zip(torch.cartesian_prod(torch.arange(2), torch.arange(3)), ids.reshape(-1)):
        expected[i] += upstream[b, t]
    torch.testing.assert_close(grad, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("autocast", [False, True])
def test_the_head_gradient_comes_in_the_weights_layout_and_equals_the_row_major_one(autocast: bool) -> None:
    torch.manual_seed(1)
    h = torch.randn(10, 8, requires_grad=True)
    rows = torch.randn(V, 8) * 0.1
    targets = torch.randint(0, V, (10,))
    grads = {}
    for layout in ("column", "row"):
        w = torch.nn.Parameter(rows.t().contiguous().t() if layout == "column" else rows.clone())
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = linear_cross_entropy(h, w, targets)
        gh, gw = torch.autograd.grad(loss, (h, w))
        assert gw.stride() == w.stride(), layout
        grads[layout] = (loss.detach(), gh, gw)
    tol = dict(rtol=1e-2, atol=1e-4) if autocast else dict(rtol=1e-5, atol=1e-7)  # bf16: the matmul's kernels
    for a, b in zip(grads["column"], grads["row"]):
        torch.testing.assert_close(a, b, **tol)


def test_a_training_step_is_the_same_in_either_layout() -> None:
    """Loss and every gradient of the column-major model equal those of the same weights row-major
    (fp32: only the matmuls' summation order differs)."""
    torch.manual_seed(2)
    column = GPT(GPTConfig(**CFG))
    row = row_major_copy(column)
    assert row.tok_emb.weight.is_contiguous() and column_major(column.tok_emb.weight)
    ids, targets = torch.randint(0, V, (3, 16)), torch.randint(0, V, (3, 16))
    losses = []
    for model in (column, row):
        loss = model(ids, targets)
        loss.backward()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)
    assert column.tok_emb.weight.grad.stride() == column.tok_emb.weight.stride()
    for (name, a), (_, b) in zip(column.named_parameters(), row.named_parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-7, msg=name)


def test_without_a_gradient_the_lookup_is_plain_f_embedding() -> None:
    model = GPT(GPTConfig(**CFG))
    ids = torch.tensor([[3, V - 1, 0]])
    with torch.no_grad():
        assert torch.equal(model.tok_emb(ids), F.embedding(ids, model.tok_emb.weight.contiguous()))


@pytest.mark.parametrize("vocab", [V, 61])  # column-major, and a small row-major vocabulary
def test_forward_with_targets_gives_the_tied_weight_the_plain_paths_gradient(vocab: int) -> None:
    """GPT.forward(ids, targets) adds the lookup's rows into the head's gradient of the tied W in one buffer
    (TiedGradient); the plain path, logits then F.cross_entropy, lets autograd add the two. Same gradients."""
    torch.manual_seed(4)
    fused = GPT(GPTConfig(**{**CFG, "vocab_size": vocab}))
    plain = row_major_copy(fused)
    ids = torch.randint(0, vocab, (3, 16))
    ids[0, :4] = 5  # repeated ids: their rows add up
    targets = torch.randint(0, vocab, (3, 16))
    fused(ids, targets).backward()
    F.cross_entropy(plain(ids).flatten(0, 1), targets.flatten()).backward()
    for (name, a), (_, b) in zip(fused.named_parameters(), plain.named_parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-7, msg=name)
    assert fused.tok_emb.weight.grad.stride() == fused.tok_emb.weight.stride()


def test_the_tied_gradient_accumulates_over_backward_passes_and_through_autograd_grad() -> None:
    torch.manual_seed(5)
    model = GPT(GPTConfig(**CFG))
    ids, targets = torch.randint(0, V, (2, 16)), torch.randint(0, V, (2, 16))
    (once,) = torch.autograd.grad(model(ids, targets), model.tok_emb.weight)
    model(ids, targets).backward()
    model(ids, targets).backward()  # gradient accumulation: .grad adds up
    torch.testing.assert_close(model.tok_emb.weight.grad, 2 * once, rtol=1e-6, atol=1e-9)


def test_the_lookup_adds_its_rows_into_the_heads_gradient() -> None:
    """TiedGradient on its own: the head's backward hands dL/dW over, the lookup returns dL/dW + its rows."""
    torch.manual_seed(6)
    emb = Embedding(V, 8)
    emb.weight = column_major_parameter(V, 8, emb.weight)
    with torch.no_grad():
        emb.weight.copy_(torch.randn(V, 8) * 0.1)
    ids, targets = torch.tensor([3, 7, 3, 11]), torch.tensor([1, 2, 3, 4])
    grads = []
    for tied in (TiedGradient(), None):
        h = emb(ids, tied=tied) if tied is not None else emb(ids)  # (4, 8): the states the head sees
        loss = linear_cross_entropy(h, emb.weight, targets, tied=tied)
        (g,) = torch.autograd.grad(loss, emb.weight)
        grads.append(g)
        if tied is not None:
            assert tied.head is None  # handed over and consumed
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("layout", ["column", "row"])
def test_a_handed_over_head_gradient_is_what_the_lookup_adds_its_rows_to(layout: str) -> None:
    torch.manual_seed(7)
    rows = torch.randn(13, 4)
    emb = Embedding(13, 4)
    emb.weight = torch.nn.Parameter(rows.t().contiguous().t() if layout == "column" else rows.clone())
    head_grad = torch.empty_like(emb.weight).copy_(torch.randn(13, 4))  # as the head leaves it: W's layout
    tied = TiedGradient()
    ids = torch.tensor([2, 9, 2])
    out = emb(ids, tied=tied)
    tied.head = head_grad.clone()  # what the head's backward hands over before the lookup's runs
    upstream = torch.randn(3, 4)
    (grad,) = torch.autograd.grad(out, emb.weight, upstream)
    expected = head_grad.clone()
    for i, r in zip(ids, upstream):
        expected[i] += r
    torch.testing.assert_close(grad, expected, rtol=0, atol=1e-6)
    assert tied.head is None and grad.stride() == emb.weight.stride()
