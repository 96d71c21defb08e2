"""The real peers the speed benchmarks measure against, loaded with OUR weights, and the physical bounds.

- llms-from-scratch (PyPI `llms-from-scratch`, the code of the reference notes): `ch04.GPTModel` for
  training, and for decoding the same ch04 model with the notes' KV cache on its blocks (each layer's keys
  and values grown by `torch.cat` every step; `_add_notes_kv_cache`), driven by the notes'
  `generate_text_simple_cached` loop (prefill the prompt with the cache, then one token per step). It
  installs with `pip install --no-deps llms-from-scratch` (it declares heavy extras we do not use; its
  modules need only torch).
- transformers' `GPT2LMHeadModel` (from our `save_hf` folder) and its `generate`.

Every side gets the same weights (ours, converted), so greedy tokens can be compared as a check. Bounds:
`copy_bandwidth` (bytes read + written per second by one large tensor copy, the STREAM "copy" convention)
and `matmul_peak` (the best of a few large square matmuls).
"""
from __future__ import annotations

import os
import statistics
import tempfile
import time
from typing import Callable, Sequence

import torch

from llm_core import GPT
from llm_core.device import has_onednn_linear
from llm_core.onednn_linear import onednn_matmul


def _require(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise SystemExit(f"{module} is not installed: pip install -e '.[bench]' (llms-from-scratch: "
                         "pip install --no-deps llms-from-scratch)") from None


# --- llms-from-scratch ---------------------------------------------------------------------------------
def reference_config(model: GPT) -> dict:
    c = model.config
    return {"vocab_size": c.vocab_size, "context_length": c.context_length, "emb_dim": c.d_model,
            "n_heads": c.n_heads, "n_layers": c.n_layers, "drop_rate": 0.0, "qkv_bias": c.qkv_bias}


def reference_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    """Our weights under the llms-from-scratch ch04 names (separate q/k/v, its LayerNorm scale/shift)."""
    sd, C = model.state_dict(), model.config.d_model
    out = {"tok_emb.weight": sd["tok_emb.weight"], "pos_emb.weight": sd["pos_emb.weight"],
           "final_norm.scale": sd["ln_f.weight"], "final_norm.shift": sd["ln_f.bias"],
           "out_head.weight": sd["lm_head.weight"].clone()}  # its head is untied: a copy of the same values
    for i in range(model.config.n_layers):
        ours, theirs = f"blocks.{i}.", f"trf_blocks.{i}."
        for kind in ("weight", "bias"):
            q, k, v = sd[ours + f"attn.qkv.{kind}"].split(C, dim=0)
            out[theirs + f"att.W_query.{kind}"], out[theirs + f"att.W_key.{kind}"] = q.clone(), k.clone()
            out[theirs + f"att.W_value.{kind}"] = v.clone()
            out[theirs + f"att.out_proj.{kind}"] = sd[ours + f"attn.proj.{kind}"]
            out[theirs + f"ff.layers.0.{kind}"] = sd[ours + f"mlp.fc.{kind}"]
            out[theirs + f"ff.layers.2.{kind}"] = sd[ours + f"mlp.proj.{kind}"]
        for n, m in (("1", "ln1"), ("2", "ln2")):
            out[theirs + f"norm{n}.scale"] = sd[ours + f"{m}.weight"]
            out[theirs + f"norm{n}.shift"] = sd[ours + f"{m}.bias"]
    return out


def reference_model(model: GPT, kv_cache: bool = False) -> torch.nn.Module:
    """llms-from-scratch's ch04 GPTModel holding our weights; `kv_cache=True` adds the notes' cache."""
    ch04 = _require("llms_from_scratch.ch04")
    ref = ch04.GPTModel(reference_config(model))
    missing, unexpected = ref.load_state_dict(reference_state_dict(model), strict=False)
    if unexpected or any(not k.endswith("att.mask") for k in missing):  # the causal-mask buffers are its own
        raise RuntimeError(f"weights do not fit ch04.GPTModel: missing {missing}, unexpected {unexpected}")
    if kv_cache:
        _add_notes_kv_cache(ref)
    return ref.to(next(model.parameters()).dtype).eval()


def _add_notes_kv_cache(ref: torch.nn.Module) -> None:
    """Give a ch04 GPTModel the KV cache exactly as the reference notes write it (their chapter on the KV
    cache: `cache_k`/`cache_v` grown with `torch.cat` per step, a position pointer for the causal mask, a
    `current_pos` counter for the position ids, `reset_kv_cache`), by swapping in subclasses that override
    only the three forwards the notes change. The package ships its own `kv_cache.gpt2` module, but in
    llms-from-scratch 1.0.19 its mask slice `causal_mask[:, -num_tokens:]` fails on every one-token step,
    so the notes' code is what can be measured."""
    ch04 = _require("llms_from_scratch.ch04")
    Attention = type(ref.trf_blocks[0].att)

    class NotesAttention(Attention):  # type: ignore[misc, valid-type]
        def forward(self, x, use_cache=False):
            b, num_tokens, d_in = x.shape
            keys_new = self.W_key(x).view(b, num_tokens, self.num_heads, self.head_dim)
            values_new = self.W_value(x).view(b, num_tokens, self.num_heads, self.head_dim)
            queries = self.W_query(x).view(b, num_tokens, self.num_heads, self.head_dim)
            if use_cache:
                if self.cache_k is None:
                    self.cache_k, self.cache_v = keys_new, values_new
                else:
                    self.cache_k = torch.cat([self.cache_k, keys_new], dim=1)
                    self.cache_v = torch.cat([self.cache_v, values_new], dim=1)
                keys, values = self.cache_k, self.cache_v
            else:
                keys, values = keys_new, values_new
            keys, queries, values = keys.transpose(1, 2), queries.transpose(1, 2), values.transpose(1, 2)
            attn_scores = queries @ keys.transpose(2, 3)
            num_tokens_q, num_tokens_k = queries.shape[-2], keys.shape[-2]
            if use_cache:
                mask_bool = self.mask.bool()[self.ptr_current_pos:self.ptr_current_pos + num_tokens_q, :num_tokens_k]
                self.ptr_current_pos += num_tokens_q
            else:
                mask_bool = self.mask.bool()[:num_tokens_q, :num_tokens_k]
            attn_scores.masked_fill_(mask_bool, -torch.inf)
            attn_weights = self.dropout(torch.softmax(attn_scores / keys.shape[-1] ** 0.5, dim=-1))
            context_vec = (attn_weights @ values).transpose(1, 2).contiguous().view(b, num_tokens, self.d_out)
            return self.out_proj(context_vec)

        def reset_cache(self):
            self.cache_k, self.cache_v, self.ptr_current_pos = None, None, 0

    class NotesBlock(ch04.TransformerBlock):
        def forward(self, x, use_cache=False):
            shortcut = x
            x = self.drop_resid(self.att(self.norm1(x), use_cache=use_cache)) + shortcut
            shortcut = x
            return self.drop_resid(self.ff(self.norm2(x))) + shortcut

    class NotesGPT(ch04.GPTModel):
        def forward(self, in_idx, use_cache=False):
            batch_size, seq_len = in_idx.shape
            tok_embeds = self.tok_emb(in_idx)
            if use_cache:
                pos_ids = torch.arange(self.current_pos, self.current_pos + seq_len, device=in_idx.device)
                self.current_pos += seq_len
            else:
                pos_ids = torch.arange(0, seq_len, device=in_idx.device)
            x = self.drop_emb(tok_embeds + self.pos_emb(pos_ids).unsqueeze(0))
            for blk in self.trf_blocks:
                x = blk(x, use_cache=use_cache)
            return self.out_head(self.final_norm(x))

        def reset_kv_cache(self):
            for blk in self.trf_blocks:
                blk.att.reset_cache()
            self.current_pos = 0

    for blk in ref.trf_blocks:
        blk.att.__class__, blk.__class__ = NotesAttention, NotesBlock
    ref.__class__ = NotesGPT
    ref.reset_kv_cache()


@torch.no_grad()
def reference_generate(ref: torch.nn.Module, prompt: list[int], new_tokens: int) -> list[int]:
    """The notes' `generate_text_simple_cached` (greedy): reset, prefill with the cache, one token per step."""
    ref.eval()
    ctx_len = ref.pos_emb.num_embeddings
    ref.reset_kv_cache()
    idx = torch.tensor([prompt])
    logits = ref(idx[:, -ctx_len:], use_cache=True)
    out = []
    for _ in range(new_tokens):
        next_idx = logits[:, -1].argmax(dim=-1, keepdim=True)
        idx = torch.cat([idx, next_idx], dim=1)
        out.append(int(next_idx[0]))
        logits = ref(next_idx, use_cache=True)
    return out


# --- transformers ----------------------------------------------------------------------------------------
def hf_model(model: GPT) -> torch.nn.Module:
    """transformers' GPT2LMHeadModel loaded from our `save_hf` folder (same weights), in our dtype, eval."""
    transformers = _require("transformers")
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    with tempfile.TemporaryDirectory() as tmp:
        model.save_hf(tmp)
        hf = transformers.GPT2LMHeadModel.from_pretrained(tmp, dtype=next(model.parameters()).dtype)
    return hf.eval()


@torch.no_grad()
def hf_generate(hf: torch.nn.Module, prompt: list[int], new_tokens: int) -> list[int]:
    out = hf.generate(torch.tensor([prompt]), max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                      do_sample=False, pad_token_id=0, attention_mask=torch.ones(1, len(prompt), dtype=torch.long))
    return out[0, len(prompt):].tolist()


# --- bounds ----------------------------------------------------------------------------------------------
def copy_bandwidth(mib: int = 512, repeats: int = 5) -> float:
    """Bytes read + written per second by the best of `repeats` copies of a `mib` MiB fp32 tensor."""
    src = torch.ones(mib * 2**20 // 4)
    dst = torch.empty_like(src)
    dst.copy_(src)  # touch the pages first
    best = min(_timed(lambda: dst.copy_(src)) for _ in range(repeats))
    return 2 * src.numel() * 4 / best


def matmul_peak(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of the best of `repeats` (n x n) @ (n x n) matmuls in `dtype`, by torch's default (`a @ b`:
    MKL for fp32, oneDNN for bf16) and by oneDNN's linear where torch has it: the faster is the machine's
    peak (on an AMD CPU MKL runs its AVX2 code, half of an AVX-512 core's fp32 peak)."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    kernels = [lambda: a @ b]
    if has_onednn_linear():
        kernels.append(lambda: onednn_matmul(a, b))
    best = float("inf")
    for kernel in kernels:
        kernel()
        best = min(best, min(_timed(kernel) for _ in range(repeats)))
    return 2 * n**3 / best


def decode_weight_bytes(model: GPT) -> int:
    """Bytes of weights one decode step reads: every block, the final norm and the head (V x C); of the
    embeddings only one row each, which is negligible and left out."""
    skip = {id(model.pos_emb.weight)}
    if not model.config.tie_weights:
        skip.add(id(model.tok_emb.weight))  # untied: the lookup reads one row, the head is counted below
    seen, total = set(), 0
    for p in model.parameters():
        if id(p) in seen or id(p) in skip:
            continue
        seen.add(id(p))
        total += p.numel() * p.element_size()
    return total


# --- timing ----------------------------------------------------------------------------------------------
def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def paired_rounds(sides: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Seconds of each side in each round, the sides interleaved within a round (so a load change hits all
    of them alike); one untimed warm-up call of each first."""
    for fn in sides.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(rounds):
        for name, fn in sides.items():
            times[name].append(_timed(fn))
    return times


def median_ratio(slow: Sequence[float], fast: Sequence[float]) -> tuple[float, list[float]]:
    """Median over rounds of slow / fast (a speed-up of `fast` over `slow`), and the per-round ratios."""
    ratios = [s / f for s, f in zip(slow, fast)]
    return statistics.median(ratios), ratios


def machine_line() -> str:
    load = os.getloadavg()
    return (f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
            f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
