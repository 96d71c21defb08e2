"""Test helpers for the engine tests: a byte-level fake tokenizer and tiny random models."""
from __future__ import annotations

import torch

from llm_core.model import GPT, GPTConfig


class ByteTokenizer:
    """One token per UTF-8 byte (ids 0..255) plus end-of-text 256: multi-byte characters span tokens."""

    eot_id = 256
    n_vocab = 257

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode_bytes(self, ids) -> bytes:
        return bytes(i for i in ids if i < 256)

    def decode(self, ids) -> str:
        return self.decode_bytes(ids).decode("utf-8", errors="replace")


def tiny_model(context_length: int = 16, seed: int = 0, dtype: torch.dtype = torch.float64) -> GPT:
    torch.manual_seed(seed)  # dropout-free model; the seeded generator below sets every weight
    cfg = GPTConfig(vocab_size=257, context_length=context_length, d_model=32, n_layers=2, n_heads=2)
    model = GPT(cfg)
    g = torch.Generator().manual_seed(seed)
    model.reset_parameters(generator=g)
    with torch.no_grad():  # larger weights than GPT-2's init so logits are far from ties
        for p in model.parameters():
            if p.dim() > 1:
                p.mul_(10.0)
    return model.to(dtype).eval()
