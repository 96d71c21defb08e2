"""The CPU kernels (llm_core/cpu_kernels): each result against the formula computed in fp64 here, to
one bf16 ulp (their fp32 arithmetic rounds once to bf16, as torch's kernels do); their use by the model and
the fused cross-entropy against torch's ops; and the fallbacks with the one-line reason."""
from __future__ import annotations

import math
import random

import pytest
import torch
import torch.nn.functional as F

from llm_core import cpu_kernels
from engine_fakes import ByteTokenizer, tiny_model
from llm_core import Engine
from llm_core.cpu_kernels import build, cross_entropy_bf16, decode, gelu_tanh
from llm_core.engine import SamplingParams
from llm_core.device import supports_bf16
from llm_core.linear_ce import linear_cross_entropy
from llm_core.training import Trainer
from training_helpers import tiny_config

needs_kernels = pytest.mark.skipif(not cpu_kernels.enabled(), reason=cpu_kernels.status())


def bf16_ulp(ref: torch.Tensor) -> torch.Tensor:
    """The spacing of bf16 numbers (8 significant bits) at each value of an fp64 tensor."""
    _, exponent = torch.frexp(ref.abs().clamp_min(2.0 ** -126))  # ref = m 2^e with m in [0.5, 1)
    return torch.pow(2.0, exponent.double() - 8)


def assert_within_one_ulp(got: torch.Tensor, ref: torch.Tensor) -> None:
    err = (got.double() - ref).abs()
    bad = err > bf16_ulp(ref)
    assert not bad.any(), f"{int(bad.sum())} values off by more than one bf16 ulp, e.g. {got[bad][:3]} vs {ref[bad][:3]}"


@pytest.fixture
def kernels_on():
    with cpu_kernels.switched(True):
        yield


# --- cross-entropy ----------------------------------------------------------------------------------------
@needs_kernels
def test_cross_entropy_matches_the_formula_in_fp64() -> None:
    g = torch.Generator().manual_seed(0)
    R, V = 9, 1003  # V not a multiple of the 16 lanes: the tail is masked
    z = (torch.randn(R, V, generator=g) * 4).bfloat16()
    z[3] *= 6  # a peaked row: most exps underflow far below the max
    y = torch.randint(0, V, (R,), generator=g)
    zd = z.double()
    lse = torch.logsumexp(zd, dim=1)
    ref_loss = lse - zd.gather(1, y[:, None]).squeeze(1)  # -log softmax(z)_y
    ref_grad = torch.softmax(zd, dim=1) - F.one_hot(y, V).double()  # dCE/dz

    losses = torch.empty(R)
    grad = z.clone()
    cross_entropy_bf16(grad, y, losses, write_grad=True)
    assert torch.allclose(losses.double(), ref_loss, rtol=1e-6, atol=1e-5)
    assert_within_one_ulp(grad, ref_grad)

    untouched = z.clone()
    only_loss = torch.empty(R)
    cross_entropy_bf16(untouched, y, only_loss, write_grad=False)
    assert torch.equal(untouched, z) and torch.equal(only_loss, losses)


@needs_kernels
def test_cross_entropy_rows_with_a_stride_and_non_finite_logits() -> None:
    g = torch.Generator().manual_seed(1)
    big = torch.randn(4, 80, generator=g).bfloat16()
    z = big[:, :70]  # rows 80 apart, 70 logits each
    y = torch.tensor([0, 69, 5, 7])
    z[1, 3] = float("nan")
    z[2, 9] = float("inf")
    losses = torch.empty(4)
    tail = big[:, 70:].clone()
    ref = torch.logsumexp(z[0].double(), 0) - z[0, 0].double()
    cross_entropy_bf16(z, y, losses, write_grad=True)
    assert torch.isfinite(losses[[0, 3]]).all() and losses[1:3].isnan().all()
    assert z[1:3].isnan().all() and torch.isfinite(z[[0, 3]]).all()
    assert torch.equal(big[:, 70:], tail)  # nothing written past a row's V logits
    assert math.isclose(losses[0].item(), ref.item(), rel_tol=1e-6)


@needs_kernels
def test_cross_entropy_refuses_wrong_inputs() -> None:
    with pytest.raises(ValueError, match="z must be bf16"):
        cross_entropy_bf16(torch.zeros(2, 5), torch.zeros(2, dtype=torch.long), torch.empty(2), True)
    with pytest.raises(ValueError, match="targets must be contiguous int64 of shape \\(2,\\)"):
        cross_entropy_bf16(torch.zeros(2, 5).bfloat16(), torch.zeros(3, dtype=torch.long), torch.empty(2), True)
    with pytest.raises(ValueError, match="losses must be contiguous fp32"):
        cross_entropy_bf16(torch.zeros(2, 5).bfloat16(), torch.zeros(2, dtype=torch.long),
                           torch.empty(2, dtype=torch.float64), True)


@needs_kernels
def test_fused_head_loss_and_gradients_match_torchs_ops(kernels_on) -> None:
    """linear_cross_entropy under bf16 autocast, kernels on against off (torch's softmax in chunks)."""
    g = torch.Generator().manual_seed(2)
    h0 = torch.randn(3, 40, 32, generator=g)
    w0 = torch.randn(777, 32, generator=g) * 0.2
    y = torch.randint(0, 777, (3, 40), generator=g)
    y[0, :5] = -100  # ignored positions
    results = []
    for on in (True, False):
        cpu_kernels.set_enabled(on)
        h, w = h0.clone().requires_grad_(), w0.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = linear_cross_entropy(h, w, y)
        loss.backward()
        results.append((loss.detach(), h.grad, w.grad))
    (l1, dh1, dw1), (l0, dh0, dw0) = results
    assert math.isclose(l1.item(), l0.item(), rel_tol=1e-5)
    torch.testing.assert_close(dh1, dh0, rtol=2e-2, atol=1e-5)  # dL/dz rounded to bf16 on both sides
    torch.testing.assert_close(dw1, dw0, rtol=2e-2, atol=1e-5)
    # and against the plain path: F.cross_entropy over all the logits in fp32
    ref = F.cross_entropy((h0 @ w0.t()).bfloat16().float().view(-1, 777), y.view(-1))
    assert math.isclose(l1.item(), ref.item(), rel_tol=1e-4)


# --- GELU -------------------------------------------------------------------------------------------------
def gelu_tanh_fp64(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """GPT-2's GELU and its derivative, written out in fp64. 1 + tanh(u) = 2 / (1 + exp(-2u)) and
    1 - tanh(u)^2 = 4 / (exp(u) + exp(-u))^2, so that for large negative x (1 + tanh u below 1e-16) the
    reference does not cancel to 0 where the true value is still a bf16 number."""
    x = x.double()
    k0, k1 = math.sqrt(2 / math.pi), 0.044715
    u = k0 * (x + k1 * x**3)
    one_plus_t = 2 / (1 + torch.exp(-2 * u))
    sech2 = 4 / (torch.exp(u) + torch.exp(-u)) ** 2
    y = 0.5 * x * one_plus_t
    dy = 0.5 * one_plus_t + 0.5 * x * sech2 * k0 * (1 + 3 * k1 * x**2)
    return y, dy


@needs_kernels
def test_gelu_forward_and_backward_match_the_formula_in_fp64(kernels_on) -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.cat([torch.linspace(-12, 12, 4001), torch.randn(3001, generator=g) * 3]).bfloat16()  # odd length
    y_ref, dy_ref = gelu_tanh_fp64(x)
    xg = x.clone().requires_grad_()
    y = gelu_tanh(xg)
    assert y.dtype == torch.bfloat16
    assert_within_one_ulp(y, y_ref)
    upstream = torch.randn(x.shape, generator=g).bfloat16()
    y.backward(upstream)
    assert_within_one_ulp(xg.grad, upstream.double() * dy_ref)
    # torch's kernel agrees to one ulp where its 1 + tanh does not cancel (x > -4)
    mild = x > -4
    torch_y = F.gelu(x, approximate="tanh")
    assert ((y.double() - torch_y.double()).abs() <= bf16_ulp(torch_y.double()))[mild].all()


@needs_kernels
def test_gelu_special_values(kernels_on) -> None:
    x = torch.tensor([0.0, -0.0, float("inf"), float("-inf"), float("nan"), 3e38, -3e38]).bfloat16()
    y = gelu_tanh(x)
    # as torch's: -inf gives NaN (0.5 x (1 + tanh u) is -inf x 0)
    assert y[:2].eq(0).all() and y[2] == float("inf") and y[3].isnan() and y[4].isnan()
    assert y[5] == x[5] and y[6] == 0


def test_gelu_falls_back_to_torch_where_the_kernels_do_not_apply(kernels_on) -> None:
    g = torch.Generator().manual_seed(4)
    x32 = torch.randn(64, 48, generator=g)
    assert torch.equal(gelu_tanh(x32), F.gelu(x32, approximate="tanh"))  # fp32: torch's op
    cpu_kernels.set_enabled(False)
    x16 = x32.bfloat16()
    assert torch.equal(gelu_tanh(x16), F.gelu(x16, approximate="tanh"))  # switched off
    assert "switched off" in cpu_kernels.status()


# --- building ---------------------------------------------------------------------------------------------
def test_no_compiler_is_one_line_reason(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("CC", "no-such-compiler-here")
    monkeypatch.setenv("LLM_WORKBENCH_CACHE", str(tmp_path))
    monkeypatch.setattr(build, "unsupported_reason", lambda: None)
    built = build.load()
    assert built.lib is None and built.reason == "no C compiler found (set CC, or install gcc)"
    assert not list(tmp_path.rglob("*.so"))


@pytest.mark.skipif(build.find_compiler() is None, reason="no C compiler")
def test_a_failed_build_names_the_file_and_leaves_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    broken = tmp_path / "bf16_kernels.c"
    broken.write_text("this is not C\n")
    monkeypatch.setattr(build, "SOURCES", [broken])
    monkeypatch.setattr(build, "unsupported_reason", lambda: None)
    monkeypatch.setenv("LLM_WORKBENCH_CACHE", str(tmp_path / "cache"))
    built = build.load()
    assert built.lib is None and "failed on bf16_kernels.c:" in built.reason and "\n" not in built.reason
    assert not list((tmp_path / "cache").rglob("*.so"))  # the temporary output is removed


@needs_kernels
def test_built_once_then_loaded_from_the_cache(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("LLM_WORKBENCH_CACHE", str(tmp_path))
    first, second = build.load(), build.load()
    assert first.lib is not None and first.reason.startswith("built with")
    assert second.lib is not None and second.reason.startswith("loaded from the cache")
    assert len(list(tmp_path.rglob("*.so"))) == 1


# --- the Trainer's setting --------------------------------------------------------------------------------
def _alarms(trainer) -> list[dict]:
    return [e for e in trainer.history if e["type"] == "alarm"]


@pytest.mark.skipif(not supports_bf16(torch.device("cpu")), reason="no bf16 arithmetic on this CPU")
def test_trainer_says_in_one_alarm_when_the_kernels_cannot_run(tmp_path, monkeypatch, kernels_on) -> None:
    monkeypatch.setattr(cpu_kernels, "_built", build.Built(None, "no C compiler found (set CC, or install gcc)"))
    monkeypatch.setattr(build, "unsupported_reason", lambda: None)  # a machine that could run them
    trainer = Trainer(tiny_config(tmp_path, bf16=True, max_steps=2))
    trainer.run()
    (alarm,) = [a for a in _alarms(trainer) if a["kind"] == "cpu_kernels"]
    assert alarm["message"] == ("CPU kernels unavailable: no C compiler found (set CC, or install gcc); "
                                "torch's ops run")
    assert trainer.state == "finished"


@needs_kernels
def test_trainer_setting_switches_the_kernels(tmp_path, kernels_on) -> None:
    off = Trainer(tiny_config(tmp_path, bf16=True, cpu_kernels=False, out=str(tmp_path / "off")))
    assert not cpu_kernels.enabled() and off.kernel_notice is None  # off by choice: no alarm
    on = Trainer(tiny_config(tmp_path, bf16=True, out=str(tmp_path / "on")))
    assert cpu_kernels.enabled() and on.kernel_notice is None
    assert on.config.to_dict()["cpu_kernels"] is True and off.config.to_dict()["cpu_kernels"] is False
    off.close()
    on.close()


PROMPT = [72, 101, 108, 108, 111]


# --- decoding (fp32) --------------------------------------------------------------------------------------
@needs_kernels
def test_row_max_min_matches_torch_and_flags_nan() -> None:
    g = torch.Generator().manual_seed(5)
    x = torch.randn(5, 1003, generator=g) * 7
    x[3, 500] = float("nan")
    got = decode.row_max_min(x)
    for i, (hi, lo) in enumerate(got):
        if i == 3:
            assert math.isnan(hi) and math.isnan(lo)
        else:
            assert hi == x[i].max().item() and lo == x[i].min().item()


@needs_kernels
def test_temperature_draw_equals_a_flat_inverse_cdf_in_fp64() -> None:
    """Each draw is the token a flat fp64 inverse CDF over exp((x - max) / T), written out here, picks for
    the same uniform: the kernel's fp32 exps and two-level sums change the CDF by about 1e-7 of the total,
    so a uniform would have to land that close to a boundary to tell them apart."""
    g = torch.Generator().manual_seed(6)
    B, V, T = 5, 5000, 0.7  # 5 blocks, the last one short
    x = torch.randn(B, V, generator=g) * 3
    x[:, 1024:3000] = float("-inf")  # whole zero-weight blocks
    x[2, :] = float("-inf")
    x[2, 4999] = 0.0  # the last token only
    tops = x.amax(1).tolist()
    weights = torch.exp((x.double() - x.double().amax(1, keepdim=True)) / T)  # (B, V) fp64
    cdf = weights.cumsum(1)
    rng = random.Random(0)
    for _ in range(100):
        u = [rng.random() for _ in range(B)]
        want = torch.searchsorted(cdf, (torch.tensor(u, dtype=torch.float64) * cdf[:, -1])[:, None], right=True)
        got = decode.temperature_draw(x, list(range(B)), tops, T, u)
        assert got == want.squeeze(1).tolist()
    # a subset of rows, in any order; a uniform just below 1 takes the last positive token
    assert decode.temperature_draw(x, [2, 0], [tops[2], tops[0]], T, [0.999999, 0.0]) == [4999, int(weights[0].gt(0).nonzero()[0])]


@needs_kernels
def test_temperature_draw_refuses_wrong_inputs() -> None:
    x = torch.zeros(2, 10)
    with pytest.raises(ValueError, match="2 rows in \\[0, 2\\)|rows in \\[0, 2\\)"):
        decode.temperature_draw(x, [0, 2], [0.0, 0.0], 1.0, [0.5, 0.5])
    with pytest.raises(ValueError, match="temperature must be positive"):
        decode.temperature_draw(x, [0], [0.0], 0.0, [0.5])
    with pytest.raises(ValueError, match="fp32 CPU tensor"):
        decode.temperature_draw(x.double(), [0], [0.0], 1.0, [0.5])


@needs_kernels
@pytest.mark.parametrize("D", [16, 64, 128])
def test_one_query_attention_writes_the_cache_and_equals_sdpa(D) -> None:
    g = torch.Generator().manual_seed(7)
    rows, H, max_len, B, pos = 3, 4, 40, 2, 25
    keys = torch.randn(rows, H, max_len, D, generator=g)
    values = torch.randn(rows, H, max_len, D, generator=g)
    qkv = torch.randn(B, 3, H, 1, D, generator=g)  # the Engine's step views q, k, v in one output
    q, k, v = qkv[:, 0], qkv[:, 1], qkv[:, 2]
    before_k, before_v = keys.clone(), values.clone()
    assert decode.attention_applies(q, k, v, keys, values)
    out = decode.one_query_attention(q, k, v, keys, values, pos)
    assert torch.equal(keys[:B, :, pos:pos + 1], k) and torch.equal(values[:B, :, pos:pos + 1], v)
    written = torch.zeros_like(keys, dtype=torch.bool)
    written[:B, :, pos] = True
    assert torch.equal(keys[~written], before_k[~written]) and torch.equal(values[~written], before_v[~written])
    # softmax(q K^T / sqrt(D)) V over positions 0..pos, in fp64
    scores = (q.double() @ keys[:B, :, : pos + 1].double().transpose(-1, -2)) / math.sqrt(D)
    want = torch.softmax(scores, -1) @ values[:B, :, : pos + 1].double()
    torch.testing.assert_close(out.double(), want, rtol=1e-5, atol=1e-6)


@needs_kernels
def test_one_query_attention_refuses_what_it_cannot_take() -> None:
    q = torch.randn(1, 2, 1, 24)  # head dim not a multiple of 16
    cache = torch.zeros(1, 2, 8, 24)
    assert not decode.attention_applies(q, q, q, cache, cache)
    with pytest.raises(ValueError, match="head dim a multiple of 16"):
        decode.one_query_attention(q, q, q, cache, cache.clone(), 3)
    q = torch.randn(1, 2, 1, 16)
    cache = torch.zeros(1, 2, 8, 16)
    with pytest.raises(ValueError, match="position 8 .* do not fit"):
        decode.one_query_attention(q, q, q, cache, cache.clone(), 8)


@needs_kernels
@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_engine_tokens_are_the_same_with_the_kernels_on_and_off(kernels_on, temperature) -> None:
    """Greedy and seeded temperature sampling, batch 1 and 4 rows: the kernels change no token."""
    model = tiny_model(context_length=32, seed=2, dtype=torch.float32)
    params = SamplingParams(temperature=temperature, seed=5, stop_ids=())
    runs = []
    for on in (True, False):
        cpu_kernels.set_enabled(on)
        engine = Engine(model, ByteTokenizer())
        one = engine.generate_ids(PROMPT, 20, params)
        rows = [s for batch in engine.sample_batch(PROMPT, 4, 20, params) for s in batch]
        runs.append((one, sorted(rows)))
    assert runs[0] == runs[1]


def test_engine_notices_say_when_a_capable_machine_cannot_build_them(monkeypatch, kernels_on) -> None:
    monkeypatch.setattr(cpu_kernels, "_built", build.Built(None, "no C compiler found (set CC, or install gcc)"))
    monkeypatch.setattr(build, "unsupported_reason", lambda: None)
    engine = Engine(tiny_model(seed=3, dtype=torch.float32), ByteTokenizer())
    assert engine.notices == ["CPU kernels unavailable: no C compiler found (set CC, or install gcc); torch's ops run"]
    assert len(engine.generate_ids(PROMPT, 5, SamplingParams(temperature=0.9, seed=1, stop_ids=()))) == 5
    monkeypatch.setattr(build, "unsupported_reason", lambda: "the CPU lacks AVX-512 (torch reports AVX2)")
    assert Engine(tiny_model(seed=3, dtype=torch.float32), ByteTokenizer()).notices == []  # nothing to miss there


def test_switched_restores_the_switch_as_it_was(kernels_on) -> None:
    cpu_kernels.set_enabled(False)
    with cpu_kernels.switched(True):
        assert cpu_kernels._switch["on"] is True
    assert cpu_kernels._switch["on"] is False
    with pytest.raises(RuntimeError, match="inside"):
        with cpu_kernels.switched(True):
            raise RuntimeError("inside")
    assert cpu_kernels._switch["on"] is False


def test_the_environment_keeps_them_off(monkeypatch, kernels_on) -> None:
    monkeypatch.setenv("LLM_WORKBENCH_CPU_KERNELS", "0")
    cpu_kernels.set_enabled(True)  # what a Trainer with cpu_kernels=true does
    assert not cpu_kernels.enabled() and "switched off" in cpu_kernels.status()
    monkeypatch.setenv("LLM_WORKBENCH_CPU_KERNELS", "1")
    cpu_kernels.set_enabled(True)
    assert cpu_kernels._switch["on"] is True
