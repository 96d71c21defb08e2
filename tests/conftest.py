"""Shared fixtures: paths to ../shared reference data and the offline GPT-2 BPE cache."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SHARED_DATA = SHARED / "data"
TIKTOKEN_CACHE = SHARED / "tiktoken-cache"

# Tests are tiny; one thread keeps them deterministic and leaves the other core to pytest-xdist-free CI.
torch.set_num_threads(1)


@pytest.fixture
def gpt2_cache(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point tiktoken at the offline GPT-2 BPE files; skip when ../shared is absent."""
    if not TIKTOKEN_CACHE.is_dir():
        pytest.skip("../shared/tiktoken-cache is absent")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(TIKTOKEN_CACHE))
    return TIKTOKEN_CACHE


@pytest.fixture
def shared_data() -> Path:
    """../shared/data (the-verdict.txt, Alpaca-style instruction files); skip when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent")
    return SHARED_DATA
