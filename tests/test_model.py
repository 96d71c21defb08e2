import pytest
import torch

from llm_core import GPT, GPTConfig
from llm_core.errors import ConfigError


def tiny_config(**kw) -> GPTConfig:
    return GPTConfig(**{**dict(vocab_size=64, context_length=16, d_model=32, n_layers=2, n_heads=4), **kw})


def test_forward_shape():
    model = GPT(tiny_config())
    idx = torch.randint(0, 64, (3, 10))
    assert model(idx).shape == (3, 10, 64)


def test_causal_future_tokens_do_not_change_past_logits():
    torch.manual_seed(0)
    model = GPT(tiny_config()).eval()
    idx = torch.randint(0, 64, (1, 12))
    changed = idx.clone()
    changed[0, 8:] = (changed[0, 8:] + 1) % 64
    torch.testing.assert_close(model(idx)[:, :8], model(changed)[:, :8])


def test_tied_head_counts_once_and_untied_adds_a_matrix():
    tied, untied = GPT(tiny_config()), GPT(tiny_config(tie_weights=False))
    assert tied.lm_head.weight is tied.tok_emb.weight
    assert untied.num_parameters() - tied.num_parameters() == 64 * 32


def test_parameter_count_matches_formula():
    cfg = tiny_config()
    C, V, T, L = 32, 64, 16, 2
    per_block = 2 * 2 * C + (C * 3 * C + 3 * C) + (C * C + C) + (C * 4 * C + 4 * C) + (4 * C * C + C)
    expected = V * C + T * C + L * per_block + 2 * C
    model = GPT(cfg)
    assert model.num_parameters() == expected
    for p in model.blocks[0].parameters():
        p.requires_grad_(False)
    assert model.num_parameters(trainable_only=True) == expected - per_block


def test_flops_per_token_is_six_n_plus_attention():
    cfg = tiny_config()
    model = GPT(cfg)
    n = model.num_parameters() - 16 * 32  # position embeddings are not matmuls
    assert model.flops_per_token() == 3 * (2 * n + 2 * 2 * 16 * 32)


def test_sequence_longer_than_context_is_refused():
    with pytest.raises(ValueError, match="longer than the context length 16"):
        GPT(tiny_config())(torch.zeros(1, 17, dtype=torch.long))


@pytest.mark.parametrize(
    "kw,match",
    [(dict(d_model=30), "not divisible"), (dict(n_layers=0), "n_layers"), (dict(dropout=1.0), "dropout")],
)
def test_invalid_config_is_refused(kw, match):
    with pytest.raises(ConfigError, match=match):
        tiny_config(**kw)


def test_presets_have_gpt2_shapes():
    small = GPT(GPTConfig.preset("gpt2-small"))
    assert small.num_parameters() == 124_439_808  # the published GPT-2 small count (tied head)
    with pytest.raises(ConfigError, match="unknown model preset"):
        GPTConfig.preset("gpt5")


def test_cpu_bf16_attention_runs_its_backward_in_fp32_at_short_contexts():
    from llm_core.model import CPU_FP32_ATTENTION_MAX_T, attention_compute_dtype

    def q(T, dtype=torch.bfloat16, grad=True):
        return torch.zeros(2, 4, T, 8, dtype=dtype, requires_grad=grad)

    assert attention_compute_dtype(q(256)) == torch.float32
    assert attention_compute_dtype(q(CPU_FP32_ATTENTION_MAX_T)) == torch.float32
    assert attention_compute_dtype(q(CPU_FP32_ATTENTION_MAX_T + 1)) == torch.bfloat16  # bf16's kernel wins there
    assert attention_compute_dtype(q(256, grad=False)) == torch.bfloat16  # inference: the faster bf16 forward
    with torch.no_grad():
        assert attention_compute_dtype(q(256)) == torch.bfloat16
    assert attention_compute_dtype(q(256, dtype=torch.float32)) == torch.float32


def test_causal_attention_matches_softmax_attention_written_out():
    from llm_core.model import causal_attention

    g = torch.Generator().manual_seed(0)
    B, H, T, D = 2, 3, 20, 8
    q, k, v = (torch.randn(B, H, T, D, generator=g).bfloat16().requires_grad_() for _ in range(3))
    y = causal_attention(q, k, v)
    assert y.dtype == torch.bfloat16
    dy = torch.randn(B, H, T, D, generator=g)
    y.float().backward(dy)
    # softmax(q k^T / sqrt(D) + causal mask) v, in fp64 from the same bf16 inputs
    q64, k64, v64 = (t.detach().double().requires_grad_() for t in (q, k, v))
    scores = q64 @ k64.transpose(-1, -2) / D ** 0.5  # (B, H, T, T)
    scores = scores.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
    want = torch.softmax(scores, dim=-1) @ v64
    want.backward(dy.double())
    torch.testing.assert_close(y.double(), want, atol=2e-2, rtol=2e-2)  # y is rounded to bf16 once
    for ours, ref in ((q, q64), (k, k64), (v, v64)):
        torch.testing.assert_close(ours.grad.double(), ref.grad, atol=2e-2, rtol=2e-2)


def test_training_under_bf16_autocast_calls_attention_in_fp32(monkeypatch):
    import llm_core.model as model_module

    seen = []
    sdpa = model_module.F.scaled_dot_product_attention

    def recording(q, k, v, **kw):
        seen.append(q.dtype)
        return sdpa(q, k, v, **kw)

    monkeypatch.setattr(model_module.F, "scaled_dot_product_attention", recording)
    model = GPT(tiny_config())
    idx = torch.randint(0, 64, (2, 12))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(idx, idx).backward()
        assert seen == [torch.float32] * 2
        seen.clear()
        with torch.no_grad():
            model(idx)
    assert seen == [torch.bfloat16] * 2
