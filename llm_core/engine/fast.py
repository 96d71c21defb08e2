"""The Engine's decode paths: what runs a forward pass over the KV cache, fastest first.

A decode step at batch 1 reads every weight once for one row of activations, so its floor is the time to
stream the weights from memory (Pope et al., "Efficiently Scaling Transformer Inference", 2022, sec. 3).
What gets in the way on a CPU, and what this module does about each (`FastPaths` switches them):

- The head. `F.linear(h, W)` with GPT-2's tied W (V, C) is a one-row matmul against a transposed operand,
  which oneDNN/MKL run far below bandwidth for V = 50257; `h @ W_t` with a contiguous (C, V) copy streams
  it (3x faster for gpt2-mini in issue 15's profile), and the split and packed products below faster
  still. `InferenceHead` runs the head; every copy it keeps is rebuilt whenever the weight changes (its
  storage or torch's in-place version counter), so an Engine built once stays exact while a trainer
  updates the model.
- Prefill. Only the last position's logits are used, so the head runs on one row per sequence, not on
  every prompt token (for a 512-token gpt2-small prompt that is 40 GFLOP the plain path computes).
- One core's share of the bandwidth. MKL runs a one-row fp32 product on one thread, so with more than one
  torch thread every block Linear of a one-row step is cut into one column block per thread and run as
  one `torch.bmm` (`split_linear.py`: gpt2-mini batch 1 from 144.9 to 268.8 tokens/s on 2 cores), over
  the model's own weights: no copy. The head of a one-row step runs oneDNN-packed (below), which draws
  both cores' bandwidth itself: gpt2-mini's 50257 x 384 head 0.75-1.25 ms against 1.1-1.3 ms split, the
  whole step 1.01-1.11x (gpt2-small 1.03x) for a packed copy of the head (77 MB fp32 for gpt2-mini); the
  split stays where oneDNN does not pack.
- Few-row matmuls at all. oneDNN and MKL re-lay out a plain weight on every call (for bf16 on AMX that
  costs more than the matmul), so a step of several rows (batched sampling, beams, RL rollouts), a step on
  one thread, and every Linear of the bf16 copy run on weights oneDNN packed once for
  `onednn_linear.PACK_ROWS` rows (`PackedLinear`, the kernel inductor uses for frozen weights;
  `LinearsCopy.packed`, the head in `InferenceHead`). On a 2-core EPYC with AVX512, two threads, the fp32 gpt2-mini head at 8 rows took 1.5
  ms packed against 3.2 ms split across the threads and 7.4 ms in MKL's sgemm packed for 8 rows; batched
  sampling of 8 rows went from 913-1040 to 1494-1645 tokens/s, and one thread at batch 1 from 157 to 199.
- Fresh large buffers. A (B, V) fp32 tensor at 8 x 50257 is 1.6 MB, which the allocator maps and the CPU
  page-faults in again every step; sampling writes into one buffer per generation instead
  (`sampling.temperature_weights`): 1,950 faults and 4 ms a step before.
- The head of a greedy or plain temperature step: it is screened by a bf16 copy (half the bytes) under a
  rigorous rounding bound, and only the tokens a decoding rule needs are recomputed in fp32: the possible
  maxima (greedy: the same tokens) or the drawn token, accepted or redrawn by rejection (sampling: the same
  distribution). `screened_head.py`; gpt2-mini 1.14-1.20x greedy; fp32 heads that stream from memory.
- bf16 weights (`dtype="bf16"`, where `llm_core.device.supports_bf16` says the hardware computes bf16):
  half the bytes per token. It changes the numbers, so it is opt-in; `InferenceCopy` keeps the cast,
  packed copy and rebuilds it when the source weights change.
- Python and kernel-launch overhead: `torch.compile` of the one-token step over the pre-allocated cache
  (the gpt-fast approach: static shapes, the cache written in place with `index_copy_`, attention over the
  whole buffer with a mask), with CUDA graphs on CUDA ("reduce-overhead"). On CPU it is off by default: on
  gpt2-mini it measured 1.01-1.05x the eager path of an earlier session after a cold compile of 20 s (2.5
  s from inductor's on-disk cache, 146 s on cores shared at load average 9), and 0.43-0.56x today's
  (inductor's own one-row products against the split ones; `benchmarks/decode_speed.py --parts
  compile`). Where compiling fails (no C++ toolchain, an op it cannot lower) the Engine decodes eagerly
  and records a one-line notice in `Engine.notices`.

Every path computes the same function as `model(ids)[:, -1]` (the screened head: the same argmax and the
same sampling distribution); tests/test_engine_fast.py checks that each gives the cached == uncached greedy
tokens the plain path gives, tests/test_engine_screened_head.py the screen's argmax and distribution.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import cpu_kernels
from ..device import num_threads, supports_bf16
from ..errors import GenerationError
from ..onednn_linear import is_plain_linear, onednn_matmul, onednn_packing, pack_weight
from .decode_step import StepPlan, plan_step
from .kv_cache import KVCache
from .screened_head import ScreenedHead, ScreenedLogits
from .split_linear import SplitLinear, split_applies, split_matmul

log = logging.getLogger("llm_core.engine")

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
COMPILE_CHOICES = ("auto", "off", "on")


@dataclass(frozen=True)
class FastPaths:
    """Which fast paths the Engine may use. The default is every exact one available on the device.

    - `enabled`: False runs `model(ids)[:, -1]` on the cache as written, with nothing below (for
      comparisons and debugging).
    - `dtype`: None keeps the model's dtype (exact); "bf16" decodes with a bf16 copy of the weights where
      the hardware computes bf16 (elsewhere it stays in the model's dtype and says so in `notices`).
    - `compile`: "auto" compiles the one-token step on CUDA (with CUDA graphs) and not on CPU, where it
      does not pay (module docstring); "on" compiles anywhere, "off" never.
    - `compile_backend`: torch.compile's backend ("inductor"; "eager" traces without generating code).
    - `threads`: torch intra-op threads while a step runs (None: torch's setting, restored after each step).
      A decode step is a chain of ~100 small kernels, each a parallel region: on cores other processes
      also use, every region waits for its slowest thread, and on 2 shared cores (load average 3) one
      thread decoded gpt2-mini 3-6x faster than two (`benchmarks/decode_speed.py --threads`). With more
      than one thread, an fp32 step of one row splits each block matmul across them (`split_linear`) and
      runs the head oneDNN-packed; any other step runs oneDNN-packed weights.
    - `screen`: greedy and plain temperature steps of an fp32 model on a CPU with bf16 arithmetic screen
      the head with a bf16 copy and recompute only what the rule needs in fp32 (`screened_head`: the same
      greedy tokens, the same sampling distribution, half the head's bytes). False runs the fp32 head on
      every step.
    """

    enabled: bool = True
    dtype: str | None = None
    compile: str = "auto"
    compile_backend: str = "inductor"
    threads: int | None = None
    screen: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise GenerationError(f"FastPaths.enabled: must be true or false, got {self.enabled!r}")
        if self.dtype is not None and self.dtype not in DTYPES:
            raise GenerationError(f"FastPaths.dtype: must be None, 'bf16' or 'fp32', got {self.dtype!r}")
        if self.compile not in COMPILE_CHOICES:
            raise GenerationError(f"FastPaths.compile: must be one of {', '.join(COMPILE_CHOICES)}, "
                                  f"got {self.compile!r}")
        if not isinstance(self.compile_backend, str) or not self.compile_backend:
            raise GenerationError(f"FastPaths.compile_backend: must be a backend name, got {self.compile_backend!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or isinstance(self.threads, bool)
                                         or self.threads < 1):
            raise GenerationError(f"FastPaths.threads: must be a positive integer or None, got {self.threads!r}")
        if not isinstance(self.screen, bool):
            raise GenerationError(f"FastPaths.screen: must be true or false, got {self.screen!r}")

    def wants_compile(self, device: torch.device) -> bool:
        return self.enabled and (self.compile == "on" or (self.compile == "auto" and device.type == "cuda"))


OFF = FastPaths(enabled=False)


def walk_modules(model: nn.Module) -> list[nn.Module]:
    """`model` and every submodule, as `model.modules()` finds them but without its memo set and
    generators (a shared module may appear twice): 6.5 vs 26 us for gpt2-mini, and a decode step walks
    the tree twice (`_weights_key`, `engine.eval_mode`)."""
    found, stack = [model], [model]
    while stack:
        for child in stack.pop()._modules.values():
            if child is not None:
                found.append(child)
                stack.append(child)
    return found


def _weights_key(model: nn.Module) -> tuple:
    """Changes whenever any parameter is replaced or modified in place (torch bumps `_version` on every
    in-place write: optimizer steps, `load_state_dict`, `copy_`). 20 us for gpt2-mini, against 68 us
    through `model.parameters()`: it is computed every decode step."""
    return tuple((p.data_ptr(), p._version) for m in walk_modules(model) for p in m._parameters.values()
                 if p is not None)


def _tensor_key(w: torch.Tensor) -> tuple:
    return (w.data_ptr(), w._version, w.dtype, w.device)


class PackedLinear(nn.Module):
    """An inference-only copy of a Linear with its weight packed once in oneDNN's blocked layout for
    PACK_ROWS rows, so no call re-lays it out: where a CPU matmul of a few rows is fastest (module
    docstring). It takes any number of rows. The packed weight is a copy (the model's 120 MB again for
    gpt2-mini in fp32), so the copy is made only where it pays: batched steps, one thread, bf16."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        with torch.no_grad():
            self.packed = pack_weight(linear.weight.detach())
            self.bias = None if linear.bias is None else linear.bias.detach().clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return onednn_matmul(x, self.packed, self.bias)


class InferenceCopy:
    """The model the Engine runs: the model itself, or a copy cast to `dtype` with its Linears packed for
    oneDNN where it has them, rebuilt when the source weights change."""

    def __init__(self, model: nn.Module, dtype: torch.dtype | None) -> None:
        self.source = model
        self.dtype = dtype
        self._copy: nn.Module | None = None
        self._key: tuple | None = None

    def get(self) -> nn.Module:
        source = self.source
        if self.dtype is None or next(source.parameters()).dtype == self.dtype:
            return source
        key = _weights_key(source)
        if self._copy is None or key != self._key:
            with torch.no_grad():
                clone = copy.deepcopy(source).to(self.dtype).eval()
                clone.requires_grad_(False)
                if onednn_packing(next(clone.parameters())):  # every Linear, the head too
                    clone = _with_linears_replaced(clone, PackedLinear, skip=None)
            self._copy, self._key = clone, key
        return self._copy


def _with_linears_replaced(module: nn.Module, make: Callable[[nn.Linear], nn.Module],
                           skip: nn.Module | None) -> nn.Module:
    """A copy of the module tree that shares every parameter and buffer with `module`, each plain
    nn.Linear but `skip` replaced by make(linear), in the linear's train/eval mode (a new module starts in
    training mode, which would keep the written-out step off). Only the modules are new, never a weight."""
    if is_plain_linear(module) and module is not skip:
        return make(module).train(module.training)
    clone = copy.copy(module)  # shallow: the same parameter tensors
    clone._parameters, clone._buffers = dict(module._parameters), dict(module._buffers)
    clone._modules = {name: None if child is None else _with_linears_replaced(child, make, skip)
                      for name, child in module._modules.items()}
    return clone


class LinearsCopy:
    """The model as a decode step of a few rows runs it best: every block Linear replaced by
    `make(linear)`, every other parameter shared with the model, rebuilt when the weights change; the head
    is left to `InferenceHead`. None where `applies(weight)` is False.

    - `split()`: each one-row product cut into one block per thread (`SplitLinear`, fp32, more than one
      thread), over the model's own weights;
    - `packed()`: each Linear's weight packed by oneDNN (`PackedLinear`, fp32 or bf16), for steps of
      several rows and for one thread: gpt2-mini at 8 rows, 2.7 -> 1.4 ms for the 24 block Linears.
    """

    def __init__(self, make: Callable[[nn.Linear], nn.Module], applies: Callable[[torch.Tensor], bool]) -> None:
        self.make, self.applies = make, applies
        self._copy: nn.Module | None = None
        self._key: tuple | None = None
        self.plan: StepPlan | None = None  # the copy's written-out one-token step (`decode_step`), if it has one

    @classmethod
    def packed(cls) -> "LinearsCopy":
        return cls(PackedLinear, onednn_packing)

    @classmethod
    def split(cls) -> "LinearsCopy":
        return cls(SplitLinear, split_applies)

    def get(self, model: nn.Module, key: tuple | None = None) -> nn.Module | None:
        """The copy of `model` (whose `_weights_key` is `key`, computed here when not given), or None."""
        if not self.applies(next(model.parameters())):
            return None
        key = _weights_key(model) if key is None else key
        if key != self._key:
            self._copy, self._key, self.plan = None, None, None  # free the old weights before packing new ones
            skip = getattr(model, "lm_head", None)
            with torch.no_grad():
                self._copy = _with_linears_replaced(model, self.make, skip)
            self.plan = plan_step(self._copy)
            self._key = key
        return self._copy

    def built(self) -> bool:
        return self._copy is not None


class InferenceHead:
    """The output head in the layout a few-row CPU matmul wants: oneDNN-packed for any row count (a copy,
    rebuilt when the weight changes); where oneDNN does not pack, one row with more than one thread split
    across them over the model's own weight (`split_matmul`), else a contiguous (C, V) copy of W^T for
    `h @ W_t`. A head that is not a plain Linear (an adapter on it, a PackedLinear), or one on a GPU, is
    called as it is.

    Why packed at one row too: gpt2-mini's fp32 head (2-core EPYC, AVX-512, two threads) took 0.75-0.83 ms
    packed against 1.10-1.12 split when the host's memory was fast and 1.18-1.33 against 1.29-1.42 when it
    was slow (six fresh packings each); in `Engine.generate_ids` 1.007-1.106x (5 runs of 5-7 paired rounds,
    the same greedy tokens; the most when the host's memory is fast), gpt2-small 1.028x. A session before
    measured 0.971x on the same CPU type, so `benchmarks/decode_speed.py` prints which head ran
    (`describe()["packed_head"]`)."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._wt: torch.Tensor | None = None
        self._packed_key: tuple | None = None
        self._packed: nn.Module | None = None

    def weight_t(self, head: nn.Module) -> torch.Tensor | None:
        if not is_plain_linear(head) or head.weight.device.type != "cpu":
            return None  # (cuBLAS runs the transposed operand at full speed: no copy on a GPU)
        key = _tensor_key(head.weight)
        if key != self._key:
            self._wt = head.weight.detach().t().contiguous()  # (C, V)
            self._key = key
        return self._wt

    def packed(self, head: nn.Linear) -> nn.Module | None:
        """The oneDNN-packed head, or None where oneDNN does not pack this weight."""
        if not onednn_packing(head.weight):
            return None
        key = _tensor_key(head.weight)
        if key != self._packed_key:
            self._packed, self._packed_key = None, None  # free the old copy before building the new one
            self._packed, self._packed_key = PackedLinear(head), key
        return self._packed

    def __call__(self, head: nn.Module, h: torch.Tensor) -> torch.Tensor:
        """h (B, C) -> logits (B, V)."""
        if not is_plain_linear(head):
            return head(h)
        if not torch.is_autocast_enabled(h.device.type):  # (autocast: F.linear's bf16)
            packed = self.packed(head)
            if packed is not None:
                return packed(h)
            if h.shape[0] == 1 and split_applies(head.weight):
                return split_matmul(h, head.weight, head.bias, torch.get_num_threads())
        wt = self.weight_t(head)
        if wt is None:
            return head(h)
        out = h @ wt
        return out + head.bias if head.bias is not None else out

    def packed_built(self) -> bool:
        """A oneDNN-packed copy of the head exists (it ran)."""
        return self._packed is not None

    def nbytes(self) -> int:
        """Bytes of the (C, V) copy."""
        return 0 if self._wt is None else self._wt.numel() * self._wt.element_size()


class _StaticStep:
    """The cache as a compiled step sees it: one new token per row written at position `pos` (a (1,)
    tensor), attention over the whole buffer under `mask` (1, 1, 1, max_len); no Python ints that change
    from step to step, so the graph is compiled once."""

    def __init__(self, cache: KVCache, pos: torch.Tensor, mask: torch.Tensor) -> None:
        self.cache, self.pos, self.mask = cache, pos, mask

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        B = q.shape[0]
        k_buf, v_buf = self.cache.keys[layer][:B], self.cache.values[layer][:B]
        k_buf.index_copy_(2, self.pos, k)  # (B, n_heads, max_len, head_dim), in place
        v_buf.index_copy_(2, self.pos, v)
        return F.scaled_dot_product_attention(q, k_buf, v_buf, attn_mask=self.mask)


class Decoder:
    """Runs new tokens through the model on top of the cache and returns the last position's logits."""

    def __init__(self, model: nn.Module, paths: FastPaths) -> None:
        self.paths = paths
        self.notices: list[str] = []
        device = next(model.parameters()).device
        dtype = DTYPES[paths.dtype] if paths.enabled and paths.dtype else None
        if dtype is torch.bfloat16 and not supports_bf16(device):
            self._notice(f"bf16 decoding: {device.type} has no bf16 arithmetic here; decoding in "
                         f"{next(model.parameters()).dtype}")
            dtype = None
        if paths.enabled and device.type == "cpu" and cpu_kernels.wanted_but_unavailable():
            self._notice(cpu_kernels.status())  # a machine that could run them but has no compiler, say
        self.weights = InferenceCopy(model, dtype)
        self.head = InferenceHead()
        self.screen = ScreenedHead()
        self.packed = LinearsCopy.packed()
        self.split = LinearsCopy.split()
        self._compile = paths.wants_compile(device)
        self._compiled: Callable[..., torch.Tensor] | None = None
        self.compile_seconds: float | None = None
        self._plan: StepPlan | None = None
        self._plan_key: tuple | None = None

    def _notice(self, message: str) -> None:
        self.notices.append(message)
        log.warning(message)

    def model(self) -> nn.Module:
        return self.weights.get()

    def __call__(self, tokens: torch.Tensor, positions: torch.Tensor, cache: KVCache,
                 screen: bool = False) -> "torch.Tensor | ScreenedLogits":
        """tokens (B, T) at absolute `positions` (T,) -> logits (B, V) of the last position (fp32 or the
        run model's dtype). `screen`: the caller picks greedily or samples at a temperature alone, so the
        head may be screened (`screened_head`): then the result is a `ScreenedLogits`, which those two
        rules read exactly (`sampling.sample_next`)."""
        with num_threads(self.paths.threads if self.paths.enabled else None):
            return self._run(tokens, positions, cache, screen)

    def _run(self, tokens: torch.Tensor, positions: torch.Tensor, cache: KVCache,
             screen: bool = False) -> "torch.Tensor | ScreenedLogits":
        model = self.model()
        if not self.paths.enabled or not hasattr(model, "features"):
            return model(tokens, positions=positions, cache=cache)[:, -1]
        if self._compile and tokens.shape[1] == 1:
            logits = self._compiled_step(model, tokens, positions, cache)
            if logits is not None:
                return logits
        runner, plan = model, None
        if tokens.shape[1] == 1:
            if model is self.weights.source and not torch.is_autocast_enabled(tokens.device.type):
                # (the bf16 copy is packed already; autocast: F.linear's bf16)
                key = _weights_key(model)
                for copies in ((self.split, self.packed) if tokens.shape[0] == 1 else (self.packed,)):
                    copy = copies.get(model, key)  # one row, more than one thread: split; else packed
                    if copy is not None:
                        runner, plan = copy, copies.plan
                        break
            if runner is model:
                plan = self._plan_of(model)
        if plan is not None and plan.applies():
            h = plan(tokens, cache)  # (B, C): the same ops without the module wrappers
        else:
            h = runner.features(tokens, positions, cache)[:, -1]  # (B, C): the head on the last position only
        head = model.lm_head
        if screen and self.paths.screen:
            screened = self.screen(head, h, lambda: self.head(head, h))
            if screened is not None:
                return screened
        return self.head(head, h)

    def _plan_of(self, model: nn.Module) -> StepPlan | None:
        """The written-out step of the model run as it is (no split or packed copy: fp64, the bf16 copy, a
        GPU), rebuilt when its weights change (a module replaced, an adapter added)."""
        key = (id(model), _weights_key(model))
        if key != self._plan_key:
            self._plan, self._plan_key = plan_step(model), key
        return self._plan

    # --- torch.compile of the one-token step ---------------------------------------------------------
    def _step(self, model: nn.Module, tokens: torch.Tensor, pos: torch.Tensor, cache: KVCache,
              wt: torch.Tensor) -> torch.Tensor:
        mask = (torch.arange(cache.max_len, device=pos.device) <= pos)[None, None, None, :]  # (1, 1, 1, L)
        h = model.features(tokens, pos, _StaticStep(cache, pos, mask))[:, -1]  # (B, C)
        return h @ wt if wt is not None else model.lm_head(h)

    def _compiled_step(self, model: nn.Module, tokens: torch.Tensor, positions: torch.Tensor,
                       cache: KVCache) -> torch.Tensor | None:
        head = model.lm_head
        wt = self.head.weight_t(head) if tokens.shape[0] == 1 else None  # else: the head module itself
        if head.bias is not None if is_plain_linear(head) else False:
            return None  # a biased plain head: the eager path
        if self._compiled is None:
            mode = "reduce-overhead" if tokens.device.type == "cuda" else None  # CUDA graphs on CUDA
            self._compiled = torch.compile(self._step, backend=self.paths.compile_backend, mode=mode,
                                           dynamic=False)
        import time

        start = time.perf_counter()
        try:
            logits = self._compiled(model, tokens, positions, cache, wt)
        except Exception as exc:  # no C++ toolchain, an op inductor cannot lower, ...: decode eagerly
            reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
            self._notice(f"torch.compile unavailable ({type(exc).__name__}: {reason}); decoding eagerly")
            self._compile = False
            return None
        if self.compile_seconds is None:
            self.compile_seconds = time.perf_counter() - start
        return logits

    def describe(self) -> dict[str, Any]:
        """What this decoder does (for benchmarks and the CLI to print)."""
        model = self.model()
        return {
            "fast": self.paths.enabled,
            "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
            "compile": self._compile,
            "head_copy_bytes": self.head.nbytes(),
            "packed_linears": self.packed.built(),
            "packed_head": self.head.packed_built(),
            "split_threads": self.split.built(),
            "compile_seconds": self.compile_seconds,
            "screened_steps": self.screen.steps,
            "screened_rows": self.screen.rows,
            "screen_fallbacks": self.screen.fallbacks,
            "screen_candidates": self.screen.candidates,
            "screen_copy_bytes": self.screen.nbytes(),
        }
