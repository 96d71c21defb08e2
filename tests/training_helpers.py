"""Shared builders for the trainer tests: a byte-level tokenizer, a tiny text corpus, a tiny config, a
row-major copy of a GPT."""
from __future__ import annotations

import random
from pathlib import Path

import torch

from llm_core.bpe import save_bpe, train_bpe
from llm_core.embedding import column_major
from llm_core.model import GPT
from llm_core.training import TrainConfig

# A model small enough that a step takes milliseconds on one CPU thread.
TINY = dict(model="tiny", d_model=32, n_layers=2, n_heads=2, context_length=16)


def byte_tokenizer(folder: Path) -> Path:
    """A 257-token tokenizer (the 256 bytes + end-of-text): every ASCII character is one token."""
    save_bpe(train_bpe(["abc"], vocab_size=257), folder)
    return folder


def corpus(path: Path, n_chars: int = 1200, seed: int = 0) -> Path:
    """Pseudo-text from an owned random.Random: words of a small alphabet, so the loss can go down."""
    rng = random.Random(seed)
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "far"]
    text = []
    while sum(len(w) + 1 for w in text) < n_chars:
        text.append(rng.choice(words))
    path.write_text(" ".join(text) + "\n")
    return path


def tiny_config(tmp_path: Path, **overrides) -> TrainConfig:
    tok = tmp_path / "tok"
    if not tok.is_dir():
        byte_tokenizer(tok)
    data = tmp_path / "corpus.txt"
    if not data.is_file():
        corpus(data)
    values = dict(
        TINY, data=str(data), tokenizer=str(tok), max_steps=6, batch_size=4, warmup_steps=2, peak_lr=3e-3,
        min_lr=3e-4, eval_every=3, eval_batches=2, sample_tokens=4, checkpoint_every=100, bf16=False,
        device="cpu", out=str(tmp_path / "runs"), val_fraction=0.1, seed=7, num_threads=1,
    )
    values.update(overrides)
    return TrainConfig(**values)


def row_major_copy(model: GPT) -> GPT:
    """A GPT with `model`'s weights whose tied embedding is stored row-major (`llm_core.embedding`)."""
    row = GPT(model.config)
    if column_major(row.tok_emb.weight):
        row.tok_emb.weight = torch.nn.Parameter(torch.empty(model.config.vocab_size, model.config.d_model))
        row.lm_head.weight = row.tok_emb.weight
    row.load_state_dict(model.state_dict())
    return row
