"""Device and precision choice: bf16 autocast only where the hardware computes bf16."""
import torch

from llm_core import device as dev


def test_cpu_without_bf16_hardware_trains_in_fp32(monkeypatch):
    # An AVX2-only CPU emulates bf16 (about 18x slower than fp32): autocast must be a no-op there.
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    cpu = torch.device("cpu")
    assert not dev.supports_bf16(cpu)
    with dev.autocast(cpu):
        out = torch.ones(4, 4) @ torch.ones(4, 4)
    assert out.dtype == torch.float32


def test_cpu_with_bf16_hardware_uses_autocast(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    cpu = torch.device("cpu")
    assert dev.supports_bf16(cpu)
    with dev.autocast(cpu):
        out = torch.ones(4, 4) @ torch.ones(4, 4)
    assert out.dtype == torch.bfloat16
    with dev.autocast(cpu, enabled=False):  # config bf16=false always wins
        assert (torch.ones(4, 4) @ torch.ones(4, 4)).dtype == torch.float32


def test_pick_device_honours_an_explicit_choice():
    assert dev.pick_device("cpu") == torch.device("cpu")
    assert dev.pick_device("auto").type in ("cpu", "cuda", "mps")
