"""Device selection and mixed precision: CUDA, then MPS, then CPU; bf16 autocast where it pays off."""
from __future__ import annotations

import contextlib
import functools
from typing import Iterator

import torch

from .errors import ConfigError


def pick_device(preferred: str | None = None) -> torch.device:
    """Return `preferred` if given ("cpu", "cuda", "cuda:1", "mps"), else the best available device.

    An unknown name, or a device this machine does not have, is a one-line ConfigError (torch would
    raise a multi-line RuntimeError, or only fail at the first tensor moved there)."""
    if preferred and preferred != "auto":
        try:
            device = torch.device(preferred)
        except (RuntimeError, ValueError):
            raise ConfigError(f"TrainConfig.device: must be auto, cpu, cuda, cuda:N or mps, got {preferred!r}",
                              field="device") from None
        mps = getattr(torch.backends, "mps", None)
        present = {"cpu": True, "cuda": torch.cuda.is_available(),
                   "mps": mps is not None and mps.is_available()}.get(device.type, False)
        if device.type == "cuda" and present and device.index is not None and device.index >= torch.cuda.device_count():
            present = False
        if not present:
            raise ConfigError(f"TrainConfig.device: {preferred!r} is not available on this machine "
                              "(use auto to pick what is there)", field="device")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def cpu_has_fast_bf16() -> bool:
    """True when this CPU computes bf16 matmuls in hardware (AVX512-BF16 or AMX). Without them (AVX2-only
    CPUs, most laptops and many cloud cores) oneDNN emulates bf16 and a training step is about 18x slower
    than in fp32 (default experiment on an AVX2 EPYC: 320 vs 5,700 tokens/s), so autocast stays off."""
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    checks = [c for c in checks if c is not None]
    if not checks:  # an older torch without these probes: oneDNN's own verdict
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return any(bool(c()) for c in checks)


_ONEDNN_FP32: dict[str, bool | None] = {"setting": None}


def use_onednn_fp32(enabled: bool | None) -> None:
    """Route fp32 Linear layers through oneDNN (`llm_core.onednn_linear`) always (True), never (False),
    or where `onednn_fp32_pays` decides for this machine (None, the default)."""
    if enabled is not None and not isinstance(enabled, bool):
        raise ConfigError(f"use_onednn_fp32: must be True, False or None, got {enabled!r}")
    _ONEDNN_FP32["setting"] = enabled


def onednn_fp32_pays() -> bool:
    """oneDNN's fp32 matmul is the faster one on this CPU: torch reports AVX-512 and has oneDNN's linear.
    MKL, torch's fp32 BLAS, runs its AVX2 code on AMD processors: on a 2-core AVX-512 EPYC 235 GFLOP/s
    against oneDNN's 505-529 at 2048^3; with both at AVX2 they are within 10%, so elsewhere torch's default
    stays. `use_onednn_fp32` overrides the verdict."""
    setting = _ONEDNN_FP32["setting"]
    if setting is not None:
        return setting and _machine_onednn_fp32()[0]
    return all(_machine_onednn_fp32())


@functools.cache
def has_onednn_linear() -> bool:
    """This torch build has oneDNN's linear on dense tensors and its weight packing (the kernels inductor
    uses for frozen weights): `torch.ops.mkldnn._linear_pointwise` and `_reorder_linear_weight`."""
    return (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
            and hasattr(torch.ops.mkldnn, "_reorder_linear_weight"))


@functools.cache
def _machine_onednn_fp32() -> tuple[bool, bool]:
    """(oneDNN's linear is there, torch reports AVX-512), found once: every fp32 Linear call asks."""
    return has_onednn_linear(), torch.backends.cpu.get_cpu_capability().startswith("AVX512")


def supports_bf16(device: torch.device) -> bool:
    """bf16 autocast pays off: CUDA with bf16 support, and CPUs with bf16 in hardware (about 2.4x faster
    matmuls than fp32 on AVX512-BF16/AMX)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_fast_bf16()


def autocast(device: torch.device, enabled: bool = True) -> contextlib.AbstractContextManager:
    """A bf16 autocast context on `device` when enabled and supported, else a no-op context."""
    if enabled and supports_bf16(device):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def num_threads(n: int | None) -> Iterator[None]:
    """Temporarily set torch's intra-op thread count (None leaves it)."""
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
