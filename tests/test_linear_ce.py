"""The fused chunked head + cross-entropy (`llm_core.linear_ce`) and `GPT.forward(idx, targets)` against
`F.cross_entropy` over the full logits: loss and gradients.

Tolerances: fp32 and fp64 runs do the same arithmetic in another order, so 1e-5 relative (fp32) and 1e-10
(fp64). Under bf16 autocast both paths round the logits and their gradient to bf16; the fused path's error
against the fp32 truth must be within 1.5x that of the plain autocast path (both are about 3e-3).
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from llm_core import GPT, GPTConfig
from llm_core.data import IGNORE_INDEX as DATA_IGNORE_INDEX
from llm_core.linear_ce import IGNORE_INDEX, linear_cross_entropy


def _inputs(dtype=torch.float32, V=300, C=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(3, 41, C, generator=g, dtype=dtype).requires_grad_()
    w = (torch.randn(V, C, generator=g, dtype=dtype) * 0.3).requires_grad_()
    t = torch.randint(0, V, (3, 41), generator=g)
    t[0, :9] = IGNORE_INDEX  # a masked prompt
    t[2, -5:] = IGNORE_INDEX  # padding
    return h, w, t


def _run(h, w, t, fused: bool, reduction="mean", upstream=None, chunk=17):
    h.grad = w.grad = None
    if fused:
        loss = linear_cross_entropy(h, w, t, reduction=reduction, chunk=chunk)
    else:
        logits = F.linear(h, w)
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # fp32 under autocast, as the Trainer did
        loss = F.cross_entropy(logits.transpose(1, 2), t, ignore_index=IGNORE_INDEX, reduction=reduction)
    (loss if upstream is None else (loss * upstream).sum()).backward()
    return loss.detach().double(), h.grad.double(), w.grad.double()


def _rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
@pytest.mark.parametrize("chunk", [1, 17, 1000])  # one row, uneven chunks, everything in one chunk
def test_mean_loss_and_gradients_match_cross_entropy(dtype, tol, chunk):
    h, w, t = _inputs(dtype)
    fused, plain = _run(h, w, t, True, chunk=chunk), _run(h, w, t, False)
    for a, b in zip(fused, plain):
        assert _rel(a, b) < tol


@pytest.mark.parametrize("reduction", ["sum", "none"])
def test_other_reductions_match(reduction):
    h, w, t = _inputs()
    upstream = torch.rand(t.shape, generator=torch.Generator().manual_seed(3)) if reduction == "none" else None
    fused, plain = _run(h, w, t, True, reduction, upstream), _run(h, w, t, False, reduction, upstream)
    assert fused[0].shape == plain[0].shape
    for a, b in zip(fused, plain):
        assert _rel(a, b) < 1e-5
    if reduction == "none":
        assert bool((fused[0][t == IGNORE_INDEX] == 0).all())


def test_bf16_autocast_is_as_accurate_as_the_plain_autocast_path():
    h, w, t = _inputs(V=2000, C=64)
    truth = _run(h, w, t, False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fused, plain = _run(h, w, t, True), _run(h, w, t, False)
    for a, b, ref in zip(fused, plain, truth):
        assert _rel(a, ref) <= 1.5 * _rel(b, ref) + 1e-6
        assert _rel(a, ref) < 1e-2  # and bf16-sized, not broken


def test_nothing_counted_gives_nan_like_cross_entropy_and_bad_ids_are_refused():
    h, w, t = _inputs()
    loss = linear_cross_entropy(h, w, torch.full_like(t, IGNORE_INDEX))
    assert torch.isnan(loss) and loss.requires_grad
    t[1, 3] = 300  # == V
    with pytest.raises(IndexError, match=r"targets: ids must be in \[0, 300\) or -100, got \d+\.\.300"):
        linear_cross_entropy(h, w, t)
    with pytest.raises(ValueError, match="reduction"):
        linear_cross_entropy(h, w, t, reduction="avg")


def test_no_grad_computes_the_loss_only():
    h, w, t = _inputs()
    with torch.no_grad():
        loss = linear_cross_entropy(h, w, t)
    assert loss.grad_fn is None
    assert abs(float(loss) - float(_run(h, w, t, False)[0])) < 1e-5


def test_ignore_index_is_the_data_pipelines():
    assert IGNORE_INDEX == DATA_IGNORE_INDEX


def _gpt(tie=True):
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=211, context_length=32, d_model=32, n_layers=2, n_heads=4, tie_weights=tie))


@pytest.mark.parametrize("tie", [True, False])
def test_gpt_forward_with_targets_equals_cross_entropy_of_its_logits(tie):
    model = _gpt(tie)
    g = torch.Generator().manual_seed(1)
    idx = torch.randint(0, 211, (2, 32), generator=g)
    targets = torch.randint(0, 211, (2, 32), generator=g)
    targets[:, :5] = IGNORE_INDEX

    def grads(loss):
        model.zero_grad(set_to_none=True)
        loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters()}

    fused = model(idx, targets)
    logits = model(idx)
    plain = F.cross_entropy(logits.reshape(-1, 211), targets.reshape(-1), ignore_index=IGNORE_INDEX)
    assert abs(float(fused.detach()) - float(plain.detach())) < 1e-5 * float(plain.detach())
    got, want = grads(model(idx, targets)), grads(plain)
    for name in want:  # the tied embedding gets the head's gradient and the lookup's
        assert _rel(got[name], want[name]) < 1e-4, name
    per_token = model(idx, targets, reduction="none")
    assert per_token.shape == (2, 32) and torch.allclose(per_token.sum() / (targets != -100).sum(), fused)
    with pytest.raises(ValueError, match="targets: shape"):
        model(idx, targets[:, 1:])


def test_an_adapted_head_falls_back_to_its_logits():
    from llm_core.adapters import add_adapters

    model = _gpt(tie=False)
    add_adapters(model, rank=2, targets="head")
    assert type(model.lm_head) is not torch.nn.Linear
    with torch.no_grad():
        model.lm_head.B.normal_()  # a non-zero adapter, so the head is not the base Linear
    idx = torch.randint(0, 211, (2, 16))
    targets = torch.randint(0, 211, (2, 16))
    want = F.cross_entropy(model(idx).reshape(-1, 211), targets.reshape(-1))
    assert torch.allclose(model(idx, targets), want, atol=1e-6)


@pytest.mark.parametrize("gap", [50.0, 95.0, 120.0, 200.0])  # p_y normal, denormal, below fp32's range
def test_a_target_far_below_the_best_logit_keeps_an_exact_finite_loss(gap):
    """The loss is -log p_y from the softmax, except where p_y is too small for fp32 to hold: there it
    comes from log_softmax, as F.cross_entropy's does (gap = 200: p_y = e^-200 underflows to 0)."""
    C, V = 4, 10
    h = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]], requires_grad=True)  # (2, C)
    w = torch.zeros(V, C)
    w[0, 0] = gap  # row 0: token 0 is `gap` above every other logit
    w[3, 1] = 2.0
    w.requires_grad_()
    t = torch.tensor([5, 3])  # row 0's target is far below; row 1's is the likeliest
    fused = linear_cross_entropy(h, w, t, reduction="none")
    plain = F.cross_entropy(F.linear(h, w), t, reduction="none")
    assert torch.isfinite(fused).all()
    torch.testing.assert_close(fused, plain, rtol=1e-6, atol=1e-6)
    fused.sum().backward()
    hg, wg = h.grad.clone(), w.grad.clone()
    h.grad = w.grad = None
    plain.sum().backward()
    torch.testing.assert_close(hg, h.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(wg, w.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("autocast", [False, True])
def test_losses_with_and_without_a_gradient_are_the_same_bits(autocast):
    """DPO runs the policy with a gradient and its frozen reference without one: at the start they are the
    same model, and every pair must come out a tie."""
    h, w, t = _inputs(V=3000)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        with_grad = linear_cross_entropy(h, w, t, reduction="none")
        without = linear_cross_entropy(h.detach(), w.detach(), t, reduction="none")  # a frozen copy
    assert with_grad.requires_grad and not without.requires_grad
    assert torch.equal(with_grad.detach(), without)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_logits_made_in_several_blocks_match_cross_entropy(monkeypatch, dtype, tol):
    """A batch larger than one block of LOGITS_ELEMENTS (gpt2-small's 8 x 1024 rows make 7 blocks): blocks
    of 40 rows over 3 x 41 positions, the last one shorter, on whichever fp32 kernel this CPU takes."""
    import llm_core.linear_ce as linear_ce

    h, w, t = _inputs(dtype)
    monkeypatch.setattr(linear_ce, "LOGITS_ELEMENTS", 40 * w.shape[0])
    fused, plain = _run(h, w, t, True), _run(h, w, t, False)
    for a, b in zip(fused, plain):
        assert _rel(a, b) < tol


@pytest.mark.parametrize("autocast", [False, True])
def test_several_blocks_give_the_same_bits_with_and_without_a_gradient(monkeypatch, autocast):
    import llm_core.linear_ce as linear_ce

    h, w, t = _inputs(V=3000)
    monkeypatch.setattr(linear_ce, "LOGITS_ELEMENTS", 25 * 3000)  # 25 rows a block, 5 blocks
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        with_grad = linear_cross_entropy(h, w, t, reduction="none")
        without = linear_cross_entropy(h.detach(), w.detach(), t, reduction="none")
    assert torch.equal(with_grad.detach(), without)
