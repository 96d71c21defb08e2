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


def test_training_under_bf16_autocast_takes_the_blocked_kernel_and_inference_sdpa(monkeypatch):
    import llm_core.attention as attention

    seen = []
    sdpa, blocked = attention.F.scaled_dot_product_attention, attention.blocked_causal_attention
    monkeypatch.setattr(attention.F, "scaled_dot_product_attention",
                        lambda q, k, v, **kw: seen.append(("sdpa", q.dtype)) or sdpa(q, k, v, **kw))
    monkeypatch.setattr(attention, "blocked_causal_attention",
                        lambda q, k, v: seen.append(("blocked", q.dtype)) or blocked(q, k, v))
    model = GPT(tiny_config())
    idx = torch.randint(0, 64, (2, 12))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(idx, idx).backward()
        assert seen == [("blocked", torch.bfloat16)] * 2
        seen.clear()
        with torch.no_grad():
            model(idx)
    assert seen == [("sdpa", torch.bfloat16)] * 2
    seen.clear()
    model(idx, idx).backward()  # fp32 training: the flash kernel
    assert seen == [("sdpa", torch.float32)] * 2
