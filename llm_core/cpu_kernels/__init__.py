"""Fused CPU kernels of our own, in C with AVX-512, for the passes torch's eager ops run slowest here.

Training under bf16 autocast (gpt2-mini's step is matmuls at 85-95% of the bf16 peak, plus two
elementwise passes that torch runs several times slower than the memory and the vector units allow):

- the cross-entropy of the 50257-way head (`llm_core.linear_ce`): the softmax of 51 million bf16 logits a
  step and their gradient, softmax(z) - onehot(y), rounded back to bf16. torch makes it in five passes
  (widen to fp32, max, exp and sum, scale, narrow), 18 ms a step; `cross_entropy_bf16` makes it in one
  read of the logits from memory and one write of the gradient (the row's exps kept in fp32 in the
  core's cache between), with the loss as logsumexp(z) - z_y: 9 ms.
- GPT-2's tanh GELU (`gelu.gelu_tanh`): torch computes tanh with a polynomial accurate to 1 ulp in fp32
  (Sleef), 1.0 ms forward and 1.0 ms backward over a 4 x 256 x 1536 bf16 activation; here tanh comes from
  one exp, 1 + tanh(u) = 2 / (1 + exp(-2u)), 0.3 and 0.4 ms.

Both compute in fp32 and round to bf16 once, as torch's kernels do; their fp32 exp is within about 1 ulp,
so the bf16 results equal torch's except where the fp32 value sits at a bf16 rounding boundary (one bf16
ulp; tests/test_cpu_kernels.py measures both against fp64). The idea is that of the fused kernels GPU
trainers use (Hsu et al., "Liger Kernel", 2024; Wijmans et al., "Cut Your Losses in Large-Vocabulary
Language Models", 2024).

Decoding in fp32 (`decode.py`): temperature sampling and the attention of one new query over the KV
cache, each in one call where torch took 15-25 small ops a step (sampling) and three a layer (the cache
writes and SDPA). gpt2-mini: 1.2x the tokens a second at batch 1, 1.3x at 8 rows.

The library is compiled on first use (`build.py`; 0.2-0.5 s with gcc) and runs only on Linux x86-64 CPUs
with AVX-512 and torch on OpenMP. Elsewhere, without a compiler, or with `set_enabled(False)` (the Trainer's
`cpu_kernels` setting; `LLM_WORKBENCH_CPU_KERNELS=0` in the environment), torch's own ops run and `status()`
says why in one line. The switch is process-wide.
"""
from __future__ import annotations

import contextlib
import os
import threading
from typing import Iterator

import torch

from . import build
from .build import Built, load

_lock = threading.Lock()
_built: Built | None = None


def allowed_by_environment() -> bool:
    """False where LLM_WORKBENCH_CPU_KERNELS is 0, false, off or no: then nothing switches them on."""
    return os.environ.get("LLM_WORKBENCH_CPU_KERNELS", "1").strip().lower() not in ("0", "false", "off", "no")


_switch = {"on": allowed_by_environment()}


def set_enabled(flag: bool) -> None:
    """Turn the kernels on or off for the whole process (off: torch's ops everywhere); on only where
    `allowed_by_environment()`."""
    _switch["on"] = bool(flag) and allowed_by_environment()


@contextlib.contextmanager
def switched(flag: bool) -> Iterator[None]:
    """`set_enabled(flag)` for the block, then the switch as it was (`with cpu_kernels.switched(False):`
    runs torch's ops, e.g. to compare)."""
    before = _switch["on"]
    set_enabled(flag)
    try:
        yield
    finally:
        set_enabled(before)


def _load_once() -> Built:
    global _built
    if _built is None:
        with _lock:
            if _built is None:
                _built = load()
    return _built


def library():
    """The loaded library, building it on the first call; None where it cannot run (see `status`)."""
    return _load_once().lib


def enabled() -> bool:
    """The kernels are switched on and built."""
    return _switch["on"] and library() is not None


def wanted_but_unavailable() -> bool:
    """Switched on, on a machine that could run them (Linux x86-64, AVX-512, torch on OpenMP), yet not
    built: no compiler, or a failed build. What the Trainer and the Engine say in one line."""
    return _switch["on"] and build.unsupported_reason() is None and library() is None


def status() -> str:
    """One line: whether the kernels run here, and why not where they do not."""
    if not _switch["on"]:
        return "CPU kernels: switched off (torch's ops run)"
    built = _load_once()
    if built.lib is None:
        return f"CPU kernels unavailable: {built.reason}; torch's ops run"
    return f"CPU kernels: {built.reason}"


def runs_on(t: torch.Tensor) -> bool:
    """The kernels can take this tensor: on the CPU, switched on and built, outside torch.compile (which
    traces torch's ops instead). Each caller checks the dtype and layout its kernel needs."""
    return t.device.type == "cpu" and not torch.compiler.is_compiling() and enabled()


def applies(t: torch.Tensor) -> bool:
    """A bf16 training kernel here computes this tensor's op: bf16, and `runs_on`."""
    return t.dtype == torch.bfloat16 and runs_on(t)


from .cross_entropy import cross_entropy_bf16  # noqa: E402
from .gelu import gelu_tanh  # noqa: E402

__all__ = ["allowed_by_environment", "applies", "cross_entropy_bf16", "enabled", "gelu_tanh", "library", "runs_on", "set_enabled", "status",
           "switched", "wanted_but_unavailable"]
