"""A pre-allocated key/value cache for autoregressive decoding, with a sliding context window.

A decoder recomputes nothing for tokens it has already seen if it keeps each layer's keys and values
(Pope et al., "Efficiently Scaling Transformer Inference", 2022, sec. 2). This cache allocates one key and
one value buffer per layer of shape (batch, heads, max_len, head_dim) ONCE and writes new entries in place
at a position counter: no `torch.cat` per token, so the step cost does not include re-copying the whole
history and memory never grows past `max_len`.

The model calls `attend(layer, q, k, v)` from every attention layer (see `llm_core.model`); the caller
(`llm_core.engine.Engine`) calls `advance(T)` once the whole forward pass has written its T new entries.

Sliding window (how the Engine keeps memory constant and learned positions in range): the buffer holds at
most W = max_len positions. When the next token would not fit, the Engine drops the oldest entries and
RE-ENCODES the most recent `keep` tokens from position 0 (one prefill pass), then continues one token per
step. A GPT-2 model has learned absolute position embeddings for 0..context_length-1 only, so shifting the
stored keys (which have their old positions baked in) would not be exact; re-encoding keeps every position
id inside [0, W) and the cache equal to an uncached forward pass over the same window. Re-encoding happens
every W - keep tokens, so its cost is amortised and constant per token however long generation runs.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..attention import one_query_attention
from ..cpu_kernels import decode as kernels


class KVCache:
    """Per-layer key/value buffers (rows, n_heads, max_len, head_dim) written in place at `length`.

    All rows share one position counter: the Engine decodes rows of the same prompt in lock step. A forward
    pass may use fewer rows than allocated (batch B <= rows): a prompt is prefilled once as a batch of 1 and
    `copy_row0(n)` then expands it to n rows for batched sampling.
    """

    def __init__(
        self,
        n_layers: int,
        rows: int,
        n_heads: int,
        max_len: int,
        head_dim: int,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        shape = (rows, n_heads, max_len, head_dim)
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layers)]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layers)]
        self.rows = rows
        self.max_len = max_len
        self.length = 0  # positions 0..length-1 hold valid entries (for every row in use)

    @classmethod
    def for_model(cls, model: torch.nn.Module, rows: int, max_len: int) -> "KVCache":
        cfg = model.config
        p = next(model.parameters())
        return cls(cfg.n_layers, rows, cfg.n_heads, max_len, cfg.head_dim, p.device, p.dtype)

    def matches(self, model: torch.nn.Module, rows: int, max_len: int) -> bool:
        """True when this cache can serve `rows` rows with a window of `max_len` for `model`."""
        p = next(model.parameters())
        k = self.keys[0]
        return (
            self.rows >= rows
            and self.max_len == max_len
            and len(self.keys) == model.config.n_layers
            and k.shape[1] == model.config.n_heads
            and k.shape[3] == model.config.head_dim
            and k.device == p.device
            and k.dtype == p.dtype
        )

    @property
    def free(self) -> int:
        return self.max_len - self.length

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.keys + self.values)

    def reset(self) -> None:
        """Forget everything (the buffers stay allocated and are overwritten)."""
        self.length = 0

    def truncate(self, length: int) -> None:
        """Keep only the first `length` positions (later writes overwrite the rest)."""
        if not 0 <= length <= self.length:
            raise ValueError(f"cannot truncate a cache of {self.length} positions to {length}")
        self.length = length

    def check_room(self, rows: int, n_tokens: int) -> None:
        """Refuse writing n_tokens more positions for `rows` rows past the buffers. The Engine slides the
        window before this can happen; reaching it is a bug, not user input."""
        end = self.length + n_tokens
        if end > self.max_len or rows > self.rows:
            raise RuntimeError(f"KV cache overflow: {end} positions x {rows} rows > {self.max_len} x {self.rows}")

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Store k/v of T new tokens at [length, length+T) and attend q over positions [0, length+T).

        q, k, v: (B, n_heads, T, head_dim) -> (B, n_heads, T, head_dim).
        """
        B, _, T, _ = q.shape
        self.check_room(B, T)
        start, end = self.length, self.length + T
        k_buf, v_buf = self.keys[layer], self.values[layer]
        if T == 1 and kernels.attention_applies(q, k, v, k_buf, v_buf):  # the writes and the attention in one
            return kernels.one_query_attention(q, k, v, k_buf, v_buf, start, checked=True)  # call (room checked)
        k_buf[:B, :, start:end] = k  # in place: the buffer's storage never moves
        v_buf[:B, :, start:end] = v
        keys = k_buf[:B, :, :end]  # (B, n_heads, end, head_dim), a view
        values = v_buf[:B, :, :end]
        if T == 1:
            # One new token may look at everything before it: no mask needed.
            return one_query_attention(q, keys, values)
        if start == 0:
            return F.scaled_dot_product_attention(q, keys, values, is_causal=True)
        # New token i sits at absolute position start + i and may see keys 0..start + i. (SDPA's is_causal
        # aligns the mask top-left, which is wrong when queries are fewer than keys.)
        q_pos = torch.arange(start, end, device=q.device)[:, None]  # (T, 1)
        k_pos = torch.arange(end, device=q.device)[None, :]  # (1, end)
        return F.scaled_dot_product_attention(q, keys, values, attn_mask=k_pos <= q_pos)

    def advance(self, n_tokens: int) -> None:
        """Commit the n_tokens positions every layer has just written."""
        self.length += n_tokens

    def reorder(self, indices: "torch.Tensor | list[int]") -> None:
        """Make row i hold what row indices[i] held (in place, for every layer; rows past len(indices) are
        left as they were). Beam search keeps the surviving beams' history this way instead of re-prefilling
        them: a beam that is extended twice is copied into two rows, a dropped beam's row is overwritten."""
        index = torch.as_tensor(indices, dtype=torch.long, device=self.keys[0].device)  # (k,)
        k = index.numel()
        if k > self.rows or (k and (int(index.min()) < 0 or int(index.max()) >= self.rows)):
            raise RuntimeError(f"KV cache reorder: indices {index.tolist()} do not fit {self.rows} rows")
        for buf in self.keys + self.values:
            # Advanced indexing gathers into a new tensor first, so overlapping source/target rows are safe.
            buf[:k, :, : self.length] = buf[index, :, : self.length]

    def copy_row0(self, n_rows: int) -> None:
        """Expand a batch-1 prefill to n_rows identical rows (in place, no new allocation)."""
        if n_rows > self.rows:
            raise RuntimeError(f"KV cache has {self.rows} rows, {n_rows} requested")
        for buf in self.keys + self.values:
            buf[1:n_rows, :, : self.length] = buf[:1, :, : self.length]
