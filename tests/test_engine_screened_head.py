"""The bf16 screen of the head (`llm_core.engine.screened_head`) and the rules that read it.

What must hold: greedy picks the fp32 head's argmax, also among ties bf16 cannot see; sampling at a
temperature draws from the fp32 head's softmax (rejection sampling, checked on 20,000 draws from a screen
planted off the fp32 logits); each row samples the same in any batch; the step falls back to the fp32 head
where the screen cannot answer. The bound it rests on is checked against fp64 logits computed here, with the
constants written out. The unit tests run wherever oneDNN packs bf16 (oneDNN emulates bf16 on CPUs without
it, so `supports_bf16` is patched to True there); the Engine tests need bf16 in hardware, where the Engine
uses the screen.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from engine_fakes import ByteTokenizer, tiny_model
from test_engine_cache import PROMPT, reference_greedy
from llm_core import Engine
from llm_core.device import has_onednn_linear, supports_bf16
from llm_core.engine import SamplingParams
from llm_core.engine import screened_head
from llm_core.engine.fast import FastPaths
from llm_core.engine.sampling import draw_screened, seeded_generators
from llm_core.engine.screened_head import ScreenedHead, ScreenedLogits
from llm_core.onednn_linear import onednn_matmul, pack_weight

pytestmark = pytest.mark.skipif(not has_onednn_linear(), reason="this torch build has no oneDNN packed linear")
HAS_BF16 = supports_bf16(torch.device("cpu"))
NO_STOP = SamplingParams(stop_ids=())


@pytest.fixture
def bf16_anywhere(monkeypatch):
    """The screen for the small heads here too (it pays from SCREEN_MIN_ELEMENTS), on any CPU."""
    monkeypatch.setattr(screened_head, "supports_bf16", lambda device: True)
    monkeypatch.setattr(screened_head, "SCREEN_MIN_ELEMENTS", 0)


def head_of(weight: torch.Tensor) -> nn.Linear:
    head = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    with torch.no_grad():
        head.weight.copy_(weight)
    return head


def random_weight(V: int, C: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(V, C, generator=g) * scale


def test_the_bound_holds_for_every_logit(bf16_anywhere):
    """|W_j . h - a_j| <= R ||h|| + S (||h - hb|| + 2 gamma_K ||hb||) + 2^-6 |a_j|, with a = bf16(W) bf16(h)
    from the kernel and the norms in fp64 here."""
    V, C = 3000, 96
    for seed, scale in ((0, 0.02), (1, 1.0), (2, 30.0)):
        w = random_weight(V, C, seed, scale)
        h = torch.randn(4, C, generator=torch.Generator().manual_seed(seed + 10)) * 5
        wb, hb = w.bfloat16(), h.bfloat16()
        a = onednn_matmul(hb, pack_weight(wb)).double()  # (4, V): the screen's kernel
        exact = h.double() @ w.double().t()  # (4, V)
        R = (w.double() - wb.double()).norm(dim=1).max()
        S = wb.double().norm(dim=1).max()
        gamma = C * 2.0 ** -24 / (1 - C * 2.0 ** -24)
        h64, hb64 = h.double(), hb.double()
        c = R * h64.norm(dim=1) + S * ((h64 - hb64).norm(dim=1) + 2 * gamma * hb64.norm(dim=1))
        err = (exact - a).abs()
        assert (err <= c[:, None] + 2.0 ** -6 * a.abs()).all()
        assert err.max() > 0  # the screen is not exact: the check has something to do


def screen_of(screen: ScreenedHead, head: nn.Linear, h: torch.Tensor) -> ScreenedLogits | None:
    return screen(head, h, lambda: h @ head.weight.t())


def test_argmax_is_the_fp32_heads_among_ties_bf16_cannot_see(bf16_anywhere):
    """Ten rows equal in bf16, apart in fp32's low bits: bf16 alone picks the first of them; the screen
    recomputes all ten and picks the planted winner."""
    V, C = 2000, 64
    w = random_weight(V, C, 3)
    h = torch.randn(1, C, generator=torch.Generator().manual_seed(4))
    base = (h[0] / h[0].norm()) * 8.0  # a row whose logit beats every random row's
    base = base.bfloat16().float()
    tied = list(range(100, 110))
    for j in tied:
        w[j] = base * (1 + 2.0 ** -12) if j == 106 else base  # 2^-12 of itself: below bf16's half-ulp
    assert len({tuple(w[j].bfloat16().float().tolist()) for j in tied}) == 1  # bf16 sees ten equal rows
    head = head_of(w)
    fp32 = (h.double() @ head.weight.double().t())[0]
    assert int(fp32.argmax()) == 106
    bf16_only = (h.bfloat16().float() @ head.weight.bfloat16().float().t())[0]
    assert int(bf16_only.argmax()) != 106  # a screen without the fp32 check gets it wrong

    screen = ScreenedHead()
    assert screen_of(screen, head, h).argmax().tolist() == [106]
    assert screen.candidates >= len(tied) and screen.steps == 1


@pytest.mark.parametrize("rows", [1, 3])
def test_argmax_is_the_fp32_heads_from_a_handful_of_candidates(bf16_anywhere, rows):
    V, C = 4096, 128
    head = head_of(random_weight(V, C, 5, scale=0.3))
    screen = ScreenedHead()
    for seed in range(20):
        h = torch.randn(rows, C, generator=torch.Generator().manual_seed(seed)) * 3
        exact = h.double() @ head.weight.double().t()  # (rows, V)
        assert torch.equal(screen_of(screen, head, h).argmax(), exact.argmax(dim=1))
    assert screen.steps == 20 and screen.fallbacks == 0
    assert 20 * rows <= screen.candidates < 20 * rows * 10  # a handful per row, not the vocabulary


def test_near_uniform_logits_and_non_finite_features_fall_back(bf16_anywhere):
    head = head_of(random_weight(1000, 32, 6))
    screen = ScreenedHead()
    zeros = torch.zeros(1, 32)  # every logit 0: every token a candidate
    assert screen_of(screen, head, zeros).argmax().tolist() == [0]  # the fp32 head's argmax
    h = torch.randn(1, 32)
    h[0, 3] = float("nan")
    screen_of(screen, head, h).argmax()
    assert screen.fallbacks == 2 and screen.steps == 0


def test_the_screen_applies_only_to_a_plain_bias_free_fp32_head(bf16_anywhere):
    w = random_weight(500, 16, 7)
    h = torch.randn(1, 16)
    screen = ScreenedHead()
    assert screen_of(screen, head_of(w).double(), h.double()) is None
    assert screen_of(screen, nn.Linear(16, 500), h) is None  # biased
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert screen_of(screen, head_of(w), h) is None
    assert screen_of(screen, head_of(w), h) is not None


def test_a_head_that_stays_in_cache_is_not_screened(monkeypatch):
    monkeypatch.setattr(screened_head, "supports_bf16", lambda device: True)
    h = torch.randn(1, 8)
    small = head_of(random_weight(screened_head.SCREEN_MIN_ELEMENTS // 8 - 1, 8, 10))
    assert screen_of(ScreenedHead(), small, h) is None
    large = head_of(random_weight(screened_head.SCREEN_MIN_ELEMENTS // 8, 8, 10))
    assert screen_of(ScreenedHead(), large, h) is not None


def test_the_copy_follows_weight_updates(bf16_anywhere):
    head = head_of(random_weight(800, 32, 8))
    h = torch.randn(1, 32, generator=torch.Generator().manual_seed(9))
    screen = ScreenedHead()
    first = int(screen_of(screen, head, h).argmax())
    assert float(h[0] @ head.weight[first].detach()) > 0
    with torch.no_grad():
        head.weight[first].neg_()  # in place: the old winner (a positive logit) becomes the lowest
    second = int(screen_of(screen, head, h).argmax())
    assert second != first and second == int((h @ head.weight.t()).argmax())


def planted_screen(n: int, offsets: list[float], c: float) -> tuple[ScreenedLogits, torch.Tensor]:
    """n rows of one 8-token head whose screen is off by `offsets` (within the envelope c + 2^-6 |a|):
    the rejection sampler must undo them. -> the screened logits and the fp32 logits x (8,)."""
    g = torch.Generator().manual_seed(11)
    weight = torch.randn(8, 4, generator=g)
    h = torch.randn(1, 4, generator=g).expand(n, -1)
    x = (h[0] @ weight.t()).float()  # (8,)
    values = (x + torch.tensor(offsets)).bfloat16().float().expand(n, -1)  # within c of x, then bf16
    full = lambda: x.expand(n, -1)  # noqa: E731
    return ScreenedLogits(values, [c] * n, h, weight, full, ScreenedHead()), x


def test_rejection_sampling_draws_from_the_fp32_distribution():
    """20,000 rows, one draw each, from a screen planted 0.1 off the fp32 logits: the frequencies match
    softmax(x / T), where drawing from the screen alone would not (both checked at 4.5 standard errors)."""
    n, T = 20000, 0.9
    offsets = [0.1, -0.1, 0.1, -0.1, 0.05, -0.05, 0.0, 0.1]
    screened, x = planted_screen(n, offsets, c=0.1)
    tokens = draw_screened(screened, T, seeded_generators(list(range(n)), torch.device("cpu")))
    freq = torch.bincount(tokens, minlength=8).double() / n
    p = torch.softmax(x.double() / T, 0)  # what the fp32 head samples
    q = torch.softmax(screened.values[0].double() / T, 0)  # what the screen alone samples
    se = (p * (1 - p) / n).sqrt()
    assert ((freq - p).abs() < 4.5 * se).all(), (freq, p)
    assert ((q - p).abs() > 4.5 * se).any()  # the planted offsets are visible at this n
    assert screened.stats.steps == 1 and screened.stats.candidates > n  # some draws were rejected


def test_rejection_sampling_is_per_row_deterministic_and_falls_back_when_too_wide():
    screened, x = planted_screen(6, [0.1, -0.1, 0.1, -0.1, 0.05, -0.05, 0.0, 0.1], c=0.1)
    gens = lambda seeds: seeded_generators(seeds, torch.device("cpu"))  # noqa: E731
    batch = draw_screened(screened, 1.0, gens([7, 8, 9, 10, 11, 12]))
    one, _ = planted_screen(1, [0.1, -0.1, 0.1, -0.1, 0.05, -0.05, 0.0, 0.1], c=0.1)
    assert int(draw_screened(one, 1.0, gens([9]))) == int(batch[2])  # row 2 alone draws what it drew
    wide, _ = planted_screen(6, [0.0] * 8, c=1.0)  # E / T = 1 > MAX_ENVELOPE_OVER_T: the fp32 head
    draw_screened(wide, 1.0, gens([1, 2, 3, 4, 5, 6]))
    assert wide.stats.fallbacks == 1 and wide.stats.steps == 0


@pytest.mark.skipif(not HAS_BF16, reason="this CPU has no bf16 arithmetic: the Engine does not screen")
def test_engine_greedy_screens_and_gives_the_fp32_tokens(monkeypatch):
    monkeypatch.setattr(screened_head, "SCREEN_MIN_ELEMENTS", 0)
    model = tiny_model(context_length=16, dtype=torch.float32)
    engine = Engine(model, ByteTokenizer())
    got = engine.generate_ids(PROMPT, 25, SamplingParams(window=16, stop_ids=()))
    assert got == reference_greedy(model, PROMPT, 25, 16)
    assert got == Engine(model, ByteTokenizer(), FastPaths(screen=False)).generate_ids(PROMPT, 25, NO_STOP)
    info = engine.decoder.describe()
    assert info["screened_steps"] == info["screened_rows"] == 25  # the prefill and 24 steps
    assert info["screen_fallbacks"] == 0
    assert info["screen_copy_bytes"] == model.lm_head.weight.numel() * 2  # bf16
    stats = engine.last_stats  # what the CLI and TUI report under an answer
    assert stats.screened_steps == 25 and stats.screen_fp32_logits == info["screen_candidates"] >= 25
    rows = engine.sample_ids(PROMPT, 3, 6, SamplingParams(temperature=0.0, stop_ids=()))
    assert [ids for ids, _ in rows] == [got[:6]] * 3  # batched greedy rows screen too
    assert engine.decoder.describe()["screened_steps"] == 31


@pytest.mark.skipif(not HAS_BF16, reason="this CPU has no bf16 arithmetic: the Engine does not screen")
def test_engine_sampling_screens_and_a_batch_row_is_its_seeded_single_sample(monkeypatch):
    from llm_core.engine import derive_seed

    monkeypatch.setattr(screened_head, "SCREEN_MIN_ELEMENTS", 0)
    model = tiny_model(context_length=32, seed=9, dtype=torch.float32)
    engine = Engine(model, ByteTokenizer())
    params = SamplingParams(temperature=0.9, seed=5, stop_ids=())
    got = engine.sample_ids(PROMPT, 4, 12, params)
    info = engine.decoder.describe()
    assert info["screened_steps"] == 12 and info["screened_rows"] == 4 * 12  # prefill + 11 steps, 4 rows
    assert info["screen_candidates"] >= 4 * 12  # a draw a row, and any redraws
    for i, (ids, _) in enumerate(got):
        assert ids == engine.generate_ids(PROMPT, 12, params.replace(seed=derive_seed(5, i)))
    assert engine.decoder.describe()["screened_steps"] == 12 + 4 * 12


@pytest.mark.skipif(not HAS_BF16, reason="this CPU has no bf16 arithmetic: the Engine does not screen")
def test_filtered_sampling_beams_and_switched_off_paths_run_the_fp32_head(monkeypatch):
    monkeypatch.setattr(screened_head, "SCREEN_MIN_ELEMENTS", 0)
    model = tiny_model(context_length=16, dtype=torch.float32)
    engine = Engine(model, ByteTokenizer())
    for params in (SamplingParams(temperature=0.9, top_k=5, seed=3, stop_ids=()),
                   SamplingParams(temperature=0.9, top_p=0.8, seed=3, stop_ids=())):
        sampled = engine.generate_ids(PROMPT, 10, params)
        assert sampled == Engine(model, ByteTokenizer(), FastPaths(screen=False)).generate_ids(PROMPT, 10, params)
    engine.beam_search(PROMPT, 2, 5)
    assert engine.decoder.describe()["screened_steps"] == 0
    off = Engine(model, ByteTokenizer(), FastPaths(screen=False))
    off.generate_ids(PROMPT, 5, NO_STOP)
    off.generate_ids(PROMPT, 5, SamplingParams(temperature=0.9, seed=3, stop_ids=()))
    assert off.decoder.describe()["screened_steps"] == 0


@pytest.mark.skipif(not HAS_BF16, reason="this CPU has no bf16 arithmetic: the Engine does not screen")
def test_workbench_chat_greedy_screens_and_answers_as_the_fp32_head(monkeypatch, tmp_path):
    from types import SimpleNamespace

    from typer.testing import CliRunner

    from workbench.cli import app
    from workbench.commands import chat as chat_cmd

    monkeypatch.setattr(screened_head, "SCREEN_MIN_ELEMENTS", 0)
    loaded = SimpleNamespace(model=tiny_model(context_length=32, seed=5, dtype=torch.float32),
                             tokenizer=ByteTokenizer(), path=tmp_path / "step-00000007", step=7)
    loaded.path.mkdir()
    monkeypatch.setattr(chat_cmd, "_load", lambda path: loaded)
    calls = []
    real = ScreenedHead.__call__
    monkeypatch.setattr(ScreenedHead, "__call__", lambda self, *a: calls.append(1) or real(self, *a))
    out = CliRunner().invoke(app, ["chat", "-c", "x", "--max-new-tokens", "6"], input="hello\n")
    assert out.exit_code == 0, out.output
    assert len(calls) == 6  # the prefill and five steps
    monkeypatch.setattr(screened_head, "supports_bf16", lambda device: False)  # the fp32 head throughout
    unscreened = CliRunner().invoke(app, ["chat", "-c", "x", "--max-new-tokens", "6"], input="hello\n")
    assert unscreened.output == out.output
