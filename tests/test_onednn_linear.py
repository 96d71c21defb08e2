"""fp32 Linear layers through oneDNN (`llm_core.onednn_linear`): the same map and gradients as `F.linear`,
written out in fp64 (stated tolerance 1e-5 relative: the kernels differ in summation order only), the
route taken exactly where it should be, and a model trained on it matching one trained without it."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from engine_fakes import tiny_model
from llm_core import onednn_linear
from llm_core.device import _machine_onednn_fp32, has_onednn_linear, onednn_fp32_pays, use_onednn_fp32
from llm_core.errors import ConfigError
from llm_core.linear_ce import linear_cross_entropy
from llm_core.onednn_linear import Linear, is_plain_linear, linear, matmul_nt, routes

HAS_ONEDNN = has_onednn_linear()
needs_onednn = pytest.mark.skipif(not HAS_ONEDNN, reason="this torch build has no oneDNN linear")


@pytest.fixture
def route():
    """Force the route on (where oneDNN exists) and count its products; the machine's verdict after."""
    calls = []
    real = onednn_linear.onednn_matmul

    def counted(*args):
        calls.append(tuple(a.shape for a in args if isinstance(a, torch.Tensor)))
        return real(*args)

    use_onednn_fp32(True)
    onednn_linear.onednn_matmul = counted
    yield calls
    onednn_linear.onednn_matmul = real
    use_onednn_fp32(None)


def close(got: torch.Tensor, want: torch.Tensor) -> None:
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5 * float(want.abs().max()))


@needs_onednn
@pytest.mark.parametrize("x_shape", [(5, 12), (2, 3, 12)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_and_its_gradients_are_the_map_written_out(route, x_shape, with_bias):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*x_shape, generator=g, requires_grad=True)
    w = torch.randn(7, 12, generator=g, requires_grad=True)
    b = torch.randn(7, generator=g, requires_grad=True) if with_bias else None
    y = linear(x, w, b)
    upstream = torch.randn(y.shape, generator=g)
    (y * upstream).sum().backward()
    assert route and y.shape == (*x_shape[:-1], 7)  # the forward and both products of backward
    x64, w64, g64 = x.detach().double(), w.detach().double(), upstream.double()
    want = x64 @ w64.t() + (b.detach().double() if with_bias else 0.0)  # y = x W^T + b
    close(y.detach(), want)
    close(x.grad, g64 @ w64)  # dL/dx = g W
    close(w.grad, g64.reshape(-1, 7).t() @ x64.reshape(-1, 12))  # dL/dW = g^T x over every row
    if with_bias:
        close(b.grad, g64.reshape(-1, 7).sum(0))  # dL/db = the column sums of g
    assert len(route) == 3


@needs_onednn
def test_only_what_needs_a_gradient_gets_one(route):
    x = torch.randn(4, 6)  # an input that needs none: dL/dx is never computed
    w = torch.randn(3, 6, requires_grad=True)
    linear(x, w).sum().backward()
    assert len(route) == 2 and x.grad is None and w.grad is not None
    route.clear()
    with torch.no_grad():
        linear(torch.randn(4, 6), w)
    assert len(route) == 1  # no graph: one product


@needs_onednn
def test_fp64_bf16_and_autocast_take_f_linear_itself(route):
    g = torch.Generator().manual_seed(1)
    for dtype in (torch.float64, torch.bfloat16):
        x, w = torch.randn(4, 8, generator=g).to(dtype), torch.randn(5, 8, generator=g).to(dtype)
        assert not routes(x, w) and torch.equal(linear(x, w), F.linear(x, w))
    x, w = torch.randn(4, 8, generator=g), torch.randn(5, 8, generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = linear(x, w)
        assert got.dtype == torch.bfloat16 and torch.equal(got, F.linear(x, w))  # autocast's bf16
    assert route == []
    assert routes(x, w) and not routes(x[:0], w)  # no rows: nothing for oneDNN to do


def test_switched_off_the_model_is_plain_torch_bit_for_bit():
    use_onednn_fp32(False)
    try:
        g = torch.Generator().manual_seed(2)
        x, w, b = torch.randn(3, 8, generator=g), torch.randn(5, 8, generator=g), torch.randn(5, generator=g)
        assert not onednn_fp32_pays() and torch.equal(linear(x, w, b), F.linear(x, w, b))
        assert torch.equal(matmul_nt(x, w), x @ w.t())
    finally:
        use_onednn_fp32(None)


def test_the_machine_verdict_needs_avx512(monkeypatch):
    _machine_onednn_fp32.cache_clear()
    try:
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
        assert not onednn_fp32_pays()  # MKL and oneDNN were within 10% at AVX2: torch's default stays
        _machine_onednn_fp32.cache_clear()
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
        assert onednn_fp32_pays() == HAS_ONEDNN
        use_onednn_fp32(False)
        assert not onednn_fp32_pays()
    finally:
        use_onednn_fp32(None)
        _machine_onednn_fp32.cache_clear()


def test_a_bad_setting_is_one_line():
    with pytest.raises(ConfigError, match="use_onednn_fp32: must be True, False or None, got 'yes'"):
        use_onednn_fp32("yes")  # type: ignore[arg-type]


def test_the_models_linear_is_an_nn_linear_with_the_same_state():
    layer = Linear(6, 4)
    plain = nn.Linear(6, 4)
    assert isinstance(layer, nn.Linear) and is_plain_linear(layer) and is_plain_linear(plain)
    assert layer.state_dict().keys() == plain.state_dict().keys()
    assert not is_plain_linear(nn.Sequential())


@needs_onednn
def test_matmul_nt_is_a_times_b_transposed(route):
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(9, 16, generator=g), torch.randn(11, 16, generator=g)
    close(matmul_nt(a, b), a.double() @ b.double().t())
    close(matmul_nt(a.t().contiguous().t(), b), a.double() @ b.double().t())  # a transposed view as well
    assert len(route) == 2


@needs_onednn
def test_fused_cross_entropy_on_the_route_matches_the_plain_loss_and_gradients(route):
    g = torch.Generator().manual_seed(4)
    h = torch.randn(2, 9, 16, generator=g, requires_grad=True)
    w = torch.randn(50, 16, generator=g, requires_grad=True)
    y = torch.randint(0, 50, (2, 9), generator=g)
    y[0, :3] = -100
    loss = linear_cross_entropy(h, w, y)
    loss.backward()
    assert len(route) == 3  # logits, dL/dh, dL/dW
    h64, w64 = h.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    want = F.cross_entropy((h64 @ w64.t()).transpose(1, 2), y, ignore_index=-100)
    want.backward()
    torch.testing.assert_close(loss.double(), want.detach(), rtol=1e-5, atol=1e-6)
    close(h.grad, h64.grad)
    close(w.grad, w64.grad)


@needs_onednn
def test_a_training_step_on_the_route_matches_one_without_it():
    """Loss and every gradient of a tiny GPT in fp32, oneDNN against torch's default kernels."""
    grads = {}
    for on in (True, False):
        use_onednn_fp32(on)
        try:
            model = tiny_model(seed=5, dtype=torch.float32).train()
            ids = torch.randint(0, 257, (2, 12), generator=torch.Generator().manual_seed(6))
            loss = model(ids[:, :-1], ids[:, 1:])
            loss.backward()
            grads[on] = (float(loss.detach()), {n: p.grad.clone() for n, p in model.named_parameters()})
        finally:
            use_onednn_fp32(None)
    assert abs(grads[True][0] - grads[False][0]) < 1e-5
    for name, g_off in grads[False][1].items():
        torch.testing.assert_close(grads[True][1][name], g_off, rtol=1e-4, atol=1e-6, msg=name)


@needs_onednn
def test_a_graph_torch_compile_traces_takes_f_linear(route):
    """Inductor lowers F.linear itself and cannot lower oneDNN's linear on a weight it did not pack (the
    Engine's compiled step fell back to eager with "LoweringException"), so traced code takes F.linear."""
    g = torch.Generator().manual_seed(7)
    x, w = torch.randn(3, 8, generator=g), torch.randn(5, 8, generator=g)
    compiled = torch.compile(lambda a, b: linear(a, b), backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(x, w), F.linear(x, w))
    assert route == []
    linear(x, w)  # eager: the route
    assert len(route) == 1
