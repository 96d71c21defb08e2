"""Sampling: top-k / top-p against an independent computation, seeds, batched = independent, bad input."""
from __future__ import annotations

import math
import random

import pytest
import torch

from engine_fakes import ByteTokenizer, tiny_model
from llm_core.engine import SamplingParams
from llm_core import Engine, GenerationError
from llm_core.engine import derive_seed, filter_top_k, filter_top_p, next_token_probs
from llm_core.engine.sampling import seeded_generators

NO_STOP = SamplingParams(stop_ids=())  # greedy, never stopping early

PROMPT = [72, 101, 108, 108, 111]


@pytest.fixture(scope="module")
def model():
    return tiny_model(context_length=16, seed=1, dtype=torch.float32)


def _random_logits(rows=4, vocab=12, seed=0) -> torch.Tensor:
    rng = random.Random(seed)
    return torch.tensor([[rng.gauss(0, 2) for _ in range(vocab)] for _ in range(rows)], dtype=torch.float64)


@pytest.mark.parametrize("k", [1, 3, 7, 12])
def test_top_k_matches_independent(k):
    logits = _random_logits()
    got = filter_top_k(logits, k)
    for row, out in zip(logits.tolist(), got.tolist()):
        kept = sorted(range(len(row)), key=lambda i: -row[i])[:k]
        for i, value in enumerate(out):
            assert value == (row[i] if i in kept else -math.inf)


@pytest.mark.parametrize("p", [0.05, 0.3, 0.6, 0.9, 0.999])
def test_top_p_matches_independent(p):
    logits = _random_logits(seed=3)
    got = filter_top_p(logits, p)
    for row, out in zip(logits.tolist(), got.tolist()):
        z = sum(math.exp(x) for x in row)
        probs = [math.exp(x) / z for x in row]
        kept, mass = set(), 0.0
        for i in sorted(range(len(row)), key=lambda i: -probs[i]):
            kept.add(i)
            mass += probs[i]
            if mass >= p:
                break
        assert {i for i, v in enumerate(out) if v != -math.inf} == kept


def test_temperature_top_k_top_p_distribution():
    logits = _random_logits(rows=1, seed=5)
    t, k, p = 0.7, 5, 0.8
    row = [x / t for x in logits[0].tolist()]
    top = sorted(range(len(row)), key=lambda i: -row[i])[:k]
    z = sum(math.exp(row[i]) for i in top)
    probs = {i: math.exp(row[i]) / z for i in top}
    kept, mass = [], 0.0
    for i in top:
        kept.append(i)
        mass += probs[i]
        if mass >= p:
            break
    zk = sum(probs[i] for i in kept)
    expected = [probs[i] / zk if i in kept else 0.0 for i in range(len(row))]
    got = next_token_probs(logits, t, k, p)[0].tolist()
    assert got == pytest.approx(expected, abs=1e-6)


def test_seeds_reproducible(model):
    engine = Engine(model, ByteTokenizer())
    a = engine.generate_ids(PROMPT, 12, SamplingParams(temperature=1.0, seed=5, stop_ids=()))
    b = engine.generate_ids(PROMPT, 12, SamplingParams(temperature=1.0, seed=5, stop_ids=()))
    c = engine.generate_ids(PROMPT, 12, SamplingParams(temperature=1.0, seed=6, stop_ids=()))
    assert a == b and a != c


def test_top_k_above_vocab_is_clamped(model):
    engine = Engine(model, ByteTokenizer())
    a = engine.generate_ids(PROMPT, 8, SamplingParams(temperature=1.0, top_k=10**6, seed=2, stop_ids=()))
    b = engine.generate_ids(PROMPT, 8, SamplingParams(temperature=1.0, seed=2, stop_ids=()))
    assert a == b


def test_top_k_one_is_greedy(model):
    engine = Engine(model, ByteTokenizer())
    a = engine.generate_ids(PROMPT, 8, SamplingParams(temperature=1.3, top_k=1, seed=2, stop_ids=()))
    assert a == engine.generate_ids(PROMPT, 8, NO_STOP)


def test_batched_samples_equal_independent_seeded_samples(model):
    engine = Engine(model, ByteTokenizer())
    n, seed = 4, 11
    params = SamplingParams(temperature=1.0, seed=seed, stop_ids=())
    finished = [s for batch in engine.sample_batch(PROMPT, n, 10, params) for s in batch]
    assert engine.last_stats.prefilled_tokens == len(PROMPT)  # one prefill for all rows
    batched_ids = [row[len(PROMPT) :] for row in engine._rows]
    assert sorted(i for i, _, _ in finished) == list(range(n))
    solo = Engine(model, ByteTokenizer())
    for i in range(n):
        ids = solo.generate_ids(PROMPT, 10, SamplingParams(temperature=1.0, seed=derive_seed(seed, i), stop_ids=()))
        assert batched_ids[i] == ids
        assert dict((j, t) for j, t, _ in finished)[i] == ByteTokenizer().decode(ids)
    assert len({tuple(r) for r in batched_ids}) > 1  # the rows really differ


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(temperature=-0.5), "temperature"),
        (dict(temperature=float("nan")), "temperature"),
        (dict(temperature=1.0, top_p=0.0), "top_p"),
        (dict(temperature=1.0, top_p=1.01), "top_p"),
        (dict(temperature=1.0, top_k=0), "top_k"),
        (dict(window=0), "window"),
    ],
)
def test_bad_sampling_arguments(model, kwargs, match):
    engine = Engine(model, ByteTokenizer())
    with pytest.raises(GenerationError, match=match):
        engine.generate_ids(PROMPT, 3, SamplingParams(**kwargs))


def test_bad_prompts_and_counts(model):
    engine = Engine(model, ByteTokenizer())
    with pytest.raises(GenerationError, match="empty"):
        engine.stream("")  # validated eagerly, before the first piece
    with pytest.raises(GenerationError, match="empty"):
        engine.generate_ids([], 3)
    with pytest.raises(GenerationError, match="n: must be an integer >= 1"):
        engine.majority_vote("hi", 0)
    with pytest.raises(GenerationError, match="40 tokens, longer than the context length 16"):
        engine.stream("x" * 40)
    assert engine.generate_ids(PROMPT, 0) == []


@pytest.mark.parametrize("kwargs,field", [
    (dict(temperature=True), "temperature"), (dict(top_k=2.5), "top_k"), (dict(seed="x"), "seed"),
    (dict(window=-3), "window"), (dict(truncate="yes"), "truncate"), (dict(stop=[1]), "stop"),
    (dict(stop_ids=[-1]), "stop_ids"), (dict(stop_ids="ab"), "stop_ids"),
])
def test_sampling_params_are_validated_once_with_one_line_errors(kwargs, field):
    with pytest.raises(GenerationError, match=f"^{field}: ") as info:
        SamplingParams(**kwargs)
    assert "\n" not in str(info.value)


def test_sampling_params_are_immutable_values():
    params = SamplingParams(stop=["\n###"], stop_ids=range(3))
    assert params.stop == ("\n###",) and params.stop_ids == (0, 1, 2)  # lists and ranges become tuples
    assert SamplingParams(stop="END").stop == ("END",)
    assert params.replace(temperature=0.5).temperature == 0.5 and params.temperature == 0.0
    with pytest.raises(GenerationError, match="top_p"):
        params.replace(top_p=2.0)  # a copy is validated too
    assert SamplingParams(top_k=10**6).top_k_for(257) == 257


def test_majority_vote_takes_token_ids_as_well_as_text(model):
    tok = ByteTokenizer()
    params = SamplingParams(temperature=1.0, seed=4, stop_ids=())
    by_text = Engine(model, tok).majority_vote("abc", 3, 5, params, extractor=len, early_stop=False)
    by_ids = Engine(model, tok).majority_vote(tok.encode("abc"), 3, 5, params, extractor=len, early_stop=False)
    assert [s.text for s in by_ids.samples] == [s.text for s in by_text.samples]


def test_draw_follows_the_distribution_and_never_picks_a_zero_probability_token():
    from llm_core.engine.sampling import draw

    probs = torch.tensor([[0.5, 0.0, 0.3, 0.15, 0.05], [0.0, 0.0, 0.0, 1.0, 0.0]])
    gens = seeded_generators([11, 12], torch.device("cpu"))
    counts = torch.zeros(2, 5)
    n = 20000
    for _ in range(n):
        picks = draw(probs, gens)
        counts[0, picks[0]] += 1
        counts[1, picks[1]] += 1
    assert counts[0, 1] == 0 and counts[1, 3] == n
    # binomial standard error at n = 20000 is <= 0.0036: 4 of them
    assert torch.allclose(counts[0] / n, probs[0], atol=0.015)
    again = seeded_generators([11, 12], torch.device("cpu"))
    first = [draw(probs, again).tolist() for _ in range(5)]
    again = seeded_generators([11, 12], torch.device("cpu"))
    assert first == [draw(probs, again).tolist() for _ in range(5)]  # seeded: reproducible


def draws_equal_to_a_flat_inverse_cdf(weights: torch.Tensor, n: int):
    """`draw` n times from row-seeded generators; each draw must equal a flat fp64 inverse CDF fed the same
    uniforms (replayed from the generators' states). Yields each draw (B,) for more checks."""
    from llm_core.engine.sampling import draw

    gens = seeded_generators(list(range(weights.shape[0])), torch.device("cpu"))
    for _ in range(n):
        states = [x.get_state() for x in gens]
        got = draw(weights, gens)
        u = torch.cat([torch.rand(1, generator=torch.Generator().set_state(s), dtype=torch.float64) for s in states])
        cdf = weights.double().cumsum(-1)
        want = torch.searchsorted(cdf, (u * cdf[:, -1])[:, None], right=True).squeeze(1)
        assert torch.equal(got, want)
        yield got


def test_two_level_draw_equals_a_flat_inverse_cdf_over_many_blocks():
    g = torch.Generator().manual_seed(3)
    probs = torch.rand(6, 5000, generator=g) ** 4
    probs[:, 1024:3000] = 0.0  # whole zero blocks
    probs[2, :] = 0.0
    probs[2, 4999] = 1.0  # the last token only
    probs = probs / probs.sum(-1, keepdim=True)
    for got in draws_equal_to_a_flat_inverse_cdf(probs, 200):
        assert bool((probs[torch.arange(6), got] > 0).all())


def test_temperature_weights_are_the_unnormalised_softmax_and_leave_the_logits_alone():
    from llm_core.engine.sampling import temperature_weights

    g = torch.Generator().manual_seed(4)
    logits = torch.randn(3, 700, generator=g) * 5
    before = logits.clone()
    for out in (None, torch.empty(3, 700)):
        w = temperature_weights(logits, 0.7, out)
        assert out is None or w.data_ptr() == out.data_ptr()  # written into the buffer it was given
        want = torch.exp((logits.double() - logits.double().amax(-1, keepdim=True)) / 0.7)  # written out
        torch.testing.assert_close(w.double(), want, atol=0, rtol=1e-5)
        torch.testing.assert_close(w / w.sum(-1, keepdim=True), torch.softmax(logits / 0.7, -1), atol=1e-7, rtol=1e-5)
    assert torch.equal(logits, before)  # the caller's logits are never written
    bf16 = logits.bfloat16()
    assert temperature_weights(bf16, 1.0).dtype == torch.float32 and torch.equal(bf16, logits.bfloat16())


@pytest.mark.parametrize("V", [700, 1024, 5000])  # shorter than a block, exactly one, a short last block
def test_draw_takes_unnormalised_weights_and_matches_a_flat_inverse_cdf(V):
    g = torch.Generator().manual_seed(V)
    weights = torch.rand(4, V, generator=g) ** 4 * 37.0  # not normalised
    weights[1, : V // 2] = 0.0
    weights[3, :] = 0.0
    weights[3, V - 1] = 2.5  # the last token only
    for got in draws_equal_to_a_flat_inverse_cdf(weights, 100):
        assert bool((weights[torch.arange(4), got] > 0).all()) and got[3] == V - 1


@pytest.mark.parametrize("top_k, top_p", [(None, None), (64, None), (500, None), (None, 1.0), (64, 1.0)])
def test_filters_that_keep_every_token_draw_as_plain_temperature_sampling(top_k, top_p):
    from llm_core.engine.sampling import draw, sample_next, temperature_weights

    g = torch.Generator().manual_seed(5)
    logits = torch.randn(3, 64, generator=g) * 2  # V = 64: top_k 64 and 500 keep every token
    got = sample_next(logits, 0.7, top_k, top_p, seeded_generators([1, 2, 3], torch.device("cpu")))
    want = draw(temperature_weights(logits, 0.7), seeded_generators([1, 2, 3], torch.device("cpu")))
    assert torch.equal(got, want)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_greedy_picks_the_first_largest_logit_in_every_dtype(dtype):
    """Half logits are upcast before argmax (faster on the CPU, and exact); fp64 stays fp64. Ties, which
    rounding to half precision makes common, go to the lowest id, as torch.argmax documents."""
    from llm_core.engine.sampling import sample_next

    logits = torch.tensor([[0.5, 2.0, 2.0, -1.0], [3.0, 1.0, 3.0, 3.0]], dtype=dtype)
    assert sample_next(logits, 0.0, None, None, []).tolist() == [1, 0]
    close = torch.tensor([[1.0, 1.0 + 1e-12, 0.0]], dtype=dtype)  # fp64 tells these apart; halves do not
    assert sample_next(close, 0.0, None, None, []).tolist() == ([1] if dtype == torch.float64 else [0])
